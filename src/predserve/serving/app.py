"""The serving application: a lean ASGI hot path in front of FastAPI.

``ServingApp`` answers the two prediction routes itself (``predictions.py``) and hands every
other request to a FastAPI app (admin routes, probes, ``/docs``). FastAPI's layers
(middleware stack, routing, dependency solving) cost several times the store read, so the
routes that carry the load do without them; what they do (auth, errors, metrics, stale marks,
fallbacks, limits) is the same functions either side uses.

Requests with a body outside the prediction routes come only from admins: the key is checked
and the body read (bounded in size and time) before FastAPI sees the request.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from time import perf_counter

from fastapi import FastAPI

from predserve.errors import StoreUnavailable
from predserve.serving.admin import accounts, models
from predserve.serving.auth import authorize
from predserve.serving.asgi import (
    JSON_HEADER, BufferedReceive, ClientDisconnected, Message, Receive, Scope, Send, header, read_body, send_error,
    strict_path,
)
from predserve.serving.config import ServeConfig
from predserve.serving.console import console
from predserve.serving.context import ServingContext
from predserve.serving.errors import ApiError, install_handlers, internal_error, log_internal_error, store_unavailable
from predserve.serving.metrics import UNMATCHED
from predserve.serving.openapi import openapi_schema
from predserve.serving.predictions import (
    GET_ROUTE, ROUTE_METHODS, Match, aget_one, get_many, get_one, match, match_encoded,
)
from predserve.serving.probes import probes
from predserve.serving.traffic_share import keep_sharing

log = logging.getLogger("predserve.serving")
STALE_HEADER = (b"x-predserve-stale", b"true")
BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DISCONNECTED = 499  # the status recorded for a client that left before its body arrived (nothing is sent)


def create_admin_app() -> FastAPI:
    """The FastAPI app behind the hot path: admin routes, probes, ``/docs`` and ``/openapi.json``."""
    app = FastAPI(
        title="predserve",
        version="0.1.0",
        description="Low-latency predictions exported from BigQuery ML models. "
        "Authenticate with `Authorization: Bearer KEY` (keys come from `predserve iam create`).",
    )
    install_handlers(app)
    for router in (models, accounts, console, probes):
        app.include_router(router)
    app.openapi = lambda: openapi_schema(app)  # type: ignore[method-assign]
    return app


class ServingApp:
    """The ASGI application a worker runs. ``context`` is opened at start-up unless given (tests)."""

    def __init__(self, config: ServeConfig, context: ServingContext | None = None) -> None:
        self.config = config
        self.admin = create_admin_app()
        self._owns_context = context is None
        self.context: ServingContext | None = None
        self._sharing: asyncio.Task[None] | None = None  # writes this worker's traffic samples for the console
        self._refreshing: asyncio.Task[None] | None = None  # re-reads a network store's pointers (pointers.py)
        if context is not None:
            self.attach(context)

    def attach(self, context: ServingContext) -> None:
        self.context = context
        self.admin.state.context = context

    # ---- ASGI ----------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = match(scope["path"])
            if found is None:  # an id holding an encoded '/' (a%2Fb), or not a prediction route
                found = match_encoded(scope)
            if found is not None:
                await self.predict(found, scope, receive, send)
            else:
                await self.delegate(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        else:
            await self.admin(scope, receive, send)

    async def predict(self, found: Match, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a prediction route, recording its latency under the route template.

        The 200 answer is sent here rather than through ``send_json``: on a route answered in a
        few microseconds a coroutine more is a measurable share (docs/benchmarks.md)."""
        started = perf_counter()
        context = self.context
        assert context is not None, "the serving context is opened at start-up"
        method = scope["method"]
        route, model, entity_id = found
        status = 200
        try:
            if method not in ROUTE_METHODS[route]:
                raise ApiError(405, "Method Not Allowed", {"Allow": ", ".join(ROUTE_METHODS[route])})
            if "\ufffd" in scope["path"]:  # a real U+FFFD, or bytes that are not UTF-8: the raw path tells
                route, model, entity_id = match(strict_path(scope)) or found
            if route is not GET_ROUTE:
                body, stale = await get_many(context, scope, receive, model)
            elif context.embedded:
                body, stale = get_one(context, scope, model, entity_id, started)
            else:
                body, stale = await aget_one(context, scope, model, entity_id)
            headers = [(b"content-length", b"%d" % len(body)), JSON_HEADER]
            if stale:
                headers.append(STALE_HEADER)
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
        except ApiError as error:
            status = error.code
            await send_error(send, error, method == "HEAD")
        except StoreUnavailable as exc:
            status = 503
            context.metrics.store_failed(exc.reason, perf_counter() - started)
            await send_error(send, store_unavailable(exc, context.config.store_url), method == "HEAD")
        except ClientDisconnected:
            status = DISCONNECTED
        except Exception as exc:
            status = 500
            log_internal_error(exc, method, route)
            await send_error(send, internal_error(exc), method == "HEAD")
        context.metrics.observe_request(route, method, status, started, model)

    async def delegate(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hand a request to FastAPI; a request with a body must first pass the admin check and the body limits."""
        started = perf_counter()
        context = self.context
        assert context is not None, "the serving context is opened at start-up"
        method = scope["method"]
        if method not in BODYLESS_METHODS:
            try:
                authorize(context.keys, header(scope, b"authorization"), admin=True)
                receive = BufferedReceive(await read_body(scope, receive, self.config.max_body, self.config.body_timeout), receive)
            except ApiError as error:
                await send_error(send, error)
                context.metrics.observe_request(UNMATCHED, method, error.code, started)
                return
            except ClientDisconnected:
                return

        recorder = StatusRecorder(send)
        try:
            await self.admin(scope, receive, recorder)
        except Exception as exc:  # Starlette answered 500 already and re-raises for the log
            log_internal_error(exc, method, route_of(scope))
        context.metrics.observe_request(route_of(scope), method, recorder.status, started)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.start()
                    self.share_traffic()
                    self.keep_pointers_fresh()
                except Exception as exc:
                    log.error("start-up failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ---- worker start and stop ------------------------------------------------------------
    def start(self) -> None:
        if self.context is None:
            self.attach(ServingContext.open(self.config))
        # Everything allocated so far lives as long as the process: keep it out of the
        # cyclic GC's scans, which otherwise show up as millisecond pauses in the p99.
        gc.collect()
        gc.freeze()

    def share_traffic(self) -> None:
        """With several workers, write this worker's traffic samples while a console wants them (traffic.py)."""
        context = self.context
        if context is not None and context.traffic_share is not None:
            self._sharing = asyncio.get_running_loop().create_task(keep_sharing(context.traffic_share, context.metrics.traffic))

    def keep_pointers_fresh(self) -> None:
        """On a network store, re-read the cached pointers in the background (see pointers.py)."""
        context = self.context
        if context is not None and context.config.network_store:
            self._refreshing = asyncio.get_running_loop().create_task(context.pointers.keep_fresh())

    def stop(self) -> None:
        for task in (self._sharing, self._refreshing):
            if task is not None:
                task.cancel()
        self._sharing = self._refreshing = None
        if self._owns_context and self.context is not None:
            self.context.close()
            self.context = None


class StatusRecorder:
    """A ``send`` that notes the response status on its way to the client (500 until one is sent)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)


def route_of(scope: Scope) -> str:
    """The route template FastAPI matched (set on the scope by its router), or ``unmatched``."""
    route = scope.get("route")
    return getattr(route, "path", None) or UNMATCHED


def create_app(config: ServeConfig, context: ServingContext | None = None) -> ServingApp:
    return ServingApp(config, context)
