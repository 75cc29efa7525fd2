"""`predserve push`: JSON lines applied in atomic batches, bad lines reported by number, served over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from predserve.cli import main
from predserve.store import open_store
from predserve.store.updates import MAX_UPDATE_BYTES
from tests.support.snapshots import publish_scored as export

runner = CliRunner()


def lines(*objects: object) -> bytes:
    return b"".join((o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n" for o in objects)


def upsert(entity_id: str, score: float, sequence: int | None = None) -> dict:
    line = {"id": entity_id, "prediction": {"score": score, "label": "pushed"}}
    return {**line, "sequence": sequence} if sequence is not None else line


def push(store: str, data: bytes, *args: str, model: str = "m"):
    return runner.invoke(main, ["push", "--store", store, "--model", model, *args, "-"], input=data)


def scores(store_url: str, model: str = "m") -> dict[str, float | None]:
    with open_store(store_url, readonly=True) as store:
        snap = store.current(model).id
        return {i.decode(): json.loads(v)["prediction"]["score"] for i, v in store.items(model, snap)}


def test_pushed_updates_are_served_over_http(store_url: str, api_server, tmp_path: Path) -> None:
    with open_store(store_url) as store:
        snap = export(store, "m", "export")
    server = api_server(store_url, None, "--no-auth")
    data = tmp_path / "updates.jsonl"
    data.write_bytes(lines(upsert("7", 0.9, 5), upsert("new", 0.25), {"id": "8", "delete": True}) + b"\n")
    result = runner.invoke(main, ["push", "--store", store_url, "--model", "m", str(data)])
    assert result.exit_code == 0, result.output
    assert "3 applied, 0 not newer" in result.output and f"into snapshot {snap}" in result.output
    with server.client() as http:
        got = http.get("/v1/models/m/predictions/7").json()
        assert got == {"model": "m", "id": "7", "snapshot": snap, "prediction": {"score": 0.9, "label": "pushed"}}
        assert http.get("/v1/models/m/predictions/new").json()["prediction"]["score"] == 0.25
        assert http.get("/v1/models/m/predictions/8").status_code == 404
        assert http.get("/v1/models/m/predictions/9").json()["prediction"]["label"] == "export"
    # Pushing the same lines again (a retried push): "7" carries its sequence, so it changes nothing;
    # lines without one get the time of the new push, so they apply again (to the same bodies).
    again = runner.invoke(main, ["push", "--store", store_url, "--model", "m", "--json", str(data)])
    assert again.exit_code == 0 and json.loads(again.output)["ignored"] == 1
    with server.client() as http:
        assert http.get("/v1/models/m/predictions/7").json()["prediction"]["score"] == 0.9


BAD_LINES = {
    "not JSON": (b'{"id": "4", "prediction": {', "not JSON"),
    "no id": (json.dumps({"prediction": {"score": 1.0}}).encode(), "no id"),
    "a column the snapshot lacks": (json.dumps({"id": "4", "prediction": {"colour": "red"}}).encode(), "colour"),
    "a body over the limit": (json.dumps(upsert("4", 1.0) | {"prediction": {"label": "x" * MAX_UPDATE_BYTES}}).encode(),
                              "over the limit"),
    "a line far over the limit": (b'{"id": "4", "prediction": {"label": "' + b"x" * (3 * MAX_UPDATE_BYTES) + b'"}}',
                                  "over the limit"),
}


@pytest.mark.parametrize("kind", list(BAD_LINES))
def test_a_bad_line_is_reported_by_number_and_nothing_of_its_batch_is_applied(kind: str, tmp_path: Path) -> None:
    store_url = str(tmp_path / "store.lmdb")
    with open_store(store_url) as store:
        export(store, "m", "export")
    bad, reason = BAD_LINES[kind]
    # batches of 3: lines 1-3 land; line 5 is bad, so 4-6 do not, and the push stops (7 never lands)
    data = lines(upsert("1", 1.0), upsert("2", 1.0), upsert("3", 1.0), upsert("4", 1.0), bad, upsert("6", 1.0), upsert("7", 1.0))
    result = push(store_url, data, "--batch-size", "3")
    assert result.exit_code == 1
    assert f"line 5: " in result.stderr and reason in result.stderr
    assert "lines 4-6 (their batch) were not applied" in result.stderr and "stopped at line 4" in result.stderr
    got = scores(store_url)
    assert [got[i] for i in "1234567"] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]


def test_skip_bad_applies_the_rest_and_still_fails(store_url: str) -> None:
    with open_store(store_url) as store:
        export(store, "m", "export")
    data = lines(upsert("1", 1.0), {"id": "2"}, upsert("3", 1.0), {"id": "4", "prediction": {"colour": 1}}, upsert("5", 1.0))
    result = push(store_url, data, "--batch-size", "2", "--skip-bad", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert [b["line"] for b in report["bad"]] == [2, 4] and "no prediction" in report["bad"][0]["error"]
    assert (report["applied"], report["complete"], report["not_applied"]) == (3, False, [])
    got = scores(store_url)
    assert [got[i] for i in "12345"] == [1.0, 0.0, 1.0, 0.0, 1.0]


def test_sequences_order_the_updates_of_one_id(tmp_path: Path) -> None:
    store_url = str(tmp_path / "store.lmdb")
    with open_store(store_url) as store:
        export(store, "m", "export")
    result = push(store_url, lines(upsert("1", 0.3, 30), upsert("1", 0.1, 10), upsert("1", 0.2, 20)), "--batch-size", "2")
    assert result.exit_code == 0 and "1 applied, 2 not newer" in result.stdout
    assert scores(store_url)["1"] == 0.3


def test_push_never_creates_a_store_or_a_model(tmp_path: Path, bigtable_emulator: str) -> None:
    from tests.support.bigtable import bigtable_url

    from predserve.store.bigtable import BigtableStore

    missing, table = tmp_path / "nothing-here", bigtable_url()
    for url in (str(missing), table):
        result = push(url, lines(upsert("1", 1.0)))
        assert result.exit_code == 1 and "export" in result.stderr, result.output
    assert not missing.exists()
    assert not BigtableStore.from_url(table, readonly=True)._admin_table().exists()
    store_url = str(tmp_path / "store.lmdb")
    with open_store(store_url) as store:
        export(store, "m", "export")
    other = push(store_url, lines(upsert("1", 1.0)), model="other")
    assert other.exit_code == 1 and "model 'other' has no published snapshot" in other.stderr
    with open_store(store_url, readonly=True) as store:
        assert store.models() == ["m"]


def test_snapshots_and_the_console_show_the_updates_since_publish(store_url: str, api_server, tmp_path: Path) -> None:
    from tests.support.serving import make_keys

    iam = str(tmp_path / "iam.json")
    keys = make_keys(iam)
    with open_store(store_url) as store:
        export(store, "m", "first")
        start = store.update_position("m")
        second = export(store, "m", "second", log_from=start, go_live=False)  # an export that read the warehouse...
    assert push(store_url, lines(upsert("1", 0.5), upsert("2", 0.5), upsert("3", 0.5))).exit_code == 0  # ...then these came
    with open_store(store_url) as store:
        store.publish("m", second, {"schema": [["score", "DOUBLE"], ["label", "VARCHAR"]]})
    assert scores(store_url)["2"] == 0.5  # replayed into the new snapshot
    assert push(store_url, lines(upsert("4", 0.5), {"id": "5", "delete": True})).exit_code == 0
    listing = json.loads(runner.invoke(main, ["snapshots", "--store", store_url, "--json", "m"]).stdout)
    assert listing["updates_since_publish"] == 2 and listing["events"][-1]["replayed"] == 3
    table = runner.invoke(main, ["snapshots", "--store", store_url, "m"]).stdout
    assert f"2 updates (push / stream) applied to snapshot {second} since its publish" in table
    server = api_server(store_url, iam, "--pointer-ttl", "0")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys['admin']}"}) as http:
        detail = http.get("/v1/models/m").json()
        assert detail["updates_since_publish"] == 2 and detail["events"][0]["replayed"] == 3
        assert http.get("/v1/models").json()["models"][0]["updates_since_publish"] == 2
