"""LMDB-only behaviour: map growth, space reuse after GC, readers in other processes, fork,
damaged files, file modes."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from predserve.errors import StoreDamaged
from predserve.store import lmdb as lmdb_store
from predserve.store import open_store
from tests.support.snapshots import TAGGED_IDS as IDS
from tests.support.snapshots import publish_tagged as publish


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


# ---- damaged files: never a SIGBUS, always StoreDamaged naming the store ------------------------
BIG_IDS = [str(i).encode() for i in range(80_000)]


def big_store(path: Path) -> None:
    """A store of ~30 MB: truncating it to 8 MB cuts pages every read needs."""
    with open_store(str(path)) as store:
        publish(store, "m", "v" * 200, BIG_IDS)


def run_child(script: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh interpreter: a SIGBUS there fails the test instead of killing pytest."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], input=stdin,
                          capture_output=True, text=True, timeout=120)


OPEN_AND_READ = """
    import sys
    from predserve.errors import StoreDamaged
    from predserve.store import open_store
    try:
        store = open_store(sys.argv[1], readonly=sys.argv[2] == "reader")
        print("opened", store.get("m", store.current("m").id, b"79999"))
    except StoreDamaged as exc:
        print(f"StoreDamaged: {exc}")
"""


@pytest.mark.parametrize("role", ["reader", "writer"])
def test_truncated_data_file_is_refused_at_open(tmp_path: Path, role: str) -> None:
    """`truncate -s 8M data.mdb`: opening says the store is damaged, with the path, sizes and remedy."""
    path = tmp_path / "s"
    big_store(path)
    subprocess.run(["truncate", "-s", "8M", str(path / "data.mdb")], check=True)
    child = run_child(OPEN_AND_READ, str(path), role)
    assert child.returncode == 0, f"the process died (exit {child.returncode}): {child.stderr[-500:]}"
    message = child.stdout
    assert message.startswith("StoreDamaged"), message
    assert str(path / "data.mdb") in message and "8,388,608 bytes" in message and "Restore the store" in message
    assert os.path.getsize(path / "data.mdb") == 8 << 20, "opening changed the damaged file"


TRUNCATED_WHILE_OPEN = """
    import sys
    from predserve.errors import StoreDamaged
    from predserve.store import open_store
    store = open_store(sys.argv[1], readonly=True)
    snap = store.current("m").id
    assert store.get("m", snap, b"1") is not None
    print("ready", flush=True)
    sys.stdin.readline()  # the parent truncates the file now
    for read in (lambda: store.get("m", snap, b"79999"), lambda: store.get_many("m", snap, [b"1", b"2"]),
                 lambda: store.state("m"), lambda: store.models()):
        try:
            read()
            print("read succeeded")
        except StoreDamaged as exc:
            print(f"StoreDamaged: {exc}")
"""


def test_truncation_under_an_open_reader_is_store_damaged(tmp_path: Path) -> None:
    """A server's reader whose data.mdb is truncated under it gets StoreDamaged on every read, and lives."""
    path = tmp_path / "s"
    big_store(path)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(TRUNCATED_WHILE_OPEN), str(path)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    subprocess.run(["truncate", "-s", "8M", str(path / "data.mdb")], check=True)
    out, err = child.communicate("go\n", timeout=120)
    assert child.returncode == 0, f"the reader died (exit {child.returncode}): {err[-500:]}"
    lines = out.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("StoreDamaged") for line in lines), out
    assert "shrank from" in lines[0] and "to 8,388,608 bytes" in lines[0] and str(path / "data.mdb") in lines[0]


def test_corrupted_pages_are_store_damaged(tmp_path: Path) -> None:
    """Pages overwritten in place (the file keeps its size): reads and a new open raise StoreDamaged
    naming the store, not LMDB's CorruptedError."""
    path = tmp_path / "s"
    with open_store(str(path)) as store:
        snap = publish(store, "m", "c")
    reader = open_store(str(path), readonly=True)
    assert reader.get("m", snap, b"1") == b"c:1"
    page = reader.env.stat()["psize"]
    size = os.path.getsize(path / "data.mdb")
    with open(path / "data.mdb", "r+b") as f:  # zero every page but the two meta pages
        f.seek(2 * page)
        f.write(bytes(size - 2 * page))
    try:
        for read in (lambda: reader.get("m", snap, b"1"), lambda: reader.get_many("m", snap, [b"1"]), lambda: reader.state("m")):
            with pytest.raises(StoreDamaged, match=f"the LMDB store {path} is damaged: a page is corrupted .*Restore the store"):
                read()
    finally:
        reader.close()
    child = run_child(OPEN_AND_READ, str(path), "reader")
    assert child.stdout.startswith("StoreDamaged") and str(path) in child.stdout, child.stdout + child.stderr


def test_a_short_file_whose_missing_pages_are_free_still_opens(tmp_path: Path) -> None:
    """LMDB does not write pages that a transaction allocated and freed again, so a whole store can
    be shorter than its last commit's page count. Such a store opens and serves: only missing
    pages that are in use make it damaged."""
    import lmdb

    path = tmp_path / "s"
    with open_store(str(path)) as store:
        publish(store, "m", "v")
    env = lmdb.open(str(path), max_dbs=4)  # a writer transaction that allocates pages and frees them
    with env.begin(write=True) as txn:
        scratch = [b"~scratch%06d" % i for i in range(3000)]
        for key in scratch:
            txn.put(key, b"x" * 300, db=env.open_db(b"data", txn=txn))
        for key in scratch:
            txn.delete(key, db=env.open_db(b"data", txn=txn))
    needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    env.close()
    assert os.path.getsize(path / "data.mdb") < needed, "this LMDB wrote every page: the setup needs changing"
    child = run_child(OPEN_AND_READ.replace('b"79999"', 'b"7"'), str(path), "reader")
    assert child.stdout.strip() == "opened b'v:7'", child.stdout + child.stderr


def test_new_store_files_get_the_documented_modes(tmp_path: Path) -> None:
    """Directory 0750, data.mdb 0640 (the API's group reads), lock.mdb 0660 (readers register in it),
    whatever the umask; an operator's later chmod is kept."""
    previous = os.umask(0o022)
    try:
        path = tmp_path / "s"
        with open_store(str(path)) as store:
            publish(store, "m", "x")
    finally:
        os.umask(previous)
    modes = {name: p.stat().st_mode & 0o777 for name, p in
             {"dir": path, "data": path / "data.mdb", "lock": path / "lock.mdb"}.items()}
    assert modes == {"dir": 0o750, "data": 0o640, "lock": 0o660}
    os.chmod(path / "data.mdb", 0o600)
    with open_store(str(path)) as store:
        publish(store, "m", "y")
    assert (path / "data.mdb").stat().st_mode & 0o777 == 0o600
