"""The two prediction routes: check the key, resolve the current snapshot, return stored bytes.

Stored values are already the JSON the API returns, so nothing is decoded or re-encoded on
the way out: a stale mark or a batch envelope is spliced around the stored bytes.

    GET  /v1/models/{model}/predictions/{entity_id}
    POST /v1/models/{model}/predictions:batchGet      {"ids": [...]}
"""

from __future__ import annotations

from time import perf_counter
from urllib.parse import unquote_to_bytes

import orjson

from predserve.serving.asgi import Receive, Scope, header, read_body
from predserve.serving.auth import authorize
from predserve.serving.context import ServingContext
from predserve.serving.errors import ApiError
from predserve.serving.pointers import CurrentSnapshot
from predserve.store import MAX_ID_BYTES

GET_ROUTE = "/v1/models/{model}/predictions/{entity_id}"
BATCH_ROUTE = "/v1/models/{model}/predictions:batchGet"
ROUTE_METHODS = {GET_ROUTE: ("GET", "HEAD"), BATCH_ROUTE: ("POST",)}


PREFIX = "/v1/models/"

# (route template, model, id) of a request to a prediction route; the id is "" for batchGet.
# A plain tuple: building a NamedTuple costs a tenth of this route's own Python time.
Match = tuple[str, str, str]


def match(path: str) -> Match | None:
    """The prediction route ``path`` names, or None (it is then someone else's).

    ``{model}`` and ``{entity_id}`` match one path segment each, as in a Starlette route
    (the regular expression ``/v1/models/([^/]+)/predictions(?:/([^/]+)|:batchGet)``, whose
    match cost twice this split)."""
    if not path.startswith(PREFIX):
        return None
    parts = path[11:].split("/")  # len(PREFIX) == 11
    if len(parts) == 3:
        model, predictions, entity_id = parts
        if predictions == "predictions" and model and entity_id:
            return GET_ROUTE, model, entity_id
    elif len(parts) == 2 and parts[1] == "predictions:batchGet" and parts[0]:
        return BATCH_ROUTE, parts[0], ""
    return None


def match_encoded(scope: Scope) -> Match | None:
    """A prediction route whose id holds an encoded '/' (``a%2Fb``; composite keys' values may
    hold '/'). The server decodes the path before routing, which gives ``scope["path"]`` one
    segment too many; the raw path, split into segments before decoding, gives the id back.
    Only requests no route matched come here, so the hot path pays nothing for it."""
    raw = scope.get("raw_path")
    if not raw or (b"%2F" not in raw and b"%2f" not in raw):
        return None
    found = match(raw.split(b"?", 1)[0].decode("latin-1"))
    if found is None:
        return None
    # Bytes that are not UTF-8 become U+FFFD here, as in scope["path"]: the route then checks them strictly.
    route, model, entity_id = found
    model, entity_id = (unquote_to_bytes(part).decode("utf-8", "replace") for part in (model, entity_id))
    return route, model, entity_id


# A 200 body and whether it came from a stale snapshot (then marked so in a header). A plain
# tuple, as Match: a NamedTuple's constructor runs Python code on every request.
Answer = tuple[bytes, bool]


def check_id(entity_id: str) -> bytes:
    """An id's UTF-8 bytes, or a 400 naming what is wrong with it. U+FFFD is a character like any other."""
    try:
        raw = entity_id.encode()
    except UnicodeEncodeError:
        raise ApiError(400, "id is not valid UTF-8 (it holds an unpaired surrogate)") from None
    if not raw:
        raise ApiError(400, "empty id")
    if len(raw) > MAX_ID_BYTES:
        raise ApiError(400, f"id is {len(raw)} bytes, over the maximum of {MAX_ID_BYTES}")
    return raw


def mark_stale(body: bytes) -> bytes:
    """A stored prediction object with ``"stale": true`` added as its last member."""
    return body[:-1] + b',"stale":true}'


def fallback(snapshot: CurrentSnapshot, entity_id: str) -> bytes | None:
    """The model's default prediction for an id it does not hold, marked ``"default": true``."""
    if snapshot.default_prediction is None:
        return None
    return (orjson.dumps({"model": snapshot.model, "id": entity_id, "snapshot": snapshot.id})[:-1]
            + b',"prediction":' + snapshot.default_prediction + b',"default":true}')


def not_found_entry(entity_id: str) -> bytes:
    return orjson.dumps({"id": entity_id, "error": {"code": 404, "status": "NOT_FOUND", "message": "no prediction for this id"}})


def get_one(context: ServingContext, scope: Scope, model: str, entity_id: str, now: float) -> Answer:
    """``GET /v1/models/{model}/predictions/{entity_id}`` from an embedded store, whose reads do not
    wait: a plain function, which spares the request a coroutine (``aget_one`` does the same on a
    network store). ``now``: the request's ``time.perf_counter()`` at arrival."""
    authorize(context.keys, header(scope, b"authorization"), model)
    raw = check_id(entity_id)
    snapshot, stale = context.current_now(model, now)
    started = perf_counter()
    body = context.store.get(model, snapshot.id, raw)
    context.metrics.read_get.observe(perf_counter() - started)
    return one_answer(context, model, entity_id, snapshot, stale, body)


async def aget_one(context: ServingContext, scope: Scope, model: str, entity_id: str) -> Answer:
    """``get_one`` on a network store: the pointer (on a miss) and the value are read with its async calls."""
    authorize(context.keys, header(scope, b"authorization"), model)
    raw = check_id(entity_id)
    snapshot, stale = await context.current(model)
    started = perf_counter()
    body = await context.store.aget(model, snapshot.id, raw)
    context.metrics.read_get.observe(perf_counter() - started)
    return one_answer(context, model, entity_id, snapshot, stale, body)


def one_answer(context: ServingContext, model: str, entity_id: str, snapshot: CurrentSnapshot, stale: bool,
               body: bytes | None) -> Answer:
    """A one-id read's answer: the stored body, else the model's default, else a 404; counted, marked if stale."""
    metrics = context.metrics
    outcomes = metrics.outcomes_of(model)
    if body is None:
        body = fallback(snapshot, entity_id)
        if body is None:
            outcomes.not_found += 1
            raise ApiError(404, f"no prediction for id {entity_id!r} in model {model!r} (snapshot {snapshot.id})")
        outcomes.default += 1
    else:
        outcomes.found += 1
    if stale:
        metrics.stale_response(model)
        return mark_stale(body), True
    return body, False


IDS_SHAPE = 'request body must be {"ids": ["id1", "id2", ...]} with string ids'


def parse_ids(body: bytes, max_batch: int) -> tuple[list[str], list[bytes]]:
    """The ids of a batchGet body ``{"ids": [...]}`` and their UTF-8 bytes; 400 or 413 naming what is wrong.

    ``map(str.encode, ids)`` encodes every id and refuses one that is not a string (TypeError) in
    one loop run in C; the lengths are checked column-wise, and only a failure looks for the bad id.
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    ids = payload.get("ids") if isinstance(payload, dict) else None
    if not isinstance(ids, list):
        raise ApiError(400, IDS_SHAPE)
    try:
        raws = list(map(str.encode, ids))
    except TypeError:
        raise ApiError(400, IDS_SHAPE) from None
    except UnicodeEncodeError:  # an unpaired surrogate: check_id names it below
        raws = []
    if len(ids) > max_batch:
        raise ApiError(413, f"{len(ids)} ids requested; at most {max_batch} per batchGet")
    # all(raws): no empty id (a truth test per id costs a fifth of a length comparison)
    if len(raws) != len(ids) or not all(raws) or (raws and max(map(len, raws)) > MAX_ID_BYTES):
        for entity_id in ids:
            check_id(entity_id)  # raises, naming what is wrong
    return ids, raws


async def get_many(context: ServingContext, scope: Scope, receive: Receive, model: str) -> Answer:
    """``POST /v1/models/{model}/predictions:batchGet``: results in request order, missing ids marked.

    The key is checked before a byte of the body is read, and the body is read only up to the limit.
    """
    config = context.config
    authorize(context.keys, header(scope, b"authorization"), model)
    ids, raws = parse_ids(await read_body(scope, receive, config.max_body, config.body_timeout), config.max_batch)
    metrics = context.metrics
    store = context.store
    if context.embedded:
        snapshot, stale = context.current_now(model, perf_counter())
        started = perf_counter()
        values = store.get_many(model, snapshot.id, raws)
    else:
        snapshot, stale = await context.current(model)
        started = perf_counter()
        values = await store.aget_many(model, snapshot.id, raws)
    metrics.read_many.observe(perf_counter() - started)
    outcomes = metrics.outcomes_of(model)
    if not all(values):  # a stored value is never empty: all() finds a None at a truth test per id, where `in` compares
        found = defaults = 0
        results: list[bytes] = []
        for entity_id, value in zip(ids, values):
            if value is not None:
                found += 1
            else:
                value = fallback(snapshot, entity_id)
                if value is not None:
                    defaults += 1
                else:
                    value = not_found_entry(entity_id)
            results.append(value)
        outcomes.found += found
        outcomes.default += defaults
        outcomes.not_found += len(ids) - found - defaults
    else:  # every id found: nothing to fill in
        results = values  # type: ignore[assignment]
        outcomes.found += len(values)
    if stale:
        metrics.stale_response(model)
    head = orjson.dumps({"model": model, "snapshot": snapshot.id})[:-1] + (b',"stale":true' if stale else b"")
    return head + b',"results":[' + b",".join(results) + b"]}", stale
