"""The web console: one static page (``/console``) and the admin JSON it reads.

The page, its script and its style sheet ship inside the package (``serving/static/``) and
hold no data: everything the console shows comes from admin routes, called with the key the
page asks for once (kept in the browser's sessionStorage). So the page itself is served to
anyone, with a Content-Security-Policy that allows only its own script file, its own style
sheet (inlined into the page, so that no request holds up the first paint, and allowed by
its SHA-256), requests to this origin, and no framing. The routes added here for it:

    GET /v1/console/session                      who the key belongs to, the workers
    GET /v1/console/traffic?seconds=N            live traffic per second (traffic.py)
    GET /v1/console/lookup/{model}/{entity_id}   one stored prediction and the read's latency

Models, their timelines and service accounts come from the admin routes in ``admin.py``.
Files are read once, when first asked for, so ``predserve serve`` starts no slower.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from predserve.serving.admin import Admin, Context, errors
from predserve.serving.errors import ApiError
from predserve.serving.predictions import BATCH_ROUTE, GET_ROUTE, check_id, fallback
from predserve.serving.schemas import Lookup, Session, Traffic
from predserve.serving.traffic import SUMMARY_SECONDS, WINDOW_SECONDS, merge, traffic_report

JSON = "application/json"
STATIC = Path(__file__).parent / "static"  # package data (pyproject.toml): in the wheel beside this module
PREDICTION_ROUTES = frozenset({GET_ROUTE, BATCH_ROUTE})
PAGE, SCRIPT, STYLE = "index.html", "console.js", "console.css"
STYLE_LINK = '<link rel="stylesheet" href="console.css">'  # in index.html, replaced by the sheet itself
# Only the console's own script may run, only its own style sheet may style (by its hash), only this
# origin may be asked for data, and no page may frame it (clickjacking). No 'unsafe-inline', no 'unsafe-eval'.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src '{style}'; img-src data:; "
                           "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

console = APIRouter(tags=["console (admin)"])


@dataclass(frozen=True)
class Asset:
    content: bytes
    media_type: str
    headers: dict[str, str]


@cache
def asset(name: str) -> Asset:
    """The page (its style sheet inlined) or its script, read from the package once, with its headers."""
    style = (STATIC / STYLE).read_bytes()
    if name == PAGE:
        content, media_type = (STATIC / PAGE).read_bytes().replace(STYLE_LINK.encode(), b"<style>" + style + b"</style>"), "text/html"
    else:
        content, media_type = (STATIC / SCRIPT).read_bytes(), "text/javascript"
    style_hash = "sha256-" + base64.b64encode(hashlib.sha256(style).digest()).decode()
    return Asset(content, media_type + "; charset=utf-8", {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY.format(style=style_hash),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",  # revalidated with the ETag: a new predserve version is picked up at once
        "ETag": '"' + hashlib.sha256(content).hexdigest()[:20] + '"',
    })


def asset_response(name: str, request: Request) -> Response:
    found = asset(name)
    if request.headers.get("if-none-match") == found.headers["ETag"]:
        return Response(status_code=304, headers=found.headers)
    return Response(found.content, media_type=found.media_type, headers=found.headers)


@console.get("/console", summary="The web console: a static page that asks for an admin key (see docs/console.md)",
             response_class=HTMLResponse)
async def console_page(request: Request) -> Response:
    return asset_response(PAGE, request)


@console.get("/console/static/{name}", include_in_schema=False)
async def console_file(name: str, request: Request) -> Response:
    if name != SCRIPT:
        raise ApiError(404, f"the console has no file {name!r}")
    return asset_response(name, request)


@console.get("/v1/console/session", summary="The console's login check: the admin account behind the key (admin)",
             response_model=Session, responses=errors(401, 403))
async def session(context: Context, account: Admin) -> dict[str, object]:
    return {"auth": context.keys is not None, "account": account.name if account else None, "worker": os.getpid(),
            "workers": context.config.workers, "store": context.config.store_url}


@console.get("/v1/console/traffic", summary="Live traffic per second: requests, 4xx, 5xx, p50 and p99 per route and "
             "model (admin)", response_model=Traffic, responses=errors(400, 401, 403))
async def traffic(context: Context, _: Admin,
                  seconds: Annotated[int, Query(ge=1, le=WINDOW_SECONDS, description="seconds of points to return")]
                  = WINDOW_SECONDS) -> Response:
    """With several workers, the others' samples are merged in once they have written them
    (within a second of the first ask; ``workers.reporting`` lists whose figures are included)."""
    now = int(time.time())
    views = [context.metrics.traffic.since(now - max(seconds, SUMMARY_SECONDS) + 1)]  # the points and the last minute
    reporting = [os.getpid()]
    share = context.traffic_share
    if share is not None:
        share.ask()
        for pid, view in share.others():
            views.append(view)
            reporting.append(pid)
    body = {"now": now, "seconds": seconds,
            "workers": {"answered_by": os.getpid(), "configured": context.config.workers, "reporting": sorted(reporting)},
            **traffic_report(merge(views), now, seconds, PREDICTION_ROUTES)}
    return Response(orjson.dumps(body), media_type=JSON)  # points are many: built here, not validated again


@console.get("/v1/console/lookup/{model}/{entity_id}", summary="One stored prediction and the latency of its store "
             "read (admin)", response_model=Lookup, responses=errors(400, 401, 403, 404, 503))
async def lookup(model: str, entity_id: str, context: Context, _: Admin) -> Response:
    raw = check_id(entity_id)
    snapshot, stale = await context.current(model)
    started = time.perf_counter()
    body = await context.store.aget(model, snapshot.id, raw)
    read = time.perf_counter() - started
    found = body is not None
    if body is None:
        body = fallback(snapshot, entity_id)
    head = orjson.dumps({"model": model, "id": entity_id, "snapshot": snapshot.id, "found": found, "stale": stale,
                         "read_ms": round(read * 1000, 3)})
    return Response(head[:-1] + b',"body":' + (body or b"null") + b"}", media_type=JSON)  # the stored bytes as they are
