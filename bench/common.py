"""Helpers shared by the benchmarks: bench data, servers, the emulator, printing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def stop(proc: subprocess.Popen) -> None:
    """Terminate a server process and wait for it (kill it if it does not stop in 15 s)."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(15)


def ensure_tool(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path:
        return path
    subprocess.run(["apt-get", "install", "-y", "-q", package], check=True, stdout=subprocess.DEVNULL)
    return shutil.which(binary) or binary


def prepared_warehouse(rows: int) -> Path:
    """A warehouse with ``rows`` generated users and a trained churn model (cached in bench/out)."""
    from predserve import Warehouse
    from predserve.datagen import TRAIN_SQL, create_users

    path = OUT / f"users-{rows}.duckdb"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        with Warehouse(tmp) as wh:
            create_users(wh, rows)
            wh.sql(TRAIN_SQL.format(model="churn"))
        tmp.rename(path)
    return path


class Emulator:
    """The Bigtable emulator (gcloud's if installed, else the one `make test` builds)."""

    def __init__(self) -> None:
        sys.path.insert(0, str(ROOT))
        from tests.support.bigtable import start_emulator

        self.port = free_port()
        self.proc = start_emulator(self.port)
        self.host = f"127.0.0.1:{self.port}"
        os.environ["BIGTABLE_EMULATOR_HOST"] = self.host

    def stop(self) -> None:
        from tests.support.processes import stop_process_group

        stop_process_group(self.proc)
        os.environ.pop("BIGTABLE_EMULATOR_HOST", None)


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Unlike getrusage's ru_maxrss, which Linux
    carries over from the parent across fork+exec, VmHWM starts afresh in each new program."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"
