"""`predserve serve` as a real server on loopback: start-up, configuration, workers, signals,
slow and oversized clients, and the Bigtable emulator. Each test bounds its own time."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

import pytest

from predserve.datagen import PREDICT_SQL
from predserve.pipeline import run_export
from tests.support.processes import free_port
from tests.support.servers import ApiServer, launch_api_server, stop_api_server
from tests.support.serving import make_keys
from tests.support.snapshots import publish_rows

ONE = "/v1/models/churn/predictions/{}"
MANY = "/v1/models/churn/predictions:batchGet"


@pytest.fixture
def store(tmp_path: Path) -> str:
    path = str(tmp_path / "store.lmdb")
    publish_rows(path, "churn", {str(i): {"p": i} for i in range(1, 200)})
    return path


def workers_of(server: ApiServer) -> set[int]:
    """The pids of the server's worker processes (its children, from /proc)."""
    tasks = Path(f"/proc/{server.proc.pid}/task")
    return {int(pid) for task in tasks.iterdir() for pid in (task / "children").read_text().split()}


def stderr_of(server: ApiServer) -> str:
    """Stop the server and return what it logged."""
    server.proc.send_signal(signal.SIGTERM)
    return server.proc.communicate(timeout=15)[1].decode()


# ---- start-up and configuration ----------------------------------------------------------------
def test_serving_imports_nothing_from_the_warehouse_or_beam() -> None:
    # The API reads what a snapshot carries through the store's records (predserve.store.reports):
    # no pipeline module at all, and the CLI's start-up loads none either.
    code = ("import sys, predserve.cli, predserve.serving.server, predserve.client\n"
            "heavy = ('sklearn', 'xgboost', 'apache_beam', 'duckdb', 'pyarrow', 'numpy', 'sqlglot',\n"
            "         'predserve.warehouse', 'predserve.pipeline')\n"
            "print([m for m in sys.modules if m.startswith(heavy)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert_serve_requirements_cover_the_serving_imports()
    lazy = subprocess.run([sys.executable, "-c", "from predserve import Warehouse; print(Warehouse.__name__)"],
                          capture_output=True, text=True, check=True).stdout
    assert lazy.strip() == "Warehouse"


# Imported when installed but needed by nobody: opentelemetry-sdk tries psutil; setuptools'
# _distutils_hack runs from a .pth file at every start (the serve image has neither).
OPTIONAL_IMPORTS = {"psutil", "setuptools"}
SERVE_REQUIREMENTS = Path(__file__).resolve().parent.parent / "deploy/requirements/serve.txt"


def assert_serve_requirements_cover_the_serving_imports() -> None:
    """The serve image installs deploy/requirements/serve.txt and predserve with --no-deps: each
    line must be one of pyproject's dependencies, and every distribution whose files the serving
    chain (both store backends included) imports must be one of those lines or a dependency of
    theirs; each line must also be needed, so the image holds nothing the API does not import."""
    import tomllib

    pyproject = tomllib.loads((SERVE_REQUIREMENTS.parent.parent.parent / "pyproject.toml").read_text())
    lines = [line.strip() for line in SERVE_REQUIREMENTS.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert sorted(set(lines) - set(pyproject["project"]["dependencies"])) == []
    code = ("import json, sys, predserve.cli, predserve.serving.server, predserve.store.lmdb, predserve.store.bigtable\n"
            "print(json.dumps(sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None)})))")
    files = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    owners = owning_distributions(files)
    allowed = requirement_closure(lines)
    assert sorted(owners - allowed - {"predserve"} - OPTIONAL_IMPORTS) == []  # nothing the image lacks
    direct = {canonical(line) for line in lines}
    needed = {d for d in direct if owners & requirement_closure([d])}
    assert sorted(direct - needed) == []  # and the image installs nothing the serving chain does not import


def canonical(requirement: str) -> str:
    import re

    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-").replace(".", "-")


def owning_distributions(files: list[str]) -> set[str]:
    """The installed distributions whose RECORD lists one of ``files``."""
    import importlib.metadata as md

    wanted = {os.path.realpath(f) for f in files}
    owners = set()
    for dist in md.distributions():
        for entry in dist.files or ():
            if os.path.realpath(dist.locate_file(entry)) in wanted:
                owners.add(canonical(dist.metadata["Name"]))
                break
    return owners


def requirement_closure(requirements: list[str]) -> set[str]:
    """The requirements and, recursively, their installed dependencies, with the extras they ask for."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    seen: set[tuple[str, str]] = set()  # (distribution, extra or "")
    todo = [(canonical(r.name), extra) for r in map(Requirement, requirements) for extra in ("", *r.extras)]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        for req in map(Requirement, md.requires(name) or []):
            if req.marker is None and not extra or req.marker is not None and req.marker.evaluate({"extra": extra}):
                todo += [(canonical(req.name), e) for e in ("", *req.extras)]
    return {name for name, _ in seen}


def test_options_come_from_the_environment(store: str, api_server) -> None:
    server = api_server(store, None, env={"PREDSERVE_NO_AUTH": "1", "PREDSERVE_MAX_BATCH": "2"})
    with server.client() as client:
        assert client.get(ONE.format(1)).status_code == 200
        too_many = client.post(MANY, json={"ids": ["1", "2", "3"]})
    assert too_many.status_code == 413 and "at most 2" in too_many.json()["error"]["message"]


def test_missing_iam_file_and_no_auth_warn_at_start_up(store: str, tmp_path: Path, api_server) -> None:
    missing = api_server(store, str(tmp_path / "nowhere.json"))
    with missing.client() as client:
        assert client.get(ONE.format(1)).status_code == 401
    lines = [json.loads(line) for line in stderr_of(missing).splitlines() if line.startswith("{")]
    warnings = [line for line in lines if line["level"] == "WARNING"]
    assert warnings and "nowhere.json does not exist: every request will get 401" in warnings[0]["message"]
    open_server = api_server(store, None, "--no-auth")
    assert "authentication is OFF" in stderr_of(open_server)


def serve_fails(*args: str) -> str:
    """`predserve serve ARGS`, which must exit 1 at once: what it printed."""
    result = subprocess.run([sys.executable, "-m", "predserve.cli", "serve", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def test_a_missing_store_stops_serve_with_its_reason(tmp_path: Path) -> None:
    assert "no store at" in serve_fails("--store", str(tmp_path / "nothing"), "--port", str(free_port()))


def test_a_port_in_use_stops_a_second_server_but_a_restart_works(store: str) -> None:
    first = launch_api_server(store, None, "--no-auth", "--header-timeout", "0.2")
    try:
        assert "is another server running there?" in serve_fails("--store", store, "--no-auth", "--port", str(first.port))
        with first.client() as client:
            assert client.get(ONE.format(1)).status_code == 200
        idle = open_socket(first)
        assert read_until_closed(idle)[0] == b""  # the server closed it: TIME_WAIT is on the server's side
        idle.close()
    finally:
        stop_api_server(first)  # its closed connections linger in TIME_WAIT: they must not block a restart
    again = launch_api_server(store, None, "--no-auth", port=first.port)
    try:
        with again.client() as client:
            assert client.get(ONE.format(1)).status_code == 200
    finally:
        stop_api_server(again)


# ---- workers and signals ---------------------------------------------------------------------
def test_two_workers_serve_and_a_killed_worker_is_replaced(store: str, api_server) -> None:
    server = api_server(store, None, "--no-auth", "--workers", "2")
    with server.client() as client:
        assert {client.get(ONE.format(i)).status_code for i in range(1, 60)} == {200}
    workers = workers_of(server)
    assert len(workers) == 2
    killed = min(workers)
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (killed in workers_of(server) or len(workers_of(server)) < 2):
        time.sleep(0.1)
    assert killed not in workers_of(server) and len(workers_of(server)) == 2, "the killed worker was not replaced"
    with server.client() as client:
        assert {client.get(ONE.format(i)).status_code for i in range(1, 60)} == {200}


def test_the_console_traffic_sums_every_workers_samples(store: str, api_server) -> None:
    """Two workers each count the requests they answer; the console's traffic route, whichever worker
    answers it, includes the other's samples within a second of the first ask."""
    server = api_server(store, None, "--no-auth", "--workers", "2")
    with httpx.Client(base_url=server.url, limits=httpx.Limits(max_keepalive_connections=0)) as one_per_connection:
        for i in range(1, 200):  # a connection per request: the kernel spreads them over both workers
            assert one_per_connection.get(ONE.format(i)).status_code == 200
    def predictions(answer: dict) -> int:
        return next(s for s in answer["series"] if s["route"] == "*")["last_minute"]["requests"]

    deadline = time.monotonic() + 15  # the other worker writes its seconds once complete: a second or two
    answers = []
    with server.client() as client:
        while True:
            answers.append(client.get("/v1/console/traffic?seconds=60").json())
            if predictions(answers[-1]) == 199 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    first, last = answers[0], answers[-1]
    assert first["workers"]["reporting"] == [first["workers"]["answered_by"]]  # the first ask: only its own samples
    assert 0 < predictions(first) < 199  # so both workers served some
    assert last["workers"]["configured"] == 2 and set(last["workers"]["reporting"]) == workers_of(server)
    assert predictions(last) == 199


def test_sigterm_stops_gracefully(store: str, api_server) -> None:
    server = api_server(store, None, "--no-auth")
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0
    assert "shutdown completed" in server.proc.stderr.read().decode()


# ---- slow and oversized clients ---------------------------------------------------------------
def open_socket(server: ApiServer, payload: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    if payload:
        sock.sendall(payload)
    return sock


def read_until_closed(sock: socket.socket, limit: float = 10.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    sock.settimeout(limit)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data, time.monotonic() - started


def test_slow_headers_and_idle_connections_are_closed(store: str, api_server) -> None:
    server = api_server(store, None, "--no-auth", "--header-timeout", "0.5")
    silent = open_socket(server)
    partial = open_socket(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    idle = open_socket(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    for sock, expected in ((silent, b""), (partial, b""), (idle, b"HTTP/1.1 200")):
        data, seconds = read_until_closed(sock)
        assert data.startswith(expected) and seconds < 3, (data[:40], seconds)
        sock.close()


def test_a_body_that_never_arrives_gets_408_and_the_connection_closes(store: str, api_server) -> None:
    server = api_server(store, None, "--no-auth", "--body-timeout", "0.5")
    sock = open_socket(server, b"POST " + MANY.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ids\"")
    data, seconds = read_until_closed(sock)
    sock.close()
    assert data.startswith(b"HTTP/1.1 408") and b"did not arrive within 0.5s" in data
    assert seconds < 5


def test_idle_connections_do_not_starve_real_clients(store: str, api_server) -> None:
    server = api_server(store, None, "--no-auth", "--header-timeout", "2")
    hogs = [open_socket(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n") for _ in range(300)]
    try:
        with server.client() as client:
            started = time.monotonic()
            statuses = [client.get(ONE.format(i)).status_code for i in range(1, 51)]
            elapsed = time.monotonic() - started
        assert statuses == [200] * 50 and elapsed < 5, elapsed
        closed = sum(1 for sock in hogs if read_until_closed(sock, 10)[0] == b"")
        assert closed == 300
    finally:
        for sock in hogs:
            sock.close()


def test_oversized_bodies_are_refused_before_they_are_sent(store: str, tmp_path: Path, api_server) -> None:
    iam = str(tmp_path / "iam.json")
    keys = make_keys(iam)
    server = api_server(store, iam)
    reader = f"Authorization: Bearer {keys['reader']}\r\n".encode()
    head = b"Host: x\r\nContent-Length: 104857600\r\n\r\n"  # 100 MB announced, none sent
    unauthenticated = open_socket(server, b"POST /v1/serviceAccounts HTTP/1.1\r\n" + head)
    declared = open_socket(server, b"POST " + MANY.encode() + b" HTTP/1.1\r\n" + reader + head)
    for sock, status in ((unauthenticated, b"401"), (declared, b"413")):
        data, seconds = read_until_closed(sock)
        sock.close()
        assert data.startswith(b"HTTP/1.1 " + status) and seconds < 3, data[:80]


def test_a_chunked_body_is_read_only_up_to_the_limit(store: str, api_server) -> None:
    server = api_server(store, None, "--no-auth", "--max-body", "65536")
    sock = open_socket(server, b"POST " + MANY.encode() + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (16384, b"x" * 16384)
    sent = 0
    try:
        while sent < 64 << 20:  # give up at 64 MiB: the server must have answered long before
            sock.sendall(chunk)
            sent += 16384
    except (BrokenPipeError, ConnectionResetError):
        pass
    data, _ = read_until_closed(sock)
    sock.close()
    assert data.startswith(b"HTTP/1.1 413"), (sent, data[:80])
    assert sent < 16 << 20


def test_connections_over_the_limit_wait_for_a_free_slot(store: str, api_server) -> None:
    """--max-connections counts open connections: one more waits until the header timeout frees a slot."""
    server = api_server(store, None, "--no-auth", "--max-connections", "4", "--header-timeout", "1")
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    idle = [open_socket(server, request) for _ in range(4)]
    try:
        for sock in idle:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")  # now idle, holding a slot each
        started = time.monotonic()
        with server.client() as client:
            assert client.get(ONE.format(1)).status_code == 200
        waited = time.monotonic() - started
        assert 0.5 < waited < 5, waited
    finally:
        for sock in idle:
            sock.close()


# ---- the OpenAPI document against the real server ---------------------------------------------
def test_schemathesis_finds_no_server_errors(trained_warehouse: Path, tmp_path: Path, api_server) -> None:
    store, iam = str(tmp_path / "store.lmdb"), str(tmp_path / "iam.json")
    run_export(warehouse=str(trained_warehouse), model="churn", key="user_id", store_url=store,
               query=PREDICT_SQL.format(model="churn"))
    keys = make_keys(iam)
    server = api_server(store, iam)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run", f"{server.url}/openapi.json",
         "--checks", "not_a_server_error", "--max-examples", "40",
         "--header", f"Authorization: Bearer {keys['admin']}", "--phases", "examples,coverage,fuzzing"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


# ---- Bigtable ------------------------------------------------------------------------------
def until_served(client: httpx.Client, path: str, seconds: float = 15) -> httpx.Response:
    """The first 200 answer to ``path`` within ``seconds`` (else the last answer)."""
    deadline = time.monotonic() + seconds
    while True:
        response = client.get(path)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_serving_from_bigtable_and_surviving_an_outage(trained_warehouse: Path, api_server) -> None:
    """Stop the emulator: 503 within the deadline; start it again and re-export: served again."""
    from tests.support.bigtable import bigtable_url, private_emulator, start_emulator
    from tests.support.processes import stop_process_group

    def export(url: str) -> None:
        run_export(warehouse=str(trained_warehouse), model="churn", key="user_id", store_url=url,
                   query=PREDICT_SQL.format(model="churn"))

    with private_emulator() as emulator:
        url = bigtable_url()
        export(url)
        server = api_server(url, None, "--no-auth", "--read-timeout", "0.3")
        with server.client() as client:
            ok = until_served(client, ONE.format(7))  # the first read also opens the gRPC channel
            assert ok.status_code == 200 and ok.json()["id"] == "7"
            batch = client.post(MANY, json={"ids": ["7", "x", "8"]}).json()
            assert [r["id"] for r in batch["results"]] == ["7", "x", "8"]
            stop_process_group(emulator["proc"])
            time.sleep(1.1)  # let the cached pointer expire
            started = time.perf_counter()
            down = client.get(ONE.format(7))
            assert down.status_code == 503, down.text
            assert time.perf_counter() - started < 2.0
            assert "unavailable" in down.json()["error"]["message"] and url in down.json()["error"]["message"]
            assert client.get("/readyz").status_code == 503
            emulator["proc"] = start_emulator(emulator["port"])
            export(url)
            back = until_served(client, ONE.format(7))
            assert back.status_code == 200, back.text
