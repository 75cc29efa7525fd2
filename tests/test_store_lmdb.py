"""LMDB-only behaviour: map growth, space reuse after GC, readers in other processes, fork."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import pytest

from predserve.store import lmdb as lmdb_store
from predserve.store import open_store
from tests.test_store import IDS, publish


def test_map_grows_when_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lmdb_store, "INITIAL_MAP_SIZE", 1 << 20)  # 1 MiB
    with open_store(str(tmp_path / "s")) as store:
        ids = [str(i).encode() for i in range(20_000)]
        snap = publish(store, "m", "x" * 100, ids)  # ~2.5 MB of values
        assert store.count("m", snap) == 20_000
        assert store.env.info()["map_size"] > 1 << 20


def test_deleted_snapshots_free_space_for_reuse(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "s")) as store:
        ids = [str(i).encode() for i in range(5_000)]
        sizes = []
        for round_ in range(8):
            publish(store, "m", f"r{round_}" + "x" * 200, ids)
            store.gc("m", keep=1, grace=0)
            sizes.append(store.disk_bytes())
        # after the first rounds the file stops growing: freed pages are reused
        assert sizes[-1] == sizes[3], sizes


def _read_in_child(path: str, queue: mp.Queue) -> None:
    store = open_store(path, readonly=True)
    current = store.current("m")
    queue.put(store.get("m", current.id, b"5"))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_readers_in_other_processes(tmp_path: Path, method: str) -> None:
    path = str(tmp_path / "s")
    with open_store(path) as store:
        publish(store, "m", "p")
        store.current("m")  # the parent has used its environment before the fork
        ctx = mp.get_context(method)
        queue = ctx.Queue()
        children = [ctx.Process(target=_read_in_child, args=(path, queue)) for _ in range(3)]
        for c in children:
            c.start()
        results = [queue.get(timeout=60) for _ in children]
        for c in children:
            c.join(60)
        assert results == [b"p:5"] * 3
        assert all(c.exitcode == 0 for c in children)


def test_store_object_reopens_after_fork(tmp_path: Path) -> None:
    """A store object inherited across fork() opens its own environment in the child."""
    path = str(tmp_path / "s")
    store = open_store(path)
    publish(store, "m", "f")
    reader = open_store(path, readonly=True)
    reader.current("m")
    pid = os.fork()
    if pid == 0:  # child: use the inherited object
        ok = reader.get("m", reader.current("m").id, b"3") == b"f:3"
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    store.close()


def test_read_only_open_of_missing_store(tmp_path: Path) -> None:
    from predserve.errors import StoreError

    with pytest.raises(StoreError, match="nothing has been exported"):
        open_store(str(tmp_path / "nothing"), readonly=True)


def test_ids_listed_in_key_order(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "s")) as store:
        snap = publish(store, "m", "k", IDS[:3])
        assert [i for i, _ in store.items("m", snap)] == sorted(IDS[:3])
