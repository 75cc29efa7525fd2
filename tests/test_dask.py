"""The export on a distributed engine: Beam's DaskRunner against a real `dask scheduler` and two
`dask worker` processes (conftest's ``dask_cluster``, one per session), into LMDB and into the
Bigtable emulator. Every stored body must be byte-identical to the DirectRunner's."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import lmdb
import pytest

from predserve import Warehouse
from predserve.datagen import PREDICT_SQL, TRAIN_SQL, create_users
from predserve.errors import ExportError
from predserve.pipeline import run_export
from predserve.store import open_store
from predserve.store.lmdb import _open_db

from tests.support.bigtable import bigtable_url
from tests.support.production import DaskCluster

ROWS = 100_000
QUERY = PREDICT_SQL.format(model="churn")


@pytest.fixture(scope="module")
def warehouse_100k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dask-warehouse") / "wh.duckdb"
    with Warehouse(path) as wh:
        create_users(wh, ROWS)
        wh.sql(TRAIN_SQL.format(model="churn"))
    return path


def content_hash(store_url: str, snapshot: int) -> str:
    """SHA-256 over every (id, body) of a snapshot in id order: equal hashes, equal served bodies."""
    with open_store(store_url, readonly=True) as store:
        rows = sorted(store.items("churn", snapshot))
    digest = hashlib.sha256()
    for key, body in rows:
        digest.update(len(key).to_bytes(4, "big") + key + len(body).to_bytes(4, "big") + body)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def direct_runner_hash(warehouse_100k: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    url = str(tmp_path_factory.mktemp("direct") / "store")
    summary = run_export(warehouse=str(warehouse_100k), model="churn", key="user_id", store_url=url, query=QUERY)
    assert summary.snapshot == 1 and summary.rows == ROWS
    return content_hash(url, summary.snapshot)


@pytest.mark.parametrize("backend", ["lmdb", "bigtable"])
def test_dask_export_is_identical_to_the_direct_runners(backend: str, dask_cluster: DaskCluster, warehouse_100k: Path,
                                                         direct_runner_hash: str, tmp_path: Path) -> None:
    url = bigtable_url() if backend == "bigtable" else str(tmp_path / "store")
    before = dask_cluster.tasks_run_per_worker()
    summary = run_export(warehouse=str(warehouse_100k), model="churn", key="user_id", store_url=url, query=QUERY,
                         beam_args=dask_cluster.beam_args())
    after = dask_cluster.tasks_run_per_worker()
    assert summary.published and summary.rows == ROWS  # counted by the store: DaskRunner has no metrics
    assert summary.snapshot == 1  # so the bodies (which name their snapshot) can be equal
    assert content_hash(url, summary.snapshot) == direct_runner_hash
    assert all(after[name] > before[name] for name in ("worker-1", "worker-2")), (before, after)


def test_the_cli_runs_on_dask(dask_cluster: DaskCluster, warehouse_100k: Path, tmp_path: Path) -> None:
    """The documented interface: predserve export ... --runner dask --dask_client_address tcp://HOST:PORT."""
    url = str(tmp_path / "store")
    cmd = [sys.executable, "-m", "predserve.cli", "export", "-w", str(warehouse_100k), "--model", "churn", "--key", "user_id",
           "--query", QUERY + " WHERE user_id <= 2000", "--store", url, "--json",
           "--runner", "DaskRunner", "--dask_client_address", dask_cluster.address]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ}, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["published"] and summary["rows"] == 2000
    with open_store(url, readonly=True) as store:
        assert json.loads(store.get("churn", summary["snapshot"], b"1999"))["id"] == "1999"


def test_a_worker_failure_fails_the_export_and_keeps_serving(dask_cluster: DaskCluster, warehouse_100k: Path, tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    first = run_export(warehouse=str(warehouse_100k), model="churn", key="user_id", store_url=url,
                       query=QUERY + " WHERE user_id <= 1000", beam_args=dask_cluster.beam_args())
    long_id = f"SELECT CASE WHEN user_id = 1500 THEN repeat('k', 600) ELSE CAST(user_id AS VARCHAR) END AS user_id, predicted_churned FROM ({QUERY})"
    with pytest.raises(ExportError, match="longer than the maximum of 512 bytes"):
        run_export(warehouse=str(warehouse_100k), model="churn", key="user_id", store_url=url, query=long_id + " WHERE user_id <= 2000",
                   beam_args=dask_cluster.beam_args())
    with open_store(url, readonly=True) as store:
        assert store.current("churn").id == first.snapshot
        assert sorted(store.state("churn").snapshots) == [first.snapshot]


def test_opening_a_database_after_another_process_grew_the_map(tmp_path: Path) -> None:
    """What a Dask worker hit: opening the store while another worker grows the LMDB map."""
    path = tmp_path / "store"
    with open_store(str(path)) as store:
        store.create_snapshot("m")
    env = lmdb.open(str(path), map_size=1 << 20, max_dbs=4)  # a worker's view, taken before the growth
    grow = ("import sys; from predserve.store import open_store\n"
            "with open_store(sys.argv[1]) as s:\n"
            "    w = s.writer('m', 1); w.write_columns([b'%d' % i for i in range(3000)], [b'x' * 1000] * 3000); w.close()\n")
    subprocess.run([sys.executable, "-c", grow, str(path)], check=True, timeout=120)
    with pytest.raises(lmdb.MapResizedError):
        env.open_db(b"data")
    assert _open_db(env, b"data") is not None  # adopts the grown map size, then opens
    env.close()


def test_bigquery_read_streams_are_spread_over_dask_workers(bigquery_emulator, dask_cluster: DaskCluster, tmp_path: Path) -> None:
    """The BigQuery source's work items (Storage Read streams) run on the workers too; the
    workers get the emulator's address from the driver, not from their own environment."""
    from google.cloud import bigquery

    from tests.support.production import BQ_PROJECT

    dataset = f"dask_{os.getpid()}"
    client = bigquery_emulator.client()
    client.create_dataset(dataset)
    client.query("CREATE TABLE scores AS SELECT x AS user_id, x / 4 AS score, [x, x + 1] AS pair "
                 "FROM UNNEST(GENERATE_ARRAY(1, 120000)) AS x",
                 job_config=bigquery.QueryJobConfig(default_dataset=f"{BQ_PROJECT}.{dataset}")).result()
    client.close()
    hashes = []
    before = dask_cluster.tasks_run_per_worker()
    for name, beam_args in (("direct", []), ("dask", dask_cluster.beam_args())):
        url = str(tmp_path / name)
        summary = run_export(warehouse=f"bigquery://{BQ_PROJECT}/{dataset}", model="churn", key="user_id", store_url=url,
                             table="scores", beam_args=beam_args)
        assert summary.rows == 120_000 and summary.snapshot == 1
        hashes.append(content_hash(url, summary.snapshot))
    after = dask_cluster.tasks_run_per_worker()
    assert hashes[0] == hashes[1]
    assert all(after[name] > before[name] for name in ("worker-1", "worker-2")), (before, after)
