"""The shared fixtures: real components only (DuckDB files, LMDB environments, the Bigtable,
BigQuery and Pub/Sub emulators, a Dask cluster, the API over HTTP on loopback), each started
here and stopped after. What they are built from lives in tests/support/, which tests import;
no test imports this module."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import pytest

from predserve import Warehouse
from tests.support.bigtable import bigtable_url, start_emulator
from tests.support.processes import free_port, stop_process_group
from tests.support.production import BigQueryEmulator, DaskCluster, start_bigquery_emulator, start_dask_cluster
from tests.support.pubsub import PubSubEmulator, start_pubsub_emulator
from tests.support.servers import ApiServer, launch_api_server, stop_api_server


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
        stop_process_group(proc)


@pytest.fixture(params=["lmdb", "bigtable"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store of each backend."""
    if request.param == "bigtable":
        request.getfixturevalue("bigtable_emulator")
        return bigtable_url()
    return str(tmp_path / "store.lmdb")


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PubSubEmulator]:
    """One Pub/Sub emulator for the session (`gcloud beta emulators pubsub start` on a free port)."""
    emulator = start_pubsub_emulator(tmp_path_factory.mktemp("pubsub"))
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
    try:
        yield emulator
    finally:
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        stop_process_group(emulator.proc)


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
        stop_process_group(emulator.proc)


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
