"""Updates between exports, at the store level: every rule of docs/architecture.md's
"Updates between exports", against LMDB and the Bigtable emulator."""

from __future__ import annotations

import json
import threading
import time

import pytest

from predserve.errors import StoreError
from predserve.store import open_store
from predserve.store.updates import MAX_UPDATE_BYTES, Update, UpdateRejected, parse_update
from tests.support.snapshots import SCORED_SCHEMA as SCHEMA
from tests.support.snapshots import publish_scored as export


def upsert(entity_id: str, score: float, sequence: int | None = None) -> Update:
    line = {"id": entity_id, "prediction": {"score": score, "label": "update"}}
    if sequence is not None:
        line["sequence"] = sequence
    return parse_update(json.dumps(line))


def delete(entity_id: str, sequence: int) -> Update:
    return parse_update(json.dumps({"id": entity_id, "delete": True, "sequence": sequence}))


def served(store, model: str, entity_id: str) -> dict | None:
    info = store.current(model)
    raw = store.get(model, info.id, entity_id.encode())
    return json.loads(raw) if raw is not None else None


def test_upsert_and_delete_are_served_from_the_current_snapshot(store_url: str) -> None:
    with open_store(store_url) as store:
        snap = export(store, "m", "export")
        result = store.apply_updates("m", [upsert("7", 0.9, 1), upsert("new", 0.5, 1), delete("8", 1)])
        assert (result.applied, result.ignored, result.snapshot) == (3, 0, snap)
        assert served(store, "m", "7") == {"model": "m", "id": "7", "snapshot": snap, "prediction": {"score": 0.9, "label": "update"}}
        assert served(store, "m", "new")["prediction"]["score"] == 0.5
        assert served(store, "m", "8") is None
        assert store.get_many("m", snap, [b"8", b"9"])[0] is None
        assert b"8" not in dict(store.items("m", snap))
        assert store.update_position("m") == result.position == 3
        assert [(e.position, e.id, e.prediction is None) for e in store.log_entries("m", 0)] == [(1, "7", False), (2, "new", False), (3, "8", True)]
        assert store.updates_since_publish("m") == 3


def test_redelivery_and_older_after_newer_change_nothing(store_url: str) -> None:
    with open_store(store_url) as store:
        export(store, "m", "export")
        store.apply_updates("m", [upsert("1", 0.5, 10), delete("2", 10)])
        again = store.apply_updates("m", [upsert("1", 0.5, 10), upsert("1", 0.1, 9), upsert("2", 0.3, 3)])
        assert (again.applied, again.ignored) == (0, 3)
        assert served(store, "m", "1")["prediction"]["score"] == 0.5
        assert served(store, "m", "2") is None  # the tombstone wins over an older upsert
        assert store.update_position("m") == 2  # nothing ignored is logged
        newer = store.apply_updates("m", [upsert("1", 0.7, 11), upsert("1", 0.8, 12)])  # in order within a batch
        assert newer.applied == 2 and served(store, "m", "1")["prediction"]["score"] == 0.8


def test_redelivery_after_a_publish_does_not_overwrite_the_export(store_url: str) -> None:
    with open_store(store_url) as store:
        export(store, "m", "first")
        store.apply_updates("m", [upsert("1", 0.5, 10)])
        export(store, "m", "second")  # started after the update: its data is newer
        assert served(store, "m", "1")["prediction"]["label"] == "second"
        assert store.apply_updates("m", [upsert("1", 0.5, 10), upsert("1", 0.4, 9)]).ignored == 2  # and an older one
        assert served(store, "m", "1")["prediction"]["label"] == "second"


def test_a_bad_update_rejects_its_whole_batch(store_url: str) -> None:
    with open_store(store_url) as store:
        snap = export(store, "m", "export")
        bad = Update("3", 5, {"score": 1.0, "nope": 2})
        with pytest.raises(UpdateRejected, match="nope") as caught:
            store.apply_updates("m", [upsert("1", 0.9, 5), bad])
        assert caught.value.index == 1
        assert served(store, "m", "1")["prediction"]["label"] == "export"
        assert store.update_position("m") == 0
        assert store.apply_updates("m", [upsert("1", 0.9, 5)]).applied == 1  # its sequence was not consumed
        assert snap == store.current("m").id


def test_limits_and_shapes_are_checked_when_parsed() -> None:
    with pytest.raises(StoreError, match="over the limit"):
        parse_update(json.dumps({"id": "1", "prediction": {"x": "a" * MAX_UPDATE_BYTES}}))
    with pytest.raises(StoreError, match="not JSON"):
        parse_update("{nope")
    with pytest.raises(StoreError, match="no id"):
        parse_update('{"prediction": {}}')
    with pytest.raises(StoreError, match="sequence"):
        parse_update('{"id": "1", "delete": true, "sequence": -1}')
    with pytest.raises(StoreError, match="either"):
        parse_update('{"id": "1", "delete": true, "prediction": {}}')
    at_limit = {"label": "x" * (MAX_UPDATE_BYTES - len('{"label":""}'))}
    assert len(parse_update(json.dumps({"id": "1", "prediction": at_limit})).encoded) == MAX_UPDATE_BYTES
    first, second = parse_update('{"id": 1, "delete": true}'), parse_update('{"id": "1", "delete": true}')
    assert first.id == "1" and second.sequence > first.sequence  # the writer's clock, strictly increasing


def test_the_store_refuses_a_prediction_over_the_limit_however_the_update_was_made(store_url: str) -> None:
    with open_store(store_url) as store:
        export(store, "m", "export")
        big = Update("2", 5, {"label": "x" * (MAX_UPDATE_BYTES - len('{"label":""}') + 1)})  # one byte over
        with pytest.raises(UpdateRejected, match="over the limit") as caught:
            store.apply_updates("m", [upsert("1", 0.9, 5), big])
        assert caught.value.index == 1
        assert served(store, "m", "1")["prediction"]["label"] == "export" and store.update_position("m") == 0
        at_limit = Update("2", 5, {"label": "x" * (MAX_UPDATE_BYTES - len('{"label":""}'))})
        assert store.apply_updates("m", [at_limit]).applied == 1
        assert len(served(store, "m", "2")["prediction"]["label"]) == MAX_UPDATE_BYTES - len('{"label":""}')


def test_updates_need_a_published_snapshot_and_a_writer(store_url: str, tmp_path) -> None:
    with open_store(store_url) as store:
        with pytest.raises(StoreError, match="no published snapshot"):
            store.apply_updates("m", [upsert("1", 0.1, 1)])
        export(store, "m", "export")
    if not store_url.startswith("bigtable://"):
        with open_store(store_url, readonly=True) as reader, pytest.raises(StoreError, match="read-only"):
            reader.apply_updates("m", [upsert("1", 0.1, 1)])


def test_an_update_made_during_an_export_is_in_the_new_snapshot(store_url: str) -> None:
    """Venice's rewind: the export records the log position at its start and replays after it."""
    with open_store(store_url) as store:
        export(store, "m", "first")
        store.apply_updates("m", [upsert("1", 0.1, 1)])  # before the export: superseded by it
        start = store.update_position("m")
        new = export(store, "m", "second", log_from=start, go_live=False)
        store.apply_updates("m", [upsert("2", 0.2, 1), delete("3", 1), upsert("new", 0.4, 1)])  # while it "runs"
        store.publish("m", new, SCHEMA)
        assert served(store, "m", "1")["prediction"]["label"] == "second"
        assert served(store, "m", "2") == {"model": "m", "id": "2", "snapshot": new, "prediction": {"score": 0.2, "label": "update"}}
        assert served(store, "m", "3") is None
        assert served(store, "m", "new")["snapshot"] == new
        assert store.state("m").events[-1]["replayed"] == 3
        assert store.updates_since_publish("m") == 0


def test_updates_racing_a_publish_are_never_lost(store_url: str) -> None:
    """Writers apply updates while an export publishes: afterwards every update is served."""
    with open_store(store_url) as store:
        export(store, "m", "first")
        start = store.update_position("m")
        new = export(store, "m", "second", log_from=start, go_live=False)
        expected: dict[str, float] = {}
        errors: list[BaseException] = []

        # Each writer's store is opened first: py-lmdb's open_db, which opening does, waits for
        # another thread's write transaction while holding the GIL.
        writers = [open_store(store_url) for _ in range(2)]

        def write(worker: int) -> None:
            try:
                for n in range(30):
                    writers[worker].apply_updates("m", [upsert(f"{worker}-{n}", n / 100, 1)])
                    expected[f"{worker}-{n}"] = n / 100
            except BaseException as exc:  # reported by the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(2)]
        for t in threads:
            t.start()
        store.publish("m", new, SCHEMA)
        for t in threads:
            t.join()
        for own in writers:
            own.close()
        assert not errors
        assert store.current("m").id == new
        assert {k: served(store, "m", k)["prediction"]["score"] for k in expected} == expected


def test_rollback_keeps_the_updates_made_since(store_url: str) -> None:
    with open_store(store_url) as store:
        first = export(store, "m", "first")
        store.apply_updates("m", [upsert("1", 0.1, 1)])
        second = export(store, "m", "second")
        store.apply_updates("m", [upsert("2", 0.2, 1), delete("3", 1)])
        back = store.rollback("m")
        assert back.id == first
        assert served(store, "m", "1")["prediction"] == {"score": 0.1, "label": "update"}  # made while it was current
        assert served(store, "m", "2")["snapshot"] == first  # made since, replayed into it
        assert served(store, "m", "3") is None
        assert served(store, "m", "4")["prediction"]["label"] == "first"
        assert store.state("m").events[-1]["replayed"] == 2
        assert store.apply_updates("m", [upsert("2", 0.9, 1), upsert("1", 0.9, 0)]).ignored == 2  # redelivered, older
        assert served(store, "m", "2")["prediction"]["score"] == 0.2
        store.apply_updates("m", [upsert("4", 0.4, 1)])
        assert store.rollback("m", second).id == second
        assert served(store, "m", "4")["prediction"]["score"] == 0.4


def test_gc_keeps_the_log_a_kept_snapshot_needs(store_url: str) -> None:
    with open_store(store_url) as store:
        first = export(store, "m", "first")
        store.apply_updates("m", [upsert("1", 0.1, 1)])  # position 1: only the first snapshot got it directly
        export(store, "m", "second")
        store.apply_updates("m", [upsert("2", 0.2, 1)])  # position 2: a rollback to `first` needs it
        assert store.gc("m", keep=3, grace=0) == []
        assert [e.position for e in store.log_entries("m", 0)] == [2]  # position 1 is needed by nobody
        assert store.rollback("m", first).id == first
        assert served(store, "m", "2")["prediction"]["score"] == 0.2


def test_the_retention_trims_the_log_and_the_snapshots_that_needed_it(store_url: str) -> None:
    with open_store(store_url) as store:
        first = export(store, "m", "first")
        export(store, "m", "second")
        store.apply_updates("m", [upsert("1", 0.1, 1)])
        store.apply_updates("m", [upsert("2", 0.2, 1)])
        deleted = store.gc("m", keep=3, grace=0, update_retention=0)
        assert deleted == [("m", first)]  # a rollback to it could no longer replay what it lacks
        assert store.log_entries("m", 0) == []
        assert served(store, "m", "1")["prediction"]["score"] == 0.1  # the current snapshot keeps them
        unfinished = export(store, "m", "third", log_from=0, go_live=False)  # an export older than the retention
        with pytest.raises(StoreError, match="update retention"):
            store.publish("m", unfinished, SCHEMA)


def test_the_retention_trims_only_what_is_older_than_it(store_url: str) -> None:
    """Three snapshots: the oldest needs updates A and B (made after it retired), the middle one
    only B. With A past the retention and B within it, GC drops A and the oldest snapshot, and
    keeps B and the middle one, which a rollback then brings up to date."""
    with open_store(store_url) as store:
        first = export(store, "m", "first")
        second = export(store, "m", "second")
        store.apply_updates("m", [upsert("1", 0.1, 1)])  # A: the first snapshot lacks it, the second got it
        time.sleep(0.5)
        export(store, "m", "third")
        store.apply_updates("m", [upsert("2", 0.2, 1)])  # B: both retired snapshots lack it
        a, b = store.log_entries("m", 0)
        retention = time.time() - (a.time + b.time) / 2  # the cut falls between A and B
        assert store.gc("m", keep=3, grace=0, update_retention=retention) == [("m", first)]
        assert [e.position for e in store.log_entries("m", 0)] == [b.position]
        assert store.rollback("m", second).id == second
        assert served(store, "m", "2")["prediction"]["score"] == 0.2 and served(store, "m", "1")["prediction"]["score"] == 0.1


def test_readers_see_the_old_body_or_the_new_one(store_url: str) -> None:
    """An update's row is written whole (LMDB: in one write transaction; Bigtable: one row mutation):
    a reader never sees a partial body."""
    with open_store(store_url) as store:
        snap = export(store, "m", "export")
        stop = threading.Event()
        seen: set[str] = set()
        errors: list[BaseException] = []

        def read() -> None:
            try:
                # a patient Bigtable reader: a slow answer on a busy machine is not what is tested
                options = {"read_timeout": 10.0} if store_url.startswith("bigtable://") else {}
                with open_store(store_url, readonly=True, **options) as reader:
                    while not stop.is_set():
                        seen.add(json.loads(reader.get("m", snap, b"1"))["prediction"]["label"])
            except BaseException as exc:  # reported by the test's thread
                errors.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        for n in range(1, 200):
            store.apply_updates("m", [Update("1", n, {"score": n, "label": f"u{n % 2}"})])
        stop.set()
        reader.join()
        assert not errors
        assert seen <= {"export", "u0", "u1"} and len(seen) >= 2
