"""The FastAPI prediction service.

Hot path (one id): check the bearer key, resolve the model's current snapshot from a cache,
read the stored bytes, return them as they are. No JSON decoding or encoding, no Pydantic
validation of the output. The store is opened read-only, after the worker process starts.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from predserve.iam import IamError, Registry, ServiceAccount
from predserve.serving.errors import ApiError, ErrorBody, install_handlers
from predserve.serving.metrics import ApiMetrics, MetricsMiddleware
from predserve.serving.pointers import CurrentSnapshot, PointerCache
from predserve.store import open_store
from predserve.store.base import MAX_ID_BYTES

log = logging.getLogger("predserve.serving")
JSON = "application/json"
MAX_BATCH_BODY = 1 << 20


STALE_HEADER = [(b"x-predserve-stale", b"true")]


class StoredJSON(Response):
    """A 200 JSON response of bytes that are already JSON: two raw headers, nothing else."""

    media_type = JSON

    def __init__(self, body: bytes, extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
        if extra_headers:
            self.raw_headers += extra_headers


@dataclass
class ServeConfig:
    store_url: str
    iam_path: str | None = None
    auth: bool = True
    stale: str = "mark"  # "mark": serve with stale=true; "refuse": 503
    pointer_ttl: float = 1.0
    max_batch: int = 1000
    read_timeout: float = 0.05  # network stores only

    @classmethod
    def from_env(cls) -> "ServeConfig":
        env = os.environ
        return cls(
            store_url=env["PREDSERVE_STORE"],
            iam_path=env.get("PREDSERVE_IAM"),
            auth=env.get("PREDSERVE_AUTH", "1") != "0",
            stale=env.get("PREDSERVE_STALE", "mark"),
            pointer_ttl=float(env.get("PREDSERVE_POINTER_TTL", "1.0")),
            max_batch=int(env.get("PREDSERVE_MAX_BATCH", "1000")),
            read_timeout=float(env.get("PREDSERVE_READ_TIMEOUT", "0.05")),
        )

    def to_env(self) -> dict[str, str]:
        out = {
            "PREDSERVE_STORE": self.store_url, "PREDSERVE_AUTH": "1" if self.auth else "0",
            "PREDSERVE_STALE": self.stale, "PREDSERVE_POINTER_TTL": str(self.pointer_ttl),
            "PREDSERVE_MAX_BATCH": str(self.max_batch), "PREDSERVE_READ_TIMEOUT": str(self.read_timeout),
        }
        if self.iam_path:
            out["PREDSERVE_IAM"] = self.iam_path
        return out


# ---- OpenAPI documentation models (documentation only: responses are stored bytes) -------
class Prediction(BaseModel):
    model: str
    id: str
    snapshot: int
    prediction: dict[str, Any] = Field(description="the prediction columns exported for this id")
    stale: bool | None = Field(None, description="present and true when the snapshot is older than the model's max_age")
    default: bool | None = Field(None, description="present and true when this is the model's fallback prediction")


class BatchGetRequest(BaseModel):
    ids: list[str] = Field(description="ids to look up, at most the server's batch limit (default 1000)")


class BatchGetResponse(BaseModel):
    model: str
    snapshot: int
    results: list[dict[str, Any]] = Field(description="one entry per requested id, in request order; missing ids carry an error object")


class NewAccount(BaseModel):
    name: str = Field(description="3-63 characters: lowercase letters, digits and '-'")
    role: str = Field("reader", description="reader or admin")
    models: list[str] | None = Field(None, description="for readers: the models it may read (default: all)")


PREDICTION_PARAMETERS = [
    {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}, "description": "the model name"},
    {"name": "entity_id", "in": "path", "required": True,
     "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID_BYTES}, "description": "the id to look up, e.g. a user id"},
]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "bad input", 401: "no or invalid key", 403: "the key lacks the role", 404: "not found",
            413: "request too large", 503: "store unavailable or snapshot too old"}
    return {c: {"model": ErrorBody, "description": text[c]} for c in codes}


def create_app(config: ServeConfig) -> FastAPI:
    metrics = ApiMetrics()
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        options = {"read_timeout": config.read_timeout} if config.store_url.startswith("bigtable://") else {}
        store = open_store(config.store_url, readonly=True, **options)
        state["store"] = store
        state["pointers"] = PointerCache(store, config.pointer_ttl)
        state["iam"] = Registry(config.iam_path)
        if not config.auth:
            log.warning("authentication is OFF (--no-auth): anyone who can reach this port can read predictions")
        # Everything allocated so far lives as long as the process: keep it out of the
        # cyclic GC's scans, which otherwise show up as millisecond pauses in the p99.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            store.close()

    app = FastAPI(
        title="predserve",
        version="0.1.0",
        description="Low-latency predictions exported from BigQuery ML models. "
        "Authenticate with `Authorization: Bearer KEY` (keys come from `predserve iam create`).",
        lifespan=lifespan,
    )
    install_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    def authorize(request: Request, model: str | None = None, admin: bool = False) -> ServiceAccount | None:
        if not config.auth:
            return None
        registry: Registry = state["iam"]
        registry.reload_if_changed()
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            raise ApiError(401, "missing credentials: send `Authorization: Bearer KEY` (create a key with `predserve iam create`)",
                           {"WWW-Authenticate": "Bearer"})
        account = registry.authenticate(header[7:].strip())
        if account is None:
            raise ApiError(401, "invalid or revoked key", {"WWW-Authenticate": "Bearer"})
        if admin and not account.is_admin:
            raise ApiError(403, f"service account {account.name!r} lacks the admin role")
        if model is not None and not account.can_read(model):
            raise ApiError(403, f"service account {account.name!r} may not read predictions of model {model!r}")
        return account

    async def current(model: str) -> tuple[CurrentSnapshot, bool]:
        """The model's current snapshot and whether it is stale (refused here if so configured)."""
        snapshot = await state["pointers"].get(model)
        if snapshot is None:
            raise ApiError(404, f"model {model!r} has no published snapshot in this store")
        stale = snapshot.is_stale()
        if stale:
            metrics.stale_responses.labels(model).inc()
            if config.stale == "refuse":
                raise ApiError(503, f"model {model!r}: snapshot {snapshot.id} is {snapshot.age():.0f}s old, "
                                    f"over its max_age of {snapshot.max_age:.0f}s; re-run the export")
        return snapshot, stale

    async def published() -> list[CurrentSnapshot]:
        """The current snapshot of every model that has one."""
        snapshots = [await state["pointers"].get(name) for name in await state["store"].amodels()]
        return [snapshot for snapshot in snapshots if snapshot is not None]

    def check_id(entity_id: str) -> bytes:
        if "\ufffd" in entity_id:
            raise ApiError(400, "id is not valid UTF-8")
        raw = entity_id.encode()
        if not raw:
            raise ApiError(400, "empty id")
        if len(raw) > MAX_ID_BYTES:
            raise ApiError(400, f"id is {len(raw)} bytes, over the maximum of {MAX_ID_BYTES}")
        return raw

    def mark_stale(body: bytes) -> bytes:
        return body[:-1] + b',"stale":true}'

    def fallback(snapshot: CurrentSnapshot, entity_id: str) -> bytes | None:
        if snapshot.default_prediction is None:
            return None
        return (orjson.dumps({"model": snapshot.model, "id": entity_id, "snapshot": snapshot.id})[:-1]
                + b',"prediction":' + snapshot.default_prediction + b',"default":true}')

    @app.get(
        "/v1/models/{model}/predictions/{entity_id}",
        summary="Get the prediction for one id",
        response_model=None,
        responses={200: {"model": Prediction, "description": "the stored prediction"}, **_errors(400, 401, 403, 404, 503)},
        openapi_extra={"parameters": PREDICTION_PARAMETERS},
    )
    async def get_prediction(request: Request) -> Response:
        # Path parameters are read from the request rather than declared as arguments: FastAPI's
        # per-argument validation costs more than the rest of this route (see docs/benchmarks.md).
        model, entity_id = request.path_params["model"], request.path_params["entity_id"]
        authorize(request, model)
        raw = check_id(entity_id)
        snapshot, stale = await current(model)
        started = time.perf_counter()
        body = await state["store"].aget(model, snapshot.id, raw)
        metrics.read_get.observe(time.perf_counter() - started)
        if body is None:
            body = fallback(snapshot, entity_id)
            if body is None:
                metrics.outcome(model, "not_found").inc()
                raise ApiError(404, f"no prediction for id {entity_id!r} in model {model!r} (snapshot {snapshot.id})")
        metrics.outcome(model, "found").inc()
        if stale:
            return StoredJSON(mark_stale(body), STALE_HEADER)
        return StoredJSON(body)

    @app.post(
        "/v1/models/{model}/predictions:batchGet",
        summary="Get the predictions for many ids",
        response_model=None,
        openapi_extra={
            "parameters": PREDICTION_PARAMETERS[:1],
            "requestBody": {"required": True, "content": {JSON: {"schema": BatchGetRequest.model_json_schema()}}},
        },
        responses={200: {"model": BatchGetResponse, "description": "results in request order"}, **_errors(400, 401, 403, 404, 413, 503)},
    )
    async def batch_get(request: Request) -> Response:
        model = request.path_params["model"]
        authorize(request, model)
        body = await request.body()
        if len(body) > MAX_BATCH_BODY:
            raise ApiError(413, f"request body is {len(body)} bytes, over the limit of {MAX_BATCH_BODY}")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}") from None
        ids = payload.get("ids") if isinstance(payload, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ApiError(400, 'request body must be {"ids": ["id1", "id2", ...]} with string ids')
        if len(ids) > config.max_batch:
            raise ApiError(413, f"{len(ids)} ids requested; at most {config.max_batch} per batchGet")
        raws = [check_id(i) for i in ids]
        snapshot, stale = await current(model)
        started = time.perf_counter()
        values = await state["store"].aget_many(model, snapshot.id, raws)
        metrics.read_many.observe(time.perf_counter() - started)
        results = []
        found = 0
        for entity_id, value in zip(ids, values):
            if value is None:
                value = fallback(snapshot, entity_id) or orjson.dumps(
                    {"id": entity_id, "error": {"code": 404, "status": "NOT_FOUND", "message": "no prediction for this id"}})
            else:
                found += 1
            results.append(value)
        metrics.outcome(model, "found").inc(found)
        metrics.outcome(model, "not_found").inc(len(ids) - found)
        head = orjson.dumps({"model": model, "snapshot": snapshot.id})[:-1] + (b',"stale":true' if stale else b"")
        return StoredJSON(head + b',"results":[' + b",".join(results) + b"]}")

    @app.get("/v1/models", summary="List published models (admin)", responses=_errors(401, 403))
    async def list_models(request: Request) -> dict[str, Any]:
        authorize(request, admin=True)
        return {"models": [_summary(snapshot) for snapshot in await published()]}

    @app.get("/v1/models/{model}", summary="Model detail: current snapshot, age and history (admin)", responses=_errors(401, 403, 404))
    async def model_detail(model: str, request: Request) -> dict[str, Any]:
        authorize(request, admin=True)
        snapshot = await state["pointers"].get(model)
        if snapshot is None:
            raise ApiError(404, f"model {model!r} has no published snapshot in this store")
        detail = _summary(snapshot)
        detail["schema"] = snapshot.info.metadata.get("schema")
        detail["history"] = [
            {"snapshot": s.id, "state": s.state, "rows": s.rows, "created_at": s.created_at, "published_at": s.published_at,
             "current": s.id == snapshot.id}
            for s in sorted(snapshot.state.snapshots.values(), key=lambda s: s.id)
        ]
        return detail

    @app.get("/v1/serviceAccounts", summary="List service accounts (admin)", responses=_errors(401, 403))
    async def list_accounts(request: Request) -> dict[str, Any]:
        authorize(request, admin=True)
        return {"service_accounts": [a.public() for a in state["iam"].accounts()]}

    @app.post("/v1/serviceAccounts", summary="Create a service account; the key is returned once (admin)", responses=_errors(400, 401, 403))
    async def create_account(account: NewAccount, request: Request) -> dict[str, Any]:
        authorize(request, admin=True)
        try:
            created, key = state["iam"].create(account.name, account.role, account.models)
        except IamError as exc:
            raise ApiError(400, str(exc)) from None
        return {**created.public(), "key": key}

    @app.delete("/v1/serviceAccounts/{name}", summary="Delete a service account (admin)", responses=_errors(401, 403, 404))
    async def delete_account(name: str, request: Request) -> dict[str, Any]:
        authorize(request, admin=True)
        try:
            state["iam"].delete(name)
        except IamError as exc:
            raise ApiError(404, str(exc)) from None
        return {"deleted": name}

    @app.get("/healthz", summary="Liveness: the process is up")
    async def healthz() -> Response:
        return StoredJSON(b'{"status":"ok"}')

    @app.get("/readyz", summary="Readiness: the store answers and at least one model is published", responses=_errors(503))
    async def readyz() -> Response:
        try:
            models = [snapshot.model for snapshot in await published()]
        except Exception as exc:  # any store failure means "not ready", with the reason
            raise ApiError(503, f"store not reachable: {exc}") from None
        if not models:
            raise ApiError(503, "no model has a published snapshot yet; run `predserve export`")
        return Response(orjson.dumps({"status": "ready", "models": models}), media_type=JSON)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        now = time.time()
        for snapshot in await published():
            metrics.snapshot_age.labels(snapshot.model).set(snapshot.age(now))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # Match the prediction routes first: the router tries routes in order.
    hot = {"/v1/models/{model}/predictions/{entity_id}", "/v1/models/{model}/predictions:batchGet"}
    app.router.routes.sort(key=lambda route: getattr(route, "path", "") not in hot)
    return app


def _summary(snapshot: CurrentSnapshot) -> dict[str, Any]:
    info = snapshot.info
    return {
        "model": snapshot.model, "snapshot": info.id, "created_at": info.created_at, "published_at": info.published_at,
        "rows": info.rows, "age_seconds": round(snapshot.age(), 3), "max_age": snapshot.max_age, "stale": snapshot.is_stale(),
    }


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers: the configuration travels in PREDSERVE_* variables."""
    return create_app(ServeConfig.from_env())
