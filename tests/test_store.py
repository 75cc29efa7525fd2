"""The shared store suite: every test runs against LMDB and the Bigtable emulator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from predserve.errors import StoreError
from predserve.store import MAX_ID_BYTES, MAX_VALUE_BYTES, open_store
from tests.support.snapshots import TAGGED_IDS as IDS
from tests.support.snapshots import publish_tagged as publish


def test_publish_then_read(store_url: str) -> None:
    with open_store(store_url) as store:
        assert store.current("churn") is None
        snap = publish(store, "churn", "a")
        assert store.current("churn").id == snap
        assert store.get("churn", snap, b"7") == b"a:7"
        assert store.get("churn", snap, b"nope") is None
        assert store.get_many("churn", snap, [b"1", b"missing", b"200"]) == [b"a:1", None, b"a:200"]
        assert store.count("churn", snap) == len(IDS)
        assert store.models() == ["churn"]


def test_unpublished_snapshot_is_invisible(store_url: str) -> None:
    with open_store(store_url) as store:
        first = publish(store, "m", "old")
        snap = store.create_snapshot("m").id
        w = store.writer("m", snap)
        w.write([(b"1", b"new:1")])
        w.close()
        assert store.current("m").id == first
        with pytest.raises(StoreError, match="finish writing it first"):
            store.publish("m", snap)
        with pytest.raises(StoreError, match="does not exist"):
            store.publish("m", 999)


def test_rollback_to_previous_and_to_named(store_url: str) -> None:
    with open_store(store_url) as store:
        with pytest.raises(StoreError, match="no published snapshot"):
            store.rollback("m")
        one = publish(store, "m", "one")
        with pytest.raises(StoreError, match="no earlier snapshot"):
            store.rollback("m")
        two = publish(store, "m", "two")
        three = publish(store, "m", "three")
        assert store.rollback("m").id == two
        assert store.get("m", store.current("m").id, b"1") == b"two:1"
        assert store.rollback("m", three).id == three
        assert store.rollback("m", one).id == one
        with pytest.raises(StoreError, match="does not exist"):
            store.rollback("m", 42)


def test_the_timeline_records_publishes_rollbacks_and_refusals(store_url: str) -> None:
    """Each pointer move and refusal is an event in the model's state, written in the same atomic update."""
    with open_store(store_url) as store:
        one = publish(store, "m", "one")
        two = publish(store, "m", "two")
        store.rollback("m")
        refused = store.create_snapshot("m").id
        store.finish_snapshot("m", refused, 7)
        store.discard("m", refused, [("row_count_drop", "7 rows vs 200 in snapshot 1 (-96.5% drop, limit 50%)"),
                                     ("prediction_drift", "x" * 1000)])
        failed = store.create_snapshot("m").id
        store.discard("m", failed)  # a failed export (no gate refused it) is not an event
        store.publish("m", _finished(store, "m"), overridden=["prediction_drift"])
        with open_store(store_url, readonly=True) as reader:  # read back from the store, as a server does
            events = reader.state("m").events
    assert [(e["event"], e["snapshot"], e["previous"]) for e in events] == [
        ("published", one, None), ("published", two, one), ("rolled_back", one, two), ("refused", refused, one),
        ("published", refused + 2, one)]
    assert [e["rows"] for e in events] == [len(IDS), len(IDS), len(IDS), 7, 1]
    assert events[3]["gates"][0] == {"gate": "row_count_drop", "detail": "7 rows vs 200 in snapshot 1 (-96.5% drop, limit 50%)"}
    assert len(events[3]["gates"][1]["detail"]) == 300 and events[3]["gates"][1]["detail"].endswith("…")
    assert events[4]["overridden"] == ["prediction_drift"] and "overridden" not in events[0]
    assert all(events[i]["time"] <= events[i + 1]["time"] for i in range(len(events) - 1))


def test_the_timeline_keeps_the_last_events_only(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The servers read the state every second: it holds the last MAX_EVENTS events, no more."""
    from predserve.store import base

    monkeypatch.setattr(base, "MAX_EVENTS", 4)
    with open_store(store_url) as store:
        snaps = [publish(store, "m", f"v{i}") for i in range(6)]
        events = store.state("m").events
    assert [e["snapshot"] for e in events] == snaps[2:]


def _finished(store, model: str) -> int:
    """A new snapshot of one row, finished (ready to publish)."""
    snap = store.create_snapshot(model).id
    writer = store.writer(model, snap)
    writer.write([(b"1", b"x")])
    writer.close()
    store.finish_snapshot(model, snap, 1)
    return snap


def test_gc_keeps_exactly_the_last_k(store_url: str) -> None:
    with open_store(store_url) as store:
        snaps = [publish(store, "m", f"v{i}") for i in range(5)]
        deleted = store.gc("m", keep=3, grace=0)
        assert sorted(s for _, s in deleted) == snaps[:2]
        state = store.state("m")
        assert sorted(state.snapshots) == snaps[2:]
        assert state.current == snaps[-1]
        for gone in snaps[:2]:
            assert store.count("m", gone) == 0
        assert store.count("m", snaps[2]) == len(IDS)
        with pytest.raises(StoreError, match="at least 1"):
            store.gc("m", keep=0)


def test_gc_spares_snapshots_current_within_the_grace_period(store_url: str) -> None:
    """Whatever ``keep`` says, a snapshot that was current less than ``grace`` seconds ago stays:
    servers may still read it through their cached pointers. The time it stopped being current
    is state data, so a GC in another process knows it too."""
    with open_store(store_url) as store:
        one, two, three = (publish(store, "m", f"v{i}") for i in range(3))
        assert store.gc("m", keep=1) == []  # default grace: two and one were current moments ago
        assert store.rollback("m").id == two
        state = store.state("m")
        assert state.snapshots[three].retired_at is not None and state.snapshots[two].retired_at is None
        with open_store(store_url) as another:  # reads the recorded times back from the store
            assert another.gc("m", keep=1, grace=30) == []
        time.sleep(0.3)
        assert sorted(sid for _, sid in store.gc("m", keep=1, grace=0.2)) == [one, three]
        assert store.current("m").id == two and store.get("m", two, b"1") == b"v1:1"
        with pytest.raises(StoreError, match="0 seconds or more"):
            store.gc("m", grace=-1)


def test_concurrent_state_writers_all_land(store_url: str) -> None:
    """40 writers, each with its own client, released together, allocating 5 snapshots each: all 200
    updates land, none lost. On Bigtable a writer that loses the compare-and-set retries after a
    jittered, growing pause; 50 immediate retries gave up under this contention."""
    with open_store(store_url) as first:
        first.create_snapshot("m")
    writers = [open_store(store_url) for _ in range(40)]
    for writer in writers:
        writer.state("m")  # connect before the race starts
    start = threading.Barrier(len(writers))
    allocated: list[int] = []
    failures: list[str] = []

    def allocate(store) -> None:
        start.wait()
        for _ in range(5):
            try:
                allocated.append(store.create_snapshot("m").id)
            except StoreError as exc:
                failures.append(str(exc))

    threads = [threading.Thread(target=allocate, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for writer in writers:
        writer.close()
    assert failures == []
    assert sorted(allocated) == list(range(2, 202))
    with open_store(store_url) as store:
        assert store.state("m").next_id == 202


def test_readers_never_see_a_mix_during_publishes(store_url: str) -> None:
    """Readers hammer ids while snapshots of distinguishable content are published."""
    with open_store(store_url) as store:
        publish(store, "m", "s0")
        # A generous deadline: this test is about consistency, and the emulator is slow under load.
        reader = open_store(store_url, readonly=True, read_timeout=5.0)
        stop = threading.Event()
        bad: list[str] = []
        reads = [0]

        def hammer() -> None:
            try:
                while not stop.is_set():
                    current = reader.current("m")
                    values = reader.get_many("m", current.id, IDS[:50])
                    tags = {v.split(b":")[0] for v in values if v is not None}
                    if len(tags) != 1 or None in values:
                        bad.append(f"snapshot {current.id}: {tags} missing={values.count(None)}")
                    reads[0] += 1
            except Exception as exc:  # a dead reader must fail the test, not vanish
                bad.append(f"reader failed: {exc!r}")

        threads = [threading.Thread(target=hammer) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            for i in range(1, 8):
                publish(store, "m", f"s{i}")
                time.sleep(0.02)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert reads[0] > 10
        assert bad == []
        assert reader.get("m", reader.current("m").id, b"1") == b"s7:1"


WRITER_SCRIPT = textwrap.dedent("""
    import sys, time
    from predserve.store import open_store
    store = open_store(sys.argv[1])
    snap = store.create_snapshot("m").id
    i = 0
    while True:
        writer = store.writer("m", snap)
        writer.write((f"{n}".encode(), b"partial") for n in range(i, i + 50))
        writer.close()  # flushes batched writes
        i += 50
        print(snap, flush=True)
        time.sleep(0.01)
""")


def test_writer_killed_mid_snapshot(store_url: str, tmp_path) -> None:
    with open_store(store_url) as store:
        live = publish(store, "m", "live")
        proc = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, store_url], stdout=subprocess.PIPE, env={**os.environ})
        lines = [proc.stdout.readline() for _ in range(5)]
        partial = int(lines[0])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert store.current("m").id == live
        assert store.get("m", live, b"1") == b"live:1"
        assert store.count("m", partial) > 0
        deleted = store.gc("m")
        assert ("m", partial) in deleted
        assert store.count("m", partial) == 0
        assert partial not in store.state("m").snapshots
    # a fresh process opens the store after the crash and still reads the live snapshot
    check = subprocess.run(
        [sys.executable, "-c", "import sys; from predserve.store import open_store; s = open_store(sys.argv[1], readonly=True);"
         " print(s.get('m', s.current('m').id, b'1').decode())", store_url],
        capture_output=True, text=True, env={**os.environ}, timeout=60,
    )
    assert check.stdout.strip() == "live:1", check.stderr


@pytest.mark.parametrize(
    "entity_id, match",
    [(b"", "empty id"), (b"x" * (MAX_ID_BYTES + 1), "longer than the maximum"), (b"\xff\xfe", "not valid UTF-8")],
)
def test_bad_ids_are_refused(store_url: str, entity_id: bytes, match: str) -> None:
    with open_store(store_url) as store:
        snap = store.create_snapshot("m").id
        writer = store.writer("m", snap)
        with pytest.raises(StoreError, match=match):
            writer.write([(b"ok", b"1"), (entity_id, b"2")])
        writer.close()
        assert store.get("m", snap, b"ok") is None  # the batch was refused whole


def test_oversized_value_is_refused(store_url: str) -> None:
    with open_store(store_url) as store:
        snap = store.create_snapshot("m").id
        with pytest.raises(StoreError, match="over the maximum"):
            store.writer("m", snap).write([(b"1", b"x" * (MAX_VALUE_BYTES + 1))])


def test_read_only_store_cannot_write(store_url: str) -> None:
    with open_store(store_url) as store:
        publish(store, "m", "a")
        reader = open_store(store_url, readonly=True)
        for action in (lambda: reader.create_snapshot("m"), lambda: reader.rollback("m"), lambda: reader.gc()):
            with pytest.raises(StoreError, match="read-only"):
                action()


def test_invalid_model_name(store_url: str) -> None:
    with open_store(store_url) as store:
        with pytest.raises(StoreError, match="invalid model name"):
            store.create_snapshot("bad name/with#chars")


def test_the_emulator_make_test_builds_answers() -> None:
    """`make test` builds Google's bttest server from Debian's Go packages; prove it serves a store."""
    from pathlib import Path

    from tests.support.bigtable import private_emulator
    from tests.support.processes import ROOT

    binary = os.environ.get("PREDSERVE_BIGTABLE_EMULATOR") or str(ROOT / ".cache/bin/bigtable-emulator")
    assert Path(binary).exists(), "run `make test`: it builds .cache/bin/bigtable-emulator"
    with private_emulator([binary, "-host", "127.0.0.1", "-port"]):
        with open_store("bigtable://p/i/built") as store:
            snap = publish(store, "m", "built")
            assert store.get("m", snap, b"9") == b"built:9"
