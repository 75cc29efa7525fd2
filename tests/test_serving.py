"""The serving app in-process, over httpx's ASGI transport: routes, auth, errors, metrics,
stale marks, fallbacks, body limits and logs. Real LMDB stores; no sockets (see
test_serving_server.py for the server itself: workers, signals, slow clients)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest

from predserve.datagen import PREDICT_SQL
from predserve.errors import StoreDamaged, StoreUnavailable
from predserve.iam import Registry
from predserve.pipeline import run_export
from predserve.serving import ServeConfig, ServingContext, create_app
from predserve.serving.logs import JsonFormatter
from predserve.serving.metrics import ApiMetrics
from predserve.serving.pointers import PointerCache
from predserve.store import open_store
from predserve.store.lmdb import LmdbStore
from tests.support.serving import BATCH, in_process, InProcess, make_keys
from tests.support.snapshots import publish_rows

pytestmark = pytest.mark.anyio
ONE = "/v1/models/churn/predictions/{}"
MANY = "/v1/models/churn/predictions:batchGet"



@pytest.fixture(scope="module")
def exported(trained_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, dict[str, str]]:
    """A store holding one real export of the churn model, and a service-account file with a key per role."""
    directory = tmp_path_factory.mktemp("exported")
    store, iam = str(directory / "store.lmdb"), str(directory / "iam.json")
    run_export(warehouse=str(trained_warehouse), model="churn", key="user_id", store_url=store,
               query=PREDICT_SQL.format(model="churn"))
    return store, iam, make_keys(iam)


@pytest.fixture
def served(exported: tuple[str, str, dict[str, str]]) -> Iterator[InProcess]:
    store, iam, keys = exported
    server = in_process(store, iam, keys)
    yield server
    server.context.close()


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Any]:
    """A factory: a small hand-written store served in-process without auth."""
    opened: list[InProcess] = []

    def serve(rows: dict[str, dict[str, Any]], iam: str | None = None, keys: dict[str, str] | None = None,
              metadata: dict[str, Any] | None = None, **overrides: Any) -> InProcess:
        store = str(tmp_path / f"store{len(opened)}.lmdb")
        publish_rows(store, "churn", rows, **(metadata or {}))
        server = in_process(store, iam, keys, auth=iam is not None, **overrides)
        opened.append(server)
        return server

    yield serve
    for server in opened:
        server.context.close()


# ---- the prediction routes -------------------------------------------------------------------
async def test_single_prediction_is_the_stored_bytes(served: InProcess, exported: tuple[str, str, dict[str, str]]) -> None:
    async with served.client() as client:
        response = await client.get(ONE.format(42))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "x-predserve-stale" not in response.headers
    with open_store(exported[0], readonly=True) as store:
        assert response.content == store.get("churn", store.current("churn").id, b"42")
    body = response.json()
    assert body["model"] == "churn" and body["id"] == "42" and body["snapshot"] == 1
    assert set(body["prediction"]) == {"predicted_churned", "predicted_churned_probs"}


async def test_head_answers_like_get_without_a_body(served: InProcess) -> None:
    async with served.client() as client:
        head = await client.head(ONE.format(42))
        get = await client.get(ONE.format(42))
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(get.content))


async def test_unknown_id_and_model_are_json_404s(served: InProcess) -> None:
    async with served.client() as client:
        missing = await client.get(ONE.format(99999999))
        no_model = await client.get("/v1/models/nope/predictions/1")
        no_route = await client.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == 404
    assert "'99999999'" in missing.json()["error"]["message"] and "'churn'" in missing.json()["error"]["message"]
    assert no_model.status_code == 404 and "'nope'" in no_model.json()["error"]["message"]
    assert no_route.status_code == 404 and "no such route" in no_route.json()["error"]["message"]


async def test_wrong_methods_are_405_with_allow(served: InProcess) -> None:
    async with served.client() as client:
        post_one = await client.post(ONE.format(1))
        get_many = await client.get(MANY)
    assert post_one.status_code == 405 and post_one.headers["allow"] == "GET, HEAD"
    assert get_many.status_code == 405 and get_many.headers["allow"] == "POST"
    assert post_one.json()["error"]["code"] == 405


async def test_batch_get_keeps_request_order_and_marks_missing(served: InProcess) -> None:
    async with served.client() as client:
        response = await client.post(MANY, json={"ids": ["3", "nope", "1", "3"]})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "churn" and body["snapshot"] == 1 and "stale" not in body
    assert [r["id"] for r in body["results"]] == ["3", "nope", "1", "3"]
    assert "prediction" in body["results"][0] and body["results"][1]["error"]["code"] == 404


@pytest.mark.parametrize(
    "content, status, fragment",
    [
        (b"{not json", 400, "not valid JSON"),
        (b'{"ids": "1"}', 400, "string ids"),
        (b'{"ids": [1, 2]}', 400, "string ids"),
        (b"[]", 400, "string ids"),
        (b'{"ids": ["\\ud800"]}', 400, "not valid JSON"),
        (json.dumps({"ids": [str(i) for i in range(1001)]}).encode(), 413, "at most 1000"),
        (b'{"ids": ["' + b"x" * (2 << 20) + b'"]}', 413, "over the limit"),
        (json.dumps({"ids": ["x" * 600]}).encode(), 400, "over the maximum"),
        (json.dumps({"ids": [""]}).encode(), 400, "empty id"),
    ],
)
async def test_bad_batch_bodies(served: InProcess, content: bytes, status: int, fragment: str) -> None:
    async with served.client() as client:
        response = await client.post(MANY, content=content, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "path, status",
    [
        (ONE.format("9" * 600), 400),
        (ONE.format("%FF%FE"), 400),
        (ONE.format("ok%C3"), 400),
        (ONE.format("..%2F..%2Fetc%2Fpasswd"), 404),
        (ONE.format("%2e%2e"), 404),
        (ONE.format(""), 404),
    ],
)
async def test_bad_ids_never_500(served: InProcess, path: str, status: int) -> None:
    async with served.client() as client:
        response = await client.get(path)
    assert response.status_code == status, response.text
    assert "error" in response.json()


async def test_an_id_holding_u_fffd_is_served(small: Any) -> None:
    """U+FFFD is a character like any other; only bytes that are not UTF-8 are refused."""
    server = small({"a\ufffdb": {"p": 1}, "plain": {"p": 2}})
    async with server.client(None) as client:
        one = await client.get(ONE.format("a%EF%BF%BDb"))
        many = await client.post(MANY, json={"ids": ["plain", "a\ufffdb"]})
        invalid = await client.get(ONE.format("a%FFb"))
    assert one.status_code == 200 and one.json()["id"] == "a\ufffdb"
    assert many.status_code == 200 and [r["prediction"]["p"] for r in many.json()["results"]] == [2, 1]
    assert invalid.status_code == 400 and "not valid UTF-8" in invalid.json()["error"]["message"]


# ---- auth --------------------------------------------------------------------------------------
async def test_auth_matrix(served: InProcess) -> None:
    get = ONE.format(1)
    async with served.client(None) as anonymous:
        missing = await anonymous.get(get)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert (await anonymous.get(get, headers={"Authorization": "Bearer psk_000000000000_" + "A" * 43})).status_code == 401
        assert (await anonymous.get(get, headers={"Authorization": "Basic abc"})).status_code == 401
        assert (await anonymous.post(MANY, json={"ids": ["1"]})).status_code == 401
        assert (await anonymous.get("/v1/models")).status_code == 401
    async with served.client("reader") as reader:
        assert (await reader.get(get)).status_code == 200
        assert (await reader.get("/v1/models")).status_code == 403
        assert (await reader.get("/v1/models/churn")).status_code == 403
        assert (await reader.post("/v1/serviceAccounts", json={"name": "sneaky"})).status_code == 403
    async with served.client("other") as other:
        response = await other.get(get)
        assert response.status_code == 403 and "'churn'" in response.json()["error"]["message"]
        assert (await other.post(MANY, json={"ids": ["1"]})).status_code == 403
    async with served.client("admin") as admin:
        assert (await admin.get(get)).status_code == 200
        assert (await admin.get("/v1/models")).json()["models"][0]["model"] == "churn"


async def test_revoked_keys_stop_working_without_restart(small: Any, tmp_path: Path) -> None:
    iam = str(tmp_path / "iam.json")
    keys = make_keys(iam)
    server = small({"1": {"p": 1}}, iam=iam, keys=keys)
    async with server.client("reader") as reader:
        assert (await reader.get(ONE.format(1))).status_code == 200
        Registry(iam).delete("reader-all")
        await asyncio.sleep(1.2)  # the registry re-reads its file at most once a second
        assert (await reader.get(ONE.format(1))).status_code == 401


async def test_no_auth_serves_everyone(small: Any) -> None:
    server = small({"1": {"p": 1}})
    async with server.client(None) as client:
        assert (await client.get(ONE.format(1))).status_code == 200
        assert (await client.get("/v1/models")).status_code == 200


# ---- admin routes --------------------------------------------------------------------------------
async def test_model_listing_and_detail(served: InProcess) -> None:
    async with served.client("admin") as admin:
        models = (await admin.get("/v1/models")).json()["models"]
        detail = (await admin.get("/v1/models/churn")).json()
        missing = await admin.get("/v1/models/nope")
    assert [m["model"] for m in models] == ["churn"]
    assert detail["snapshot"] == 1 and detail["rows"] == 3000 and detail["age_seconds"] >= 0
    assert detail["history"][0]["current"] is True
    assert detail["schema"][0][0] == "predicted_churned"
    assert missing.status_code == 404


async def test_service_accounts_over_http(served: InProcess) -> None:
    async with served.client("admin") as admin:
        created = await admin.post("/v1/serviceAccounts", json={"name": "new-reader", "role": "reader", "models": ["churn"]})
        assert created.status_code == 200, created.text
        key = created.json()["key"]
        listed = (await admin.get("/v1/serviceAccounts")).json()["service_accounts"]
        assert "new-reader" in [a["name"] for a in listed]
        assert all("key_hash" not in a and "key" not in a for a in listed)
        assert (await admin.post("/v1/serviceAccounts", json={"name": "new-reader"})).status_code == 400
        assert (await admin.post("/v1/serviceAccounts", json={"role": "reader"})).status_code == 400
    async with served.client(None) as newcomer:
        newcomer.headers["Authorization"] = f"Bearer {key}"
        assert (await newcomer.get(ONE.format(1))).status_code == 200
        assert (await newcomer.get("/v1/serviceAccounts")).status_code == 403
    async with served.client("admin") as admin:
        assert (await admin.delete("/v1/serviceAccounts/new-reader")).status_code == 200
        assert (await admin.delete("/v1/serviceAccounts/new-reader")).status_code == 404


# ---- probes, metrics, docs -------------------------------------------------------------------------
def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition (0 when absent)."""
    wanted = "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""
    for line in text.splitlines():
        if line.startswith(name + wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_health_readiness_and_metrics(served: InProcess) -> None:
    async with served.client() as client:
        await client.get(ONE.format(1))
        await client.get(ONE.format("nope"))
        await client.post(MANY, json={"ids": ["1", "2", "nope"]})
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).json()["models"] == ["churn"]
        text = (await client.get("/metrics")).text
    single = "/v1/models/{model}/predictions/{entity_id}"
    assert metric(text, "predserve_request_seconds_count", route=single, method="GET", status="200") == 1
    assert metric(text, "predserve_request_seconds_bucket", route=single, method="GET", status="404", le="+Inf") == 1
    assert metric(text, "predserve_request_seconds_count", route=BATCH, method="POST", status="200") == 1
    assert metric(text, "predserve_request_seconds_count", route="/healthz", method="GET", status="200") == 1
    assert metric(text, "predserve_store_read_seconds_count", operation="get") == 2
    assert metric(text, "predserve_store_read_seconds_count", operation="get_many") == 1
    assert metric(text, "predserve_model_requests_total", model="churn", outcome="found") == 3
    assert metric(text, "predserve_model_requests_total", model="churn", outcome="not_found") == 2
    assert metric(text, "predserve_model_requests_total", model="churn", outcome="default") == 0
    assert metric(text, "predserve_snapshot_age_seconds", model="churn") > 0


async def test_readyz_without_a_published_model(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    with open_store(store) as st:
        st.create_snapshot("m")
    server = in_process(store, None, auth=False)
    try:
        async with server.client(None) as client:
            response = await client.get("/readyz")
    finally:
        server.context.close()
    assert response.status_code == 503 and "no model" in response.json()["error"]["message"]


async def test_openapi_documents_every_route(served: InProcess) -> None:
    async with served.client(None) as client:
        spec = (await client.get("/openapi.json")).json()
        assert (await client.get("/docs")).status_code == 200
    paths = spec["paths"]
    for path in ["/v1/models/{model}/predictions/{entity_id}", "/v1/models/{model}/predictions:batchGet", "/v1/models",
                 "/v1/models/{model}", "/healthz", "/readyz", "/metrics", "/v1/serviceAccounts"]:
        assert path in paths, path
    single = paths["/v1/models/{model}/predictions/{entity_id}"]["get"]
    assert {"200", "400", "401", "403", "404", "503"} <= set(single["responses"])
    assert "X-Predserve-Stale" in single["responses"]["200"]["headers"]
    batch = paths["/v1/models/{model}/predictions:batchGet"]["post"]
    assert batch["requestBody"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/BatchGetRequest"
    for name in ("Prediction", "BatchGetRequest", "BatchGetResponse", "ErrorBody", "ErrorDetail"):
        assert name in spec["components"]["schemas"], name


async def test_readme_lists_every_route(served: InProcess) -> None:
    """Every route of the OpenAPI document appears in the README's HTTP API table, and nothing more."""
    from tests.support.processes import ROOT

    async with served.client(None) as client:
        spec = (await client.get("/openapi.json")).json()
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## HTTP API"):].split("\n## ")[0]
    for path in spec["paths"]:
        assert f"{path.replace('{entity_id}', '{id}')}" in table, f"README's HTTP API table lacks {path}"


# ---- freshness and fallbacks -----------------------------------------------------------------------
async def test_stale_snapshots_are_marked_on_both_routes_and_counted(small: Any) -> None:
    server = small({"1": {"p": 1}}, metadata={"max_age": 0.0})
    async with server.client(None) as client:
        one = await client.get(ONE.format(1))
        many = await client.post(MANY, json={"ids": ["1", "2"]})
        text = (await client.get("/metrics")).text
    assert one.headers["x-predserve-stale"] == "true" and one.json()["stale"] is True
    assert many.headers["x-predserve-stale"] == "true" and many.json()["stale"] is True
    assert metric(text, "predserve_stale_responses_total", model="churn") == 2


async def test_stale_snapshots_can_be_refused(small: Any) -> None:
    server = small({"1": {"p": 1}}, metadata={"max_age": 0.0}, stale="refuse")
    async with server.client(None) as client:
        one = await client.get(ONE.format(1))
        many = await client.post(MANY, json={"ids": ["1"]})
        text = (await client.get("/metrics")).text
    assert one.status_code == 503 and "max_age" in one.json()["error"]["message"]
    assert many.status_code == 503
    assert metric(text, "predserve_stale_responses_total", model="churn") == 0  # nothing stale was served


async def test_default_prediction_for_unknown_ids_is_counted_as_default(small: Any) -> None:
    server = small({"1": {"p": 1}}, metadata={"default_prediction": {"p": 0}})
    async with server.client(None) as client:
        unknown = (await client.get(ONE.format("unknown-user"))).json()
        known = (await client.get(ONE.format(1))).json()
        many = (await client.post(MANY, json={"ids": ["1", "x"]})).json()
        text = (await client.get("/metrics")).text
    assert unknown == {"model": "churn", "id": "unknown-user", "snapshot": 1, "prediction": {"p": 0}, "default": True}
    assert "default" not in known
    assert many["results"][1] == {"model": "churn", "id": "x", "snapshot": 1, "prediction": {"p": 0}, "default": True}
    assert metric(text, "predserve_model_requests_total", model="churn", outcome="default") == 2
    assert metric(text, "predserve_model_requests_total", model="churn", outcome="found") == 2
    assert metric(text, "predserve_model_requests_total", model="churn", outcome="not_found") == 0


async def test_publish_and_rollback_show_within_the_pointer_ttl(tmp_path: Path) -> None:
    path = str(tmp_path / "store.lmdb")
    publish_rows(path, "churn", {"1": {"p": 1}})
    # LMDB allows one environment per file and process: the writer's, opened first, serves the reader too.
    with open_store(path) as writer:
        server = in_process(path, None, auth=False, pointer_ttl=0.2)
        async with server.client(None) as client:
            assert (await client.get(ONE.format(1))).json()["snapshot"] == 1
            second = publish_rows(path, "churn", {"1": {"p": 2}})
            assert (await client.get(ONE.format(1))).json()["snapshot"] == 1  # still cached
            await asyncio.sleep(0.25)
            assert (await client.get(ONE.format(1))).json()["snapshot"] == second
            writer.rollback("churn")
            await asyncio.sleep(0.25)
            assert (await client.get(ONE.format(1))).json()["snapshot"] == 1
        server.context.close()


# ---- a store that fails --------------------------------------------------------------------------
class FailingStore(LmdbStore):
    """A real LMDB store whose reads fail with ``failure`` once it is set (as a damaged file or an outage would)."""

    failure: BaseException | None = None

    def _check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def get(self, *args: Any) -> Any:
        self._check()
        return super().get(*args)

    def get_many(self, *args: Any) -> Any:
        self._check()
        return super().get_many(*args)

    def state(self, model: str) -> Any:
        self._check()
        return super().state(model)

    def models(self) -> list[str]:
        self._check()
        return super().models()


def failing(tmp_path: Path) -> tuple[InProcess, FailingStore]:
    path = tmp_path / "failing.lmdb"
    publish_rows(str(path), "churn", {"1": {"p": 1}})
    store = FailingStore(path, readonly=True)
    config = ServeConfig(str(path), auth=False, pointer_ttl=0)
    context = ServingContext(config, store, PointerCache(store, 0), Registry(tmp_path / "iam.json"), ApiMetrics())
    return InProcess(create_app(config, context), context), store


@pytest.mark.parametrize("failure", [StoreDamaged("data.mdb is 8 MiB, shorter than the environment's 64 MiB map"),
                                     StoreUnavailable("Bigtable did not answer within 50 ms")])
async def test_an_unreadable_store_gives_503s_naming_it_and_readyz_not_ready(
        tmp_path: Path, failure: StoreUnavailable, caplog: pytest.LogCaptureFixture) -> None:
    server, store = failing(tmp_path)
    try:
        async with server.client(None) as client:
            assert (await client.get(ONE.format(1))).status_code == 200
            assert (await client.get("/readyz")).status_code == 200
            store.failure = failure
            with caplog.at_level(logging.ERROR, logger="predserve"):
                one = await client.get(ONE.format(1))
                many = await client.post(MANY, json={"ids": ["1"]})
                ready = await client.get("/readyz")
                admin = await client.get("/v1/models")
                metrics = await client.get("/metrics")
    finally:
        server.context.close()
    for response in (one, many, ready, admin):
        assert response.status_code == 503, response.text
        message = response.json()["error"]["message"]
        assert str(failure) in message and str(store.path) in message, message
    assert ready.json()["error"]["message"].startswith("not ready")
    assert one.headers["retry-after"] == "1"
    assert metrics.status_code == 200  # the metrics that show an outage survive it
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and str(failure) in errors[0].getMessage() and str(store.path) in errors[0].getMessage()


async def test_a_bug_is_a_500_whose_log_has_the_traceback_but_no_key(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server, store = failing(tmp_path)
    store.failure = KeyError("boom")
    secret = "psk_0123456789ab_" + "S" * 43
    try:
        async with server.client(None) as client:
            with caplog.at_level(logging.ERROR, logger="predserve"):
                one = await client.get(ONE.format(1), headers={"Authorization": f"Bearer {secret}"})
                admin = await client.get("/v1/models", headers={"Authorization": f"Bearer {secret}"})
    finally:
        server.context.close()
    for response in (one, admin):
        assert response.status_code == 500
        assert response.json()["error"]["message"] == "internal error (KeyError); see the server log"
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.levelno == logging.ERROR]
    assert len(lines) == 2, lines  # each 500 logged once
    for line in lines:
        assert line["exc_type"] == "KeyError" and line["exc_message"] == "'boom'"
        assert "Traceback (most recent call last)" in line["traceback"] and "_check" in line["traceback"]
        assert secret not in json.dumps(line) and "psk_" not in json.dumps(line)


# ---- request bodies: auth first, bounded in size and time ------------------------------------------
class Recorder:
    """Calls the ASGI app directly with a receive that counts what the app read."""

    def __init__(self, chunks: list[bytes], then: str = "end") -> None:
        """``then``: after the chunks the body "end"s, the client "stall"s, or it "leave"s."""
        self.chunks, self.then, self.read = list(chunks), then, 0
        self.status = 0
        self.body = b""

    async def receive(self) -> dict[str, Any]:
        if not self.chunks:
            if self.then == "stall":
                await asyncio.sleep(3600)
            return {"type": "http.disconnect"}
        chunk = self.chunks.pop(0)
        self.read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks) or self.then != "end"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            self.body += message.get("body", b"")

    async def call(self, app: Any, method: str, path: str, headers: dict[str, str]) -> "Recorder":
        scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
                 "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()], "http_version": "1.1",
                 "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "root_path": ""}
        await app(scope, self.receive, self.send)
        return self


async def test_bodies_are_refused_before_they_are_read(served: InProcess) -> None:
    reader = {"Authorization": f"Bearer {served.keys['reader']}"}
    admin = {"Authorization": f"Bearer {served.keys['admin']}"}
    big = [b"x" * 65536] * 64  # 4 MiB
    no_key = await Recorder(big).call(served.app, "POST", "/v1/serviceAccounts", {"content-length": str(4 << 20)})
    not_admin = await Recorder(big).call(served.app, "POST", "/v1/serviceAccounts", reader)
    declared = await Recorder(big).call(served.app, "POST", MANY, {**reader, "content-length": str(4 << 20)})
    chunked = await Recorder(big).call(served.app, "POST", MANY, reader)
    admin_chunked = await Recorder(big).call(served.app, "POST", "/v1/serviceAccounts", admin)
    assert (no_key.status, no_key.read) == (401, 0)
    assert (not_admin.status, not_admin.read) == (403, 0)
    assert (declared.status, declared.read) == (413, 0)
    assert chunked.status == 413 and chunked.read <= (1 << 20) + 65536  # stopped at the limit
    assert admin_chunked.status == 413 and admin_chunked.read <= (1 << 20) + 65536
    assert "over the limit" in orjson.loads(chunked.body)["error"]["message"]


async def test_a_body_that_never_arrives_times_out(small: Any) -> None:
    server = small({"1": {"p": 1}}, body_timeout=0.2)
    started = time.monotonic()
    stalled = await Recorder([b'{"ids": ['], then="stall").call(server.app, "POST", MANY, {})
    assert stalled.status == 408 and time.monotonic() - started < 2
    assert "did not arrive within 0.2s" in orjson.loads(stalled.body)["error"]["message"]


async def test_a_client_that_leaves_mid_body_gets_nothing(small: Any) -> None:
    server = small({"1": {"p": 1}})
    gone = await Recorder([b'{"ids": ['], then="leave").call(server.app, "POST", MANY, {})
    assert gone.status == 0 and gone.body == b""


# ---- configuration ---------------------------------------------------------------------------------
def test_start_up_warnings(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"
    assert "does not exist: every request will get 401" in ServeConfig("s", iam_path=str(missing)).warnings()[0]
    assert "authentication is OFF" in ServeConfig("s", auth=False).warnings()[0]
    make_keys(str(tmp_path / "iam.json"))
    assert ServeConfig("s", iam_path=str(tmp_path / "iam.json")).warnings() == []
