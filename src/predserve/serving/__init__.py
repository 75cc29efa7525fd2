"""The serving stage: a FastAPI app that returns stored prediction bytes."""

from predserve.serving.app import ServeConfig, create_app

__all__ = ["ServeConfig", "create_app"]
