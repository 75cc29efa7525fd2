"""The export's production path in tests: the BigQuery emulator (bqemulator) and a real Dask cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import ROOT, free_port, stop_process_group, wait_for_port

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


def export_from_bigquery_and_locally(emulator: BigQueryEmulator, sql: str, table: str, tmp_path: Path,
                                     key: str = "user_id") -> tuple[Any, Any, str]:
    """Run ``sql`` (which creates ``table``) in a new dataset of the BigQuery emulator and in a local
    DuckDB warehouse, export ``table`` from each into its own LMDB store under ``tmp_path``: the two
    exports' results and the dataset's name, for tests that the BigQuery source behaves like the local one."""
    import uuid

    from google.cloud import bigquery

    from predserve import Warehouse
    from predserve.pipeline import run_export

    dataset = f"{table}_{uuid.uuid4().hex[:8]}"
    client = emulator.client()
    client.create_dataset(dataset)
    client.query(sql, job_config=bigquery.QueryJobConfig(default_dataset=f"{BQ_PROJECT}.{dataset}")).result()
    client.close()
    remote = run_export(warehouse=f"bigquery://{BQ_PROJECT}/{dataset}", model="m", key=key,
                        store_url=str(tmp_path / "bq"), table=table)
    with Warehouse(tmp_path / "wh.duckdb") as w:
        w.sql(sql)
    local = run_export(warehouse=str(tmp_path / "wh.duckdb"), model="m", key=key, store_url=str(tmp_path / "local"),
                       table=table)
    return remote, local, dataset


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
    stop_process_group(proc)
    pytest.fail(f"the BigQuery emulator was not ready within 60 s: {log_path.read_text()[-2000:]}")


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
            stop_process_group(proc)


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
