"""JSON errors: every error response is ``{"error": {"code", "status", "message"}}``.

The hot path and the FastAPI side build error bodies with the same function, so the two
cannot drift apart. Store outages become 503s here, logged at ERROR with the store named.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

import orjson
from cachetools import TTLCache
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from predserve.errors import StoreUnavailable

log = logging.getLogger("predserve.serving")
UNAUTHENTICATED = {"WWW-Authenticate": "Bearer"}


class ApiError(Exception):
    """An error answered to the client as it is: a status, a message, optional headers."""

    def __init__(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.headers = code, message, headers


def error_body(code: int, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "status": HTTPStatus(code).name, "message": message}})


# One log line per distinct outage reason per second: an outage under load must not flood the log.
_recent_outages: TTLCache[str, bool] = TTLCache(maxsize=64, ttl=1.0)


def store_unavailable(exc: StoreUnavailable, store_url: str) -> ApiError:
    """The 503 answering a store that cannot be read (down, too slow, damaged), logged at ERROR."""
    reason = str(exc)
    if reason not in _recent_outages:
        _recent_outages[reason] = True
        log.error("store %s unavailable (%s): %s", store_url, type(exc).__name__, reason)
    return ApiError(503, f"the prediction store {store_url} is unavailable: {reason}; retry shortly", {"Retry-After": "1"})


def internal_error(exc: BaseException) -> ApiError:
    """The 500 answering a bug: the client learns only the exception's type (the log gets the rest)."""
    return ApiError(500, f"internal error ({type(exc).__name__}); see the server log")


def log_internal_error(exc: BaseException, method: str, route: str) -> None:
    """Log a bug with its type, message and traceback; never the request's headers (they hold keys)."""
    log.error("internal error answering %s %s: %s: %s", method, route, type(exc).__name__, exc, exc_info=exc)


def error_response(error: ApiError) -> Response:
    return Response(error_body(error.code, error.message), status_code=error.code, media_type="application/json",
                    headers=error.headers)


class ErrorDetail(BaseModel):
    code: int
    status: str
    message: str


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


def install_handlers(app: FastAPI) -> None:
    """FastAPI's side: the same error bodies for our errors, routing errors and invalid input.

    Starlette re-raises an unexpected exception after its handler answered; the serving app
    around FastAPI logs it then (``log_internal_error``), so it is logged exactly once.
    """

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return error_response(exc)

    @app.exception_handler(StoreUnavailable)
    async def store_down(request: Request, exc: StoreUnavailable) -> Response:
        return error_response(store_unavailable(exc, request.app.state.context.config.store_url))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        message = "no such route; see /docs for the API" if exc.status_code == 404 else str(exc.detail)
        return error_response(ApiError(exc.status_code, message, exc.headers))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(ApiError(400, f"invalid request: {where}: {first.get('msg', 'bad value')}"))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        return error_response(internal_error(exc))
