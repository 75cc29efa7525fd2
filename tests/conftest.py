"""Shared fixtures: real components only (DuckDB files, LMDB environments, the Bigtable
emulator over gRPC, the API over HTTP on loopback), each started here and stopped after."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from predserve import Warehouse
from predserve.demo import free_port as demo_free_port

ROOT = Path(__file__).resolve().parent.parent
EMULATOR_PROJECT, EMULATOR_INSTANCE = "test-project", "test-instance"


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


def _gcloud_emulator() -> str | None:
    """The emulator binary of an installed gcloud SDK (what `gcloud beta emulators bigtable start` runs)."""
    gcloud = shutil.which("gcloud")
    if not gcloud:
        return None
    binary = Path(os.path.realpath(gcloud)).parent.parent / "platform/bigtable-emulator/cbtemulator"
    return str(binary) if binary.exists() else None


def _emulator_command(port: int) -> list[str]:
    """gcloud's emulator when the user has it, else the one `make test` builds from Debian's Go packages."""
    gcloud = _gcloud_emulator()
    if gcloud:
        return [gcloud, "--host=127.0.0.1", f"--port={port}"]
    built = os.environ.get("PREDSERVE_BIGTABLE_EMULATOR") or str(ROOT / ".cache/bin/bigtable-emulator")
    if Path(built).exists():
        return [built, "-host", "127.0.0.1", "-port", str(port)]
    pytest.fail("the Bigtable emulator is missing: run `make test` (it builds .cache/bin/bigtable-emulator) "
                "or install the gcloud SDK's bigtable emulator component")


def start_emulator(port: int) -> subprocess.Popen:
    """Start the emulator in its own process group (gcloud runs it as a grandchild)."""
    proc = subprocess.Popen(_emulator_command(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_for_port(port, proc)
    return proc


def stop_emulator(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


@contextmanager
def private_emulator(command: list[str] | None = None) -> Iterator[dict]:
    """A test's own emulator (which it may stop and restart), set as BIGTABLE_EMULATOR_HOST meanwhile.

    Yields {"port", "proc"}; a test that restarts the emulator stores the new process in
    "proc", and that is the one stopped at the end. ``command`` (a binary and its flags, the
    port appended last) replaces the default emulator.
    """
    port = free_port()
    previous = os.environ.get("BIGTABLE_EMULATOR_HOST")
    if command:
        proc = subprocess.Popen(command + [str(port)], stdout=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(port, proc)
    else:
        proc = start_emulator(port)
    handle = {"port": port, "proc": proc}
    try:
        os.environ["BIGTABLE_EMULATOR_HOST"] = f"127.0.0.1:{port}"
        yield handle
    finally:
        stop_emulator(handle["proc"])
        if previous is None:
            os.environ.pop("BIGTABLE_EMULATOR_HOST", None)
        else:
            os.environ["BIGTABLE_EMULATOR_HOST"] = previous


@pytest.fixture(scope="session")
def bigtable_emulator() -> Iterator[str]:
    """Start the Bigtable emulator on a free port for the whole session."""
    port = free_port()
    proc = start_emulator(port)
    try:
        host = f"127.0.0.1:{port}"
        os.environ["BIGTABLE_EMULATOR_HOST"] = host
        yield host
    finally:
        os.environ.pop("BIGTABLE_EMULATOR_HOST", None)
        stop_emulator(proc)


def bigtable_url() -> str:
    return f"bigtable://{EMULATOR_PROJECT}/{EMULATOR_INSTANCE}/t{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["lmdb", "bigtable"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store of each backend."""
    if request.param == "bigtable":
        request.getfixturevalue("bigtable_emulator")
        return bigtable_url()
    return str(tmp_path / "store.lmdb")


PUBSUB_PROJECT = "test-project"


class PubSubEmulator:
    """The gcloud SDK's Pub/Sub emulator (Java) in its own process group, PUBSUB_EMULATOR_HOST set to it."""

    def __init__(self, host: str, proc: subprocess.Popen) -> None:
        self.host, self.proc = host, proc

    def topic(self, name: str) -> str:
        """Create a topic; returns its full name."""
        from google.cloud import pubsub_v1

        return pubsub_v1.PublisherClient().create_topic(name=f"projects/{PUBSUB_PROJECT}/topics/{name}").name

    def subscription(self, topic: str, name: str, ack_deadline: int = 10) -> str:
        """Create a subscription of ``topic``; returns its full name."""
        from google.cloud import pubsub_v1

        with pubsub_v1.SubscriberClient() as subscriber:
            return subscriber.create_subscription(name=f"projects/{PUBSUB_PROJECT}/subscriptions/{name}", topic=topic,
                                                  ack_deadline_seconds=ack_deadline).name


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PubSubEmulator]:
    """One Pub/Sub emulator for the session, started with `gcloud beta emulators pubsub start` on a free port."""
    gcloud = shutil.which("gcloud")
    if not gcloud:
        pytest.fail("gcloud is missing: install the Google Cloud SDK with its pubsub-emulator component "
                    "(apt-get install google-cloud-cli google-cloud-cli-pubsub-emulator, or "
                    "`gcloud components install pubsub-emulator`); it needs Java (`make test` installs a JRE)")
    if not shutil.which("java"):
        pytest.fail("java is missing: the Pub/Sub emulator needs it (`make test` installs openjdk-17-jre-headless)")
    port = free_port()
    data = tmp_path_factory.mktemp("pubsub")
    log_path = data / "emulator.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([gcloud, "beta", "emulators", "pubsub", "start", f"--host-port=127.0.0.1:{port}",
                                 f"--project={PUBSUB_PROJECT}", f"--data-dir={data}"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, proc, timeout=90)
    except RuntimeError as exc:
        stop_emulator(proc)
        pytest.fail(f"the Pub/Sub emulator did not start ({exc}): {log_path.read_text()[-2000:]}")
    host = f"127.0.0.1:{port}"
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    try:
        yield PubSubEmulator(host, proc)
    finally:
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        stop_emulator(proc)


@pytest.fixture(scope="session")
def trained_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse file with 3,000 generated users and a trained churn model (read-only use)."""
    from predserve import Warehouse
    from predserve.datagen import TRAIN_SQL, create_users

    path = tmp_path_factory.mktemp("warehouse") / "wh.duckdb"
    with Warehouse(path) as wh:
        create_users(wh, 3000)
        wh.sql(TRAIN_SQL.format(model="churn"))
    return path


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


@pytest.fixture
def api_server() -> Iterator[Callable[..., ApiServer]]:
    """Start `predserve serve` in a child process on a free loopback port; stopped after the test."""
    started: list[ApiServer] = []

    def start(store: str, iam: str | None = None, *extra: str, env: dict[str, str] | None = None) -> ApiServer:
        server = launch_api_server(store, iam, *extra, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        stop_api_server(server)


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[Warehouse]:
    """A warehouse with `people`: 1,000 rows, so AUTO_SPLIT holds out 20%."""
    w = Warehouse(tmp_path / "wh.duckdb")
    w.sql("""
        CREATE TABLE people AS
        SELECT i AS id,
               (i * 37 % 101) / 10.0 AS x1,
               (i * 53 % 89) / 7.0 AS x2,
               CASE i % 3 WHEN 0 THEN 'red' WHEN 1 THEN 'green' ELSE 'blue' END AS color,
               3.0 * ((i * 37 % 101) / 10.0) - 2.0 * ((i * 53 % 89) / 7.0) + CASE i % 3 WHEN 0 THEN 5 ELSE 0 END
                 + ((i * 7919) % 13 - 6) / 10.0 AS y,
               CASE WHEN (i * 37 % 101) / 10.0 + ((i * 7919) % 17) / 4.0 > 7 THEN 1 ELSE 0 END AS label,
               CASE i % 3 WHEN 0 THEN 'a' WHEN 1 THEN 'b' ELSE 'c' END AS kind
        FROM range(1000) t(i)
    """)
    yield w
    w.close()


# ---- BigQuery emulator and Dask cluster (the export's production path) ------------------------
BQ_PROJECT = "test-project"


def _bqemulator_python() -> str:
    python = os.environ.get("PREDSERVE_BQEMULATOR_PYTHON") or str(ROOT / ".cache/bqemulator/bin/python")
    if not Path(python).exists():
        pytest.fail("the BigQuery emulator is missing: run `make test` (it installs bqemulator into .cache/bqemulator)")
    return python


class BigQueryEmulator:
    """bqemulator (REST + Storage Read gRPC) in its own process group, data in memory."""

    def __init__(self, rest_port: int, grpc_port: int, proc: subprocess.Popen) -> None:
        self.rest, self.grpc, self.proc = f"127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}", proc

    def client(self):  # a google.cloud.bigquery.Client, for test setup and checks
        from predserve.pipeline.bigquery import rest_client

        return rest_client(BQ_PROJECT)

    def environment(self) -> dict[str, str]:
        return {"BIGQUERY_EMULATOR_HOST": self.rest, "BIGQUERY_STORAGE_EMULATOR_HOST": self.grpc}


def start_bigquery_emulator(log_path: Path) -> BigQueryEmulator:
    rest_port, grpc_port = free_port(), free_port()
    cmd = [_bqemulator_python(), str(ROOT / "tools/bqemulator/launch.py"), "start", "--rest-port", str(rest_port),
           "--grpc-port", str(grpc_port), "--project", BQ_PROJECT]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the BigQuery emulator exited with code {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{rest_port}/readyz", timeout=1).status_code == 200:
                wait_for_port(grpc_port, proc)
                return BigQueryEmulator(rest_port, grpc_port, proc)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_emulator(proc)
    pytest.fail(f"the BigQuery emulator was not ready within 60 s: {log_path.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigQueryEmulator]:
    """One BigQuery emulator for the session; BIGQUERY_EMULATOR_HOST and BIGQUERY_STORAGE_EMULATOR_HOST point at it."""
    emulator = start_bigquery_emulator(tmp_path_factory.mktemp("bqemulator") / "emulator.log")
    os.environ.update(emulator.environment())
    try:
        yield emulator
    finally:
        for name in emulator.environment():
            os.environ.pop(name, None)
        stop_emulator(emulator.proc)


class DaskCluster:
    """A `dask scheduler` and its `dask worker` processes on loopback."""

    def __init__(self, address: str, procs: list[subprocess.Popen]) -> None:
        self.address, self.procs = address, procs

    def beam_args(self) -> list[str]:
        return ["--runner", "dask", "--dask_client_address", self.address]

    def tasks_run_per_worker(self) -> dict[str, int]:
        """How many tasks each worker has executed so far, by worker name."""
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            counts = client.run(lambda dask_worker: (dask_worker.name, dask_worker.state.executed_count))
        return dict(counts.values())

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_emulator(proc)


def start_dask_cluster(logs: Path, workers: int = 2) -> DaskCluster:
    """A real scheduler and ``workers`` single-threaded worker processes (named worker-1, ...)."""
    from distributed import Client

    port = free_port()
    cluster = DaskCluster(f"tcp://127.0.0.1:{port}", [])

    # Workers get the BigQuery emulator's address from the driver, with their work: keep it out
    # of their environment so the tests show that.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIGQUERY_")}

    def spawn(name: str, args: list[str]) -> subprocess.Popen:
        with open(logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=logs, env=env)
        cluster.procs.append(proc)
        return proc

    try:
        wait_for_port(port, spawn("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]))
        for i in range(1, workers + 1):
            spawn(f"worker-{i}", ["worker", cluster.address, "--name", f"worker-{i}", "--nworkers", "1", "--nthreads", "1",
                                  "--host", "127.0.0.1", "--no-dashboard", "--memory-limit", "4GiB"])
        with Client(cluster.address, timeout=30) as client:
            client.wait_for_workers(workers, timeout=60)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def dask_cluster(bigtable_emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """A real `dask scheduler` and two `dask worker` processes for the session.

    Started after the Bigtable emulator, so the workers inherit BIGTABLE_EMULATOR_HOST as any
    process writing to that store must.
    """
    cluster = start_dask_cluster(tmp_path_factory.mktemp("dask"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def anyio_backend() -> str:
    """The in-process async tests (pytest's anyio plugin) run on asyncio, as the server does."""
    return "asyncio"
