"""Processes the tests start: free loopback ports, waiting for a port, stopping a process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from predserve.demo import free_port as demo_free_port

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    return demo_free_port(0)


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early with code {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout}s")


def stop_process_group(proc: subprocess.Popen) -> None:
    """Kill a process started with ``start_new_session=True`` and everything it started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)
