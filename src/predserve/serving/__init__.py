"""The serving stage: a lean ASGI hot path for predictions in front of a FastAPI admin app."""

from predserve.serving.app import ServingApp, create_app
from predserve.serving.config import ServeConfig, ServerOptions
from predserve.serving.context import ServingContext

__all__ = ["ServeConfig", "ServerOptions", "ServingApp", "ServingContext", "create_app"]
