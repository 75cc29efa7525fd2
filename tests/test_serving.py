"""The API over real HTTP on loopback, with the real stores behind it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from predserve.datagen import PREDICT_SQL
from predserve.iam import Registry
from predserve.pipeline import run_export
from predserve.store import open_store
from tests.conftest import ApiServer

QUERY = PREDICT_SQL.format(model="churn")


def export(warehouse: Path, store: str, **kwargs):
    return run_export(warehouse=str(warehouse), model="churn", key="user_id", store_url=store, query=QUERY, **kwargs)


class Deployment:
    """An exported store, a service-account file with one key per role, and a running API."""

    def __init__(self, store: str, iam: str, server: ApiServer, keys: dict[str, str]) -> None:
        self.store, self.iam, self.server, self.keys = store, iam, server, keys

    def client(self, who: str | None = "reader") -> httpx.Client:
        return self.server.client(self.keys[who] if who else None)


def make_keys(iam: str) -> dict[str, str]:
    registry = Registry(iam)
    return {
        "reader": registry.create("reader-all", "reader")[1],
        "other": registry.create("reader-other", "reader", ["other"])[1],
        "admin": registry.create("ops-admin", "admin")[1],
    }


@pytest.fixture
def deployment(trained_warehouse: Path, tmp_path: Path, api_server) -> Deployment:
    store, iam = str(tmp_path / "store.lmdb"), str(tmp_path / "iam.json")
    export(trained_warehouse, store)
    keys = make_keys(iam)
    return Deployment(store, iam, api_server(store, iam), keys)


def test_single_prediction_is_the_stored_bytes(deployment: Deployment) -> None:
    with deployment.client() as client:
        response = client.get("/v1/models/churn/predictions/42")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with open_store(deployment.store, readonly=True) as store:
        assert response.content == store.get("churn", store.current("churn").id, b"42")
    body = response.json()
    assert body["model"] == "churn" and body["id"] == "42" and body["snapshot"] == 1
    assert set(body["prediction"]) == {"predicted_churned", "predicted_churned_probs"}


def test_unknown_id_and_model_are_json_404s(deployment: Deployment) -> None:
    with deployment.client() as client:
        missing = client.get("/v1/models/churn/predictions/99999999")
        no_model = client.get("/v1/models/nope/predictions/1")
        no_route = client.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == 404
    assert "'99999999'" in missing.json()["error"]["message"] and "'churn'" in missing.json()["error"]["message"]
    assert no_model.status_code == 404 and "'nope'" in no_model.json()["error"]["message"]
    assert no_route.status_code == 404 and "error" in no_route.json()


def test_batch_get_keeps_request_order_and_marks_missing(deployment: Deployment) -> None:
    with deployment.client() as client:
        response = client.post("/v1/models/churn/predictions:batchGet", json={"ids": ["3", "nope", "1", "3"]})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "churn" and body["snapshot"] == 1
    assert [r["id"] for r in body["results"]] == ["3", "nope", "1", "3"]
    assert "prediction" in body["results"][0] and body["results"][1]["error"]["code"] == 404


@pytest.mark.parametrize(
    "content, status, fragment",
    [
        (b"{not json", 400, "not valid JSON"),
        (b'{"ids": "1"}', 400, "string ids"),
        (b'{"ids": [1, 2]}', 400, "string ids"),
        (b"[]", 400, "string ids"),
        (json.dumps({"ids": [str(i) for i in range(1001)]}).encode(), 413, "at most 1000"),
        (b'{"ids": ["' + b"x" * (2 << 20) + b'"]}', 413, "over the limit"),
        (json.dumps({"ids": ["x" * 600]}).encode(), 400, "over the maximum"),
    ],
)
def test_bad_batch_bodies(deployment: Deployment, content: bytes, status: int, fragment: str) -> None:
    with deployment.client() as client:
        response = client.post("/v1/models/churn/predictions:batchGet", content=content,
                               headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "path, status",
    [
        ("/v1/models/churn/predictions/" + "9" * 600, 400),
        ("/v1/models/churn/predictions/%FF%FE", 400),
        ("/v1/models/churn/predictions/..%2F..%2Fetc%2Fpasswd", 404),
        ("/v1/models/churn/predictions/%2e%2e", 404),
        ("/v1/models/churn/predictions/", 404),
    ],
)
def test_bad_ids_never_500(deployment: Deployment, path: str, status: int) -> None:
    with deployment.client() as client:
        response = client.get(path)
    assert response.status_code == status, response.text
    assert "error" in response.json()


def test_auth_matrix(deployment: Deployment) -> None:
    get = "/v1/models/churn/predictions/1"
    with deployment.client(None) as anonymous:
        assert anonymous.get(get).status_code == 401
        assert anonymous.get(get).headers["www-authenticate"] == "Bearer"
        assert anonymous.get(get, headers={"Authorization": "Bearer psk_000000000000_" + "A" * 43}).status_code == 401
        assert anonymous.get(get, headers={"Authorization": "Basic abc"}).status_code == 401
    with deployment.client("reader") as reader:
        assert reader.get(get).status_code == 200
        assert reader.get("/v1/models").status_code == 403
        assert reader.get("/v1/models/churn").status_code == 403
    with deployment.client("other") as other:
        response = other.get(get)
        assert response.status_code == 403 and "'churn'" in response.json()["error"]["message"]
        assert other.post("/v1/models/churn/predictions:batchGet", json={"ids": ["1"]}).status_code == 403
    with deployment.client("admin") as admin:
        assert admin.get(get).status_code == 200
        assert admin.get("/v1/models").json()["models"][0]["model"] == "churn"


def test_revoked_and_rotated_keys_stop_working_without_restart(deployment: Deployment) -> None:
    registry = Registry(deployment.iam)
    with deployment.client("reader") as reader:
        assert reader.get("/v1/models/churn/predictions/1").status_code == 200
        registry.delete("reader-all")
        time.sleep(1.2)
        assert reader.get("/v1/models/churn/predictions/1").status_code == 401


def test_model_listing_and_detail(deployment: Deployment) -> None:
    with deployment.client("admin") as admin:
        models = admin.get("/v1/models").json()["models"]
        detail = admin.get("/v1/models/churn").json()
        missing = admin.get("/v1/models/nope")
    assert [m["model"] for m in models] == ["churn"]
    assert detail["snapshot"] == 1 and detail["rows"] == 3000 and detail["age_seconds"] >= 0
    assert detail["history"][0]["current"] is True
    assert detail["schema"][0][0] == "predicted_churned"
    assert missing.status_code == 404


def test_service_accounts_over_http(deployment: Deployment) -> None:
    with deployment.client("admin") as admin:
        created = admin.post("/v1/serviceAccounts", json={"name": "new-reader", "role": "reader", "models": ["churn"]})
        assert created.status_code == 200
        key = created.json()["key"]
        listed = admin.get("/v1/serviceAccounts").json()["service_accounts"]
        assert "new-reader" in [a["name"] for a in listed]
        assert all("key_hash" not in a and "key" not in a for a in listed)
        assert admin.post("/v1/serviceAccounts", json={"name": "new-reader"}).status_code == 400
    with deployment.server.client(key) as newcomer:
        assert newcomer.get("/v1/models/churn/predictions/1").status_code == 200
        assert newcomer.get("/v1/serviceAccounts").status_code == 403
    with deployment.client("admin") as admin:
        assert admin.delete("/v1/serviceAccounts/new-reader").status_code == 200
        assert admin.delete("/v1/serviceAccounts/new-reader").status_code == 404


def test_health_readiness_and_metrics(deployment: Deployment) -> None:
    with deployment.client() as client:
        client.get("/v1/models/churn/predictions/1")
        client.get("/v1/models/churn/predictions/nope")
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json()["models"] == ["churn"]
        metrics = client.get("/metrics").text
    assert 'predserve_request_seconds_bucket{le="0.001",method="GET",route="/v1/models/{model}/predictions/{entity_id}",status="200"}' in metrics
    assert 'status="404"' in metrics
    assert 'predserve_store_read_seconds_count{operation="get"}' in metrics
    assert 'predserve_snapshot_age_seconds{model="churn"}' in metrics
    assert 'predserve_model_requests_total{model="churn",outcome="found"}' in metrics


def test_readyz_without_a_published_model(tmp_path: Path, api_server) -> None:
    store = str(tmp_path / "s")
    with open_store(store) as st:
        st.create_snapshot("m")
    server = api_server(store, None, "--no-auth")
    with server.client() as client:
        response = client.get("/readyz")
    assert response.status_code == 503 and "no model" in response.json()["error"]["message"]


def test_publish_and_rollback_are_visible_without_restart(deployment: Deployment, trained_warehouse: Path) -> None:
    with deployment.client() as client:
        assert client.get("/v1/models/churn/predictions/1").json()["snapshot"] == 1
        second = export(trained_warehouse, deployment.store)
        time.sleep(1.2)
        assert client.get("/v1/models/churn/predictions/1").json()["snapshot"] == second.snapshot
        with open_store(deployment.store) as store:
            store.rollback("churn")
        time.sleep(1.2)
        assert client.get("/v1/models/churn/predictions/1").json()["snapshot"] == 1


def test_stale_snapshots_are_marked_or_refused(trained_warehouse: Path, tmp_path: Path, api_server) -> None:
    store = str(tmp_path / "s")
    export(trained_warehouse, store, max_age=0.5)
    time.sleep(0.6)
    marking = api_server(store, None, "--no-auth")
    refusing = api_server(store, None, "--no-auth", "--stale", "refuse")
    with marking.client() as client:
        response = client.get("/v1/models/churn/predictions/1")
        batch = client.post("/v1/models/churn/predictions:batchGet", json={"ids": ["1"]}).json()
    assert response.headers["x-predserve-stale"] == "true" and response.json()["stale"] is True
    assert batch["stale"] is True
    with refusing.client() as client:
        refused = client.get("/v1/models/churn/predictions/1")
    assert refused.status_code == 503 and "max_age" in refused.json()["error"]["message"]


def test_default_prediction_for_unknown_ids(trained_warehouse: Path, tmp_path: Path, api_server) -> None:
    store = str(tmp_path / "s")
    export(trained_warehouse, store, default_prediction={"predicted_churned": 0})
    server = api_server(store, None, "--no-auth")
    with server.client() as client:
        body = client.get("/v1/models/churn/predictions/unknown-user").json()
        known = client.get("/v1/models/churn/predictions/1").json()
    assert body == {"model": "churn", "id": "unknown-user", "snapshot": 1, "prediction": {"predicted_churned": 0}, "default": True}
    assert "default" not in known


def test_no_auth_warns(trained_warehouse: Path, tmp_path: Path, api_server) -> None:
    store = str(tmp_path / "s")
    export(trained_warehouse, store)
    server = api_server(store, None, "--no-auth")
    with server.client() as client:
        assert client.get("/v1/models/churn/predictions/1").status_code == 200
    server.proc.terminate()
    assert b"authentication is OFF" in server.proc.communicate(timeout=10)[1]


def test_two_workers_serve_from_one_store(deployment: Deployment, api_server) -> None:
    server = api_server(deployment.store, deployment.iam, "--workers", "2")
    with server.client(deployment.keys["reader"]) as client:
        statuses = {client.get(f"/v1/models/churn/predictions/{i}").status_code for i in range(1, 60)}
    assert statuses == {200}


def test_openapi_documents_every_route(deployment: Deployment) -> None:
    with deployment.client(None) as client:
        spec = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200
    paths = spec["paths"]
    for path in ["/v1/models/{model}/predictions/{entity_id}", "/v1/models/{model}/predictions:batchGet", "/v1/models",
                 "/v1/models/{model}", "/healthz", "/readyz", "/metrics", "/v1/serviceAccounts"]:
        assert path in paths, path
    single = paths["/v1/models/{model}/predictions/{entity_id}"]["get"]["responses"]
    assert {"200", "400", "401", "403", "404", "503"} <= set(single)


def test_schemathesis_finds_no_server_errors(deployment: Deployment) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run", f"{deployment.server.url}/openapi.json",
         "--checks", "not_a_server_error", "--max-examples", "40",
         "--header", f"Authorization: Bearer {deployment.keys['admin']}", "--phases", "examples,coverage,fuzzing"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


# ---- Bigtable ------------------------------------------------------------------------------
def test_serving_from_bigtable_and_surviving_an_outage(trained_warehouse: Path, tmp_path: Path, api_server) -> None:
    """Stop the emulator: 503 within the deadline; start it again and re-export: served again."""
    from tests.conftest import bigtable_url, private_emulator, start_emulator, stop_emulator

    with private_emulator() as emulator:
        url = bigtable_url()
        export(trained_warehouse, url)
        server = api_server(url, None, "--no-auth", "--read-timeout", "0.05")
        with server.client() as client:
            ok = client.get("/v1/models/churn/predictions/7")
            assert ok.status_code == 200 and ok.json()["id"] == "7"
            batch = client.post("/v1/models/churn/predictions:batchGet", json={"ids": ["7", "x", "8"]}).json()
            assert [r["id"] for r in batch["results"]] == ["7", "x", "8"]
            stop_emulator(emulator["proc"])
            time.sleep(1.1)  # let the cached pointer expire
            started = time.perf_counter()
            down = client.get("/v1/models/churn/predictions/7")
            assert down.status_code == 503, down.text
            assert time.perf_counter() - started < 1.0
            assert "unavailable" in down.json()["error"]["message"]
            emulator["proc"] = start_emulator(emulator["port"])
            export(trained_warehouse, url)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                back = client.get("/v1/models/churn/predictions/7")
                if back.status_code == 200:
                    break
                time.sleep(0.2)
            assert back.status_code == 200, back.text
