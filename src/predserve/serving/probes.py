"""Liveness, readiness and Prometheus metrics: open to everyone, like a load balancer's probes."""

from __future__ import annotations

import logging
import time

import orjson
from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from predserve.errors import StoreUnavailable
from predserve.serving.admin import Context, errors
from predserve.serving.errors import ApiError, store_unavailable

log = logging.getLogger("predserve.serving")
JSON = "application/json"
probes = APIRouter(tags=["probes"])


@probes.get("/healthz", summary="Liveness: the process is up")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type=JSON)


@probes.get("/readyz", summary="Readiness: the store answers and at least one model is published", responses=errors(503))
async def readyz(context: Context) -> Response:
    try:
        models = [snapshot.model for snapshot in await context.published()]
    except StoreUnavailable as exc:  # down, too slow or damaged: not ready, with the reason
        error = store_unavailable(exc, context.config.store_url)
        raise ApiError(503, f"not ready: {error.message}", error.headers) from None
    except Exception as exc:  # any other store failure also means "not ready"; the log gets the details
        log.error("readiness check: reading the store %s failed", context.config.store_url, exc_info=exc)
        raise ApiError(503, f"not ready: reading the store failed ({type(exc).__name__}); see the server log") from None
    if not models:
        raise ApiError(503, "not ready: no model has a published snapshot yet; run `predserve export`")
    return Response(orjson.dumps({"status": "ready", "models": models}), media_type=JSON)


@probes.get("/metrics", summary="Prometheus metrics")
async def prometheus(context: Context) -> Response:
    """Everything recorded so far; snapshot ages are refreshed when the store answers (an outage
    must not take the metrics that show it down with it)."""
    try:
        published = await context.published()
    except StoreUnavailable:
        published = []
    now = time.time()
    for snapshot in published:
        context.metrics.snapshot_age.labels(snapshot.model).set(snapshot.age(now))
    return Response(generate_latest(context.metrics.registry), media_type=CONTENT_TYPE_LATEST)
