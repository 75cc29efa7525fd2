"""Staging directories: where the local export writes its Parquet shards before Beam reads them.

Each directory's name carries its owner, ``predserve-export-<pid>-<host>-<random>``, so an
export that was killed outright (SIGKILL, OOM killer, power loss) can be told apart from one
still running: ``predserve gc`` and the next export remove directories whose process on this
host is gone, and unnamed or foreign-host ones once they are older than ``stale_after``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

from predserve import settings
from predserve.store.snapshots import owner_is_dead

log = logging.getLogger("predserve.pipeline")
PREFIX = "predserve-export-"
# mkdtemp's random suffix is made of letters, digits and "_"; the host part never holds a "-".
_NAME = re.compile(r"^predserve-export-(\d+)-([A-Za-z0-9._]+)-[A-Za-z0-9_]+$")


def _host_part() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())


def create_staging_dir(parent: str | os.PathLike[str] | None = None) -> Path:
    """A new, empty staging directory named after this process and host."""
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-{_host_part()}-", dir=parent))


def is_abandoned(path: Path, stale_after: float, now: float | None = None) -> bool:
    """True when the directory's owner is a dead process on this host, or it is stale and unowned."""
    match = _NAME.match(path.name)
    if match and match.group(2) == _host_part():
        return owner_is_dead({"host": socket.gethostname(), "pid": int(match.group(1))})
    try:
        age = (now or time.time()) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return age > stale_after


def remove_abandoned_staging(parent: str | os.PathLike[str] | None = None, stale_after: float = settings.STALE_AFTER) -> list[Path]:
    """Delete abandoned staging directories under ``parent`` (the temp dir); returns them."""
    removed = []
    for path in sorted(Path(parent or tempfile.gettempdir()).glob(PREFIX + "*")):
        if path.is_dir() and not path.is_symlink() and is_abandoned(path, stale_after):
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                removed.append(path)
    if removed:
        log.info("removed abandoned export staging directories: %s", ", ".join(map(str, removed)))
    return removed
