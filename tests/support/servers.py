"""`predserve serve` in a child process on a free loopback port, as a user starts it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from tests.support.processes import free_port


class ApiServer:
    def __init__(self, url: str, proc: subprocess.Popen) -> None:
        self.url, self.proc = url, proc
        self.port = int(url.rsplit(":", 1)[1])

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


def launch_api_server(store: str, iam: str | None = None, *extra: str, env: dict[str, str] | None = None,
                      wait: bool = True, port: int | None = None) -> ApiServer:
    """Start `predserve serve` in a child process on a free loopback port (the caller stops it).

    ``env``: more environment variables (its options can come from PREDSERVE_*); ``wait``: return
    once /healthz answers, else at once; ``port``: this port instead of a free one."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "predserve.cli", "serve", "--store", store, "--port", str(port), *extra]
    if iam:
        cmd += ["--iam", iam]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    server = ApiServer(f"http://127.0.0.1:{port}", proc)
    deadline = time.monotonic() + 30
    while wait:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=0.5).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
        if time.monotonic() > deadline:
            stop_api_server(server)
            raise RuntimeError("server did not start")
    return server


def stop_api_server(server: ApiServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(10)
