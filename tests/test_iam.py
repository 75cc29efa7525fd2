"""Service-account registry: edits from many processes at once, and how fast servers see them.

Every test here uses real processes: `predserve iam` commands run as subprocesses, editors in
other processes through multiprocessing, and a real `predserve serve` over HTTP on loopback.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from predserve.iam import RELOAD_EVERY, Registry
from predserve.store import open_store
from tests.support.snapshots import publish_tagged as publish


def cli(*args: str) -> subprocess.Popen:
    """Start one `predserve` command (a fresh interpreter, as a user's shell would)."""
    return subprocess.Popen([sys.executable, "-m", "predserve.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out


def names_in(path: Path) -> set[str]:
    return {a["name"] for a in json.loads(path.read_text())["service_accounts"]}


def printed_key(output: str) -> str:
    return output.strip().split()[-1]


def test_concurrent_cli_creates_lose_nothing(tmp_path: Path) -> None:
    """Six `predserve iam create` at once: six accounts, six working keys (the issue: 27 of 40 kept)."""
    iam = tmp_path / "iam.json"
    procs = {f"svc-{i}": cli("iam", "create", "--iam", str(iam), "--key-only", f"svc-{i}") for i in range(6)}
    keys = {name: finish(proc).strip() for name, proc in procs.items()}
    assert names_in(iam) == set(keys)
    registry = Registry(iam)
    for name, key in keys.items():
        account = registry.authenticate(key)
        assert account is not None and account.name == name


def test_concurrent_cli_delete_and_rotate_are_not_undone(tmp_path: Path) -> None:
    """A delete and a rotation racing creates in other processes stay done (the issue: 10 and 14 of 20 undone)."""
    iam = tmp_path / "iam.json"
    registry = Registry(iam)
    _, old_key = registry.create("rotated", "reader")
    registry.create("victim", "reader")
    racing = [
        cli("iam", "delete", "--iam", str(iam), "victim"),
        cli("iam", "rotate", "--iam", str(iam), "rotated"),
        *(cli("iam", "create", "--iam", str(iam), "--key-only", f"new-{i}") for i in range(2)),
    ]
    outputs = [finish(proc) for proc in racing]
    new_key = printed_key(outputs[1])
    assert names_in(iam) == {"rotated", "new-0", "new-1"}
    fresh = Registry(iam)
    assert fresh.authenticate(old_key) is None, "the rotation was undone: the old key still works"
    assert fresh.authenticate(new_key) is not None, "the rotation was undone: the new key is refused"


def _edit_many(path: str, worker: int, start: mp.synchronize.Barrier, keys: mp.Queue) -> None:
    """Create 10 accounts, delete the odd ones, then rotate account 0 five times; report its last key."""
    registry = Registry(path)
    start.wait()
    try:
        for i in range(10):
            registry.create(f"w{worker}-n{i}", "reader")
        for i in range(1, 10, 2):
            registry.delete(f"w{worker}-n{i}")
        for _ in range(5):
            key = registry.rotate(f"w{worker}-n0")
    except Exception as exc:  # reported to the test, which fails with it
        keys.put((worker, f"failed: {exc}"))
        raise
    keys.put((worker, key))


def test_editors_in_many_processes_lose_nothing(tmp_path: Path) -> None:
    """Six processes released together, each creating, deleting and rotating through its own Registry:
    every create is kept, every delete stays deleted, every last rotated key works."""
    iam = tmp_path / "iam.json"
    # spawn, not fork: a fork of a test process that already runs gRPC or Beam threads can crash in the child
    ctx = mp.get_context("spawn")
    start, keys = ctx.Barrier(6), ctx.Queue()
    workers = [ctx.Process(target=_edit_many, args=(str(iam), w, start, keys)) for w in range(6)]
    for w in workers:
        w.start()
    last_keys = dict(keys.get(timeout=120) for _ in workers)
    for w in workers:
        w.join(120)
    failed = [key for key in last_keys.values() if key.startswith("failed")]
    assert not failed, f"an edit was lost under another process's write: {failed}"
    assert names_in(iam) == {f"w{w}-n{i}" for w in range(6) for i in range(0, 10, 2)}
    registry = Registry(iam)
    for worker, key in last_keys.items():
        account = registry.authenticate(key)
        assert account is not None and account.name == f"w{worker}-n0", f"worker {worker}'s last rotation was undone"


def test_a_change_within_one_clock_tick_is_seen(tmp_path: Path) -> None:
    """A new version of the file whose mtime equals the old one's (coarse filesystem clocks, or a
    copy that kept the mtime) is still noticed: the registry compares inode and size too."""
    iam = tmp_path / "iam.json"
    _, key = Registry(iam).create("svc", "reader")
    server_view = Registry(iam)
    assert server_view.authenticate(key) is not None
    before = iam.stat()
    Registry(iam).rotate("svc")
    os.utime(iam, ns=(before.st_atime_ns, before.st_mtime_ns))  # same mtime as the version the server read
    server_view.reload_if_changed(every=0)
    assert server_view.authenticate(key) is None


def test_lock_and_registry_files_are_private(tmp_path: Path) -> None:
    iam = tmp_path / "iam.json"
    Registry(iam).create("svc", "reader")
    assert iam.stat().st_mode & 0o777 == 0o600
    lock = Path(f"{iam}.lock")
    if lock.exists():  # the lock library may remove its file on release
        assert lock.stat().st_mode & 0o077 == 0


def assert_rotated_within_bound(server, old_key: str, new_key: str, returned: float) -> None:
    """Send requests with both keys until RELOAD_EVERY + 1 s after the rotation returned; every
    request sent after RELOAD_EVERY must see the rotation."""
    seen: list[tuple[float, int, int]] = []
    with httpx.Client(base_url=server.url, timeout=10) as c:
        while time.time() < returned + RELOAD_EVERY + 1.0:
            sent = time.time()
            old = c.get("/v1/models", headers={"Authorization": f"Bearer {old_key}"}).status_code
            new = c.get("/v1/models", headers={"Authorization": f"Bearer {new_key}"}).status_code
            seen.append((sent, old, new))
            time.sleep(0.02)
    late = [(old, new) for sent, old, new in seen if sent >= returned + RELOAD_EVERY]
    assert late, "no request was sent after the bound"
    assert all(old == 401 for old, _ in late), f"the old key still worked {RELOAD_EVERY} s after the rotation"
    assert all(new == 200 for _, new in late), f"the new key was refused {RELOAD_EVERY} s after the rotation"


def test_rotate_reaches_a_running_server_within_the_bound(tmp_path: Path, api_server) -> None:
    """After `predserve iam rotate` returns, every request sent more than RELOAD_EVERY later gets
    401 with the old key and 200 with the new one: when creates in other processes race the
    rotation, and when the new file has the old one's mtime (a filesystem clock that ticked in
    seconds)."""
    store = str(tmp_path / "store")
    with open_store(store) as st:
        publish(st, "churn", "a")
    iam = tmp_path / "iam.json"
    _, old_key = Registry(iam).create("ops", "admin")
    server = api_server(store, str(iam))
    with server.client(old_key) as c:
        assert c.get("/v1/models").status_code == 200

    racing = [cli("iam", "create", "--iam", str(iam), "--key-only", f"other-{i}") for i in range(2)]
    new_key = printed_key(finish(cli("iam", "rotate", "--iam", str(iam), "ops")))
    returned = time.time()
    for proc in racing:
        finish(proc)
    assert_rotated_within_bound(server, old_key, new_key, returned)

    before = iam.stat()
    old_key, new_key = new_key, Registry(iam).rotate("ops")
    os.utime(iam, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert_rotated_within_bound(server, old_key, new_key, time.time())
