"""The LMDB environment's files: who may use them, and whether they are whole.

**Modes.** The export job's account owns the store; the API runs as another account in the
store's group. So a new store gets: the directory 0750 (the group may enter and list it),
``data.mdb`` 0640 (the group reads predictions, nobody else), ``lock.mdb`` 0660 (LMDB readers
record themselves in its reader table, so the group writes it). They are set when the files
are created, whatever the umask; an operator's later changes are left alone.

**Whole files.** LMDB maps ``data.mdb`` into memory: touching a page past the end of a
truncated file kills the process with SIGBUS, which no Python code can catch. So:

- at open, before any transaction, the file must hold every page the last commit uses
  (``check_whole``);
- while open, the file must never shrink (LMDB itself never shrinks it): ``LmdbStore`` checks
  its size with one ``lseek`` before every transaction (``Shrinkage``).

A failed check, or a page LMDB finds corrupted (``DAMAGE``), raises StoreDamaged naming the
store and what to do, so the API answers 503 and a restart refuses to start.

**Full disks.** A write that fails for lack of space says so, with the path (``write_failed``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import lmdb

from predserve.errors import StoreDamaged, StoreError

DATA_FILE, LOCK_FILE = "data.mdb", "lock.mdb"
MAX_DBS = 8  # named databases: models, data, accepted, attachments, updates, and room to grow
DIR_MODE, DATA_MODE, LOCK_MODE = 0o750, 0o640, 0o660
# LMDB errors that mean the file's content is damaged (not that the store is busy or full).
# BadTxnError belongs here because every predserve transaction is fresh and used once: LMDB
# only marks one bad after a failure inside it, such as a named database whose record is garbage.
DAMAGE = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError, lmdb.PanicError, lmdb.BadTxnError)
FULL_DISK_MARGIN = 64 << 20  # bytes: an I/O error with less than this free is a full disk
REMEDY = ("Restore the store directory from a backup, or re-run `predserve export` into a new store, "
          "then restart the servers.")

# Reads every page the store uses (each B-tree page, and the last page of each value). Run in
# a child process: on a truncated file it dies of SIGBUS instead of its caller.
WALK_EVERY_PAGE = """
import sys, lmdb
env = lmdb.open(sys.argv[1], readonly=True, max_dbs=int(sys.argv[2]))
with env.begin(buffers=True) as txn:
    for name, _ in txn.cursor():
        for _, value in txn.cursor(db=env.open_db(bytes(name), txn=txn, create=False)):
            value[-1:].tobytes()
"""


def set_creation_modes(path: Path) -> None:
    """Give a store that was just created its documented modes (see the module docstring)."""
    os.chmod(path, DIR_MODE)
    os.chmod(path / DATA_FILE, DATA_MODE)
    if (path / LOCK_FILE).exists():
        os.chmod(path / LOCK_FILE, LOCK_MODE)


def damaged(path: Path, exc: lmdb.Error) -> StoreDamaged:
    return StoreDamaged(f"the LMDB store {path} is damaged: a page is corrupted or missing (LMDB said: {exc}). {REMEDY}")


def write_failed(path: Path, exc: lmdb.Error) -> StoreError:
    """The error for a failed write transaction, saying when the disk is full.

    LMDB reports a full disk as ENOSPC, or as EIO when the write was short (the filesystem
    took part of it), so an EIO with less than FULL_DISK_MARGIN free counts as a full disk.
    """
    usage = os.statvfs(path)
    free = usage.f_bavail * usage.f_frsize
    if isinstance(exc, lmdb.DiskError) or free < FULL_DISK_MARGIN:
        return StoreError(
            f"no space left on device: writing {path / DATA_FILE} failed with {free:,} bytes free on its "
            f"filesystem. Free some space or move the store, then re-run the export; the current snapshot "
            f"keeps serving."
        )
    return StoreError(f"writing {path / DATA_FILE} failed: {exc}; check the disk (the kernel log says more)")


def check_whole(path: Path, env: lmdb.Environment) -> None:
    """Refuse a data.mdb that lacks pages its last commit uses. Call before any transaction.

    LMDB may leave a few freed pages at the end unwritten, so a file shorter than the last
    commit's page count is not always damaged: then every page is read in a child process,
    and only a child that fails (SIGBUS on a missing page, or a corrupted page) condemns it.
    """
    size = (path / DATA_FILE).stat().st_size
    needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    if size >= needed:
        return
    walk = subprocess.run([sys.executable, "-c", WALK_EVERY_PAGE, str(path), str(MAX_DBS)], capture_output=True, text=True)
    if walk.returncode == -signal.SIGBUS:
        raise StoreDamaged(
            f"the LMDB store {path} is damaged: {path / DATA_FILE} is {size:,} bytes but its last commit "
            f"uses pages up to {needed:,} bytes, and some of them are missing (the file was truncated or "
            f"only partly copied). {REMEDY}"
        )
    if walk.returncode != 0:
        reason = (walk.stderr.strip().splitlines() or [f"exit code {walk.returncode}"])[-1]
        raise StoreDamaged(f"the LMDB store {path} is damaged: reading every page failed ({reason}). {REMEDY}")


class Shrinkage:
    """Notices data.mdb getting shorter while open: LMDB never shrinks it, so that is damage.

    Holds a descriptor on the file LMDB maps (its size stays that file's even if the path is
    replaced) and the largest size seen. Testing ``lseek(fd, 0, SEEK_END) < largest`` is one
    syscall: cheap enough to run before every read (see docs/benchmarks.md). ``check(remember=True)``
    also raises the mark to the current size; the store does that on each state read and write.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path / DATA_FILE, os.O_RDONLY | os.O_CLOEXEC)
        self.largest = os.lseek(self.fd, 0, os.SEEK_END)

    def check(self, remember: bool = False) -> None:
        size = os.lseek(self.fd, 0, os.SEEK_END)
        largest = self.largest
        if size < largest:
            # Threads sharing a store share this mark: another may have raised it from a look taken
            # after ours while the file grew. A file that really shrank is still short when looked at again.
            size = os.lseek(self.fd, 0, os.SEEK_END)
        if size < largest:
            raise StoreDamaged(
                f"the LMDB store {self.path} is damaged: {self.path / DATA_FILE} shrank from "
                f"{self.largest:,} to {size:,} bytes while in use (LMDB never shrinks it: it was "
                f"truncated). {REMEDY}"
            )
        if remember and size > self.largest:  # never lowered by a thread's older look
            self.largest = size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
