"""The BigQuery source against a real BigQuery emulator (bqemulator: REST + Storage Read gRPC).

One emulator serves the whole session (conftest's ``bigquery_emulator``); each test module
gets its own dataset. ML.PREDICT is not implemented by the emulator, so these tests export
from tables and plain queries: the ML part is the local warehouse's, tested elsewhere.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from predserve.errors import ExportError
from predserve.pipeline import GatePolicy, GateRefused, run_export
from predserve.pipeline.bigquery import TEMP_TABLE_PREFIX
from predserve.store import open_store

from tests.support.bigtable import bigtable_url
from tests.support.production import BQ_PROJECT, BigQueryEmulator

ROWS = 600
# Every type the issue names, with NULLs: NUMERIC, BIGNUMERIC, TIMESTAMP, DATE, ARRAY, STRUCT,
# and a FLOAT64 that is sometimes NaN (which JSON cannot carry: it is served as null).
USERS_SQL = f"""
CREATE TABLE users AS
SELECT
  x AS user_id,
  IF(MOD(x, 7) = 0, NULL, IF(MOD(x, 11) = 0, IEEE_DIVIDE(0, 0), x / 8)) AS score,
  CAST(x AS NUMERIC) / 3 AS amount,
  CAST(x AS BIGNUMERIC) / 7 AS big_amount,
  TIMESTAMP_ADD(TIMESTAMP '2024-05-01 12:00:00+00', INTERVAL x SECOND) AS scored_at,
  IF(MOD(x, 5) = 0, NULL, DATE_ADD(DATE '2024-01-01', INTERVAL x DAY)) AS renews_on,
  [x, x * 2] AS buckets,
  STRUCT(IF(MOD(x, 2) = 0, 'pro', 'free') AS plan, MOD(x, 3) AS level) AS info
FROM UNNEST(GENERATE_ARRAY(1, {ROWS})) AS x
"""
PLANS_SQL = """
CREATE TABLE plans AS
SELECT plan, price FROM UNNEST([STRUCT('pro' AS plan, 29.5 AS price), STRUCT('free' AS plan, 0.0 AS price)])
"""


@pytest.fixture(scope="module")
def dataset(bigquery_emulator: BigQueryEmulator) -> str:
    """A dataset with `users` (every type) and `plans` (for joins); returns its name."""
    from google.cloud import bigquery

    name = f"ds_{uuid.uuid4().hex[:8]}"
    client = bigquery_emulator.client()
    client.create_dataset(name)
    config = bigquery.QueryJobConfig(default_dataset=f"{BQ_PROJECT}.{name}")
    for sql in (USERS_SQL, PLANS_SQL):
        client.query(sql, job_config=config).result()
    client.close()
    return name


def warehouse(dataset: str) -> str:
    return f"bigquery://{BQ_PROJECT}/{dataset}"


def export(dataset: str, store: str, **kwargs: Any):
    return run_export(warehouse=warehouse(dataset), model="users", key="user_id", store_url=store, **kwargs)


def as_json(value: Any) -> Any:
    """A value from the BigQuery REST API as the served body must show it (built independently of render.py)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value


def expected_bodies(emulator: BigQueryEmulator, dataset: str, sql: str, snapshot: int) -> dict[str, dict]:
    """Each id's body, from the rows the REST API returns for ``sql``."""
    from google.cloud import bigquery

    client = emulator.client()
    rows = client.query(sql, job_config=bigquery.QueryJobConfig(default_dataset=f"{BQ_PROJECT}.{dataset}")).result()
    out = {}
    for row in rows:
        values = dict(row.items())
        key = str(values.pop("user_id"))
        out[key] = {"model": "users", "id": key, "snapshot": snapshot, "prediction": {k: as_json(v) for k, v in values.items()}}
    client.close()
    return out


def stored_bodies(store_url: str, model: str, snapshot: int) -> dict[str, dict]:
    with open_store(store_url, readonly=True) as store:
        return {k.decode(): json.loads(v) for k, v in store.items(model, snapshot)}


def temporary_tables(emulator: BigQueryEmulator, dataset: str) -> list[str]:
    client = emulator.client()
    try:
        return [t.table_id for t in client.list_tables(f"{BQ_PROJECT}.{dataset}") if t.table_id.startswith(TEMP_TABLE_PREFIX)]
    finally:
        client.close()


def test_a_table_export_serves_every_row_with_every_type(bigquery_emulator: BigQueryEmulator, dataset: str, tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    summary = export(dataset, url, table="users")  # unqualified: resolved against the URL's dataset
    assert summary.published and summary.rows == ROWS
    stored = stored_bodies(url, "users", summary.snapshot)
    assert stored == expected_bodies(bigquery_emulator, dataset, "SELECT * FROM users", summary.snapshot)
    # spot-check the rendering the comparison relies on
    assert stored["11"]["prediction"]["score"] is None  # NaN
    assert stored["5"]["prediction"]["renews_on"] is None and stored["6"]["prediction"]["renews_on"] == "2024-01-07"
    assert stored["5"]["prediction"]["scored_at"] == "2024-05-01T12:00:05.000000Z"
    assert stored["5"]["prediction"]["buckets"] == [5, 10] and stored["5"]["prediction"]["info"] == {"plan": "free", "level": 2}
    with open_store(url, readonly=True) as store:
        schema = dict(store.current("users").metadata["schema"])
    assert schema["amount"].startswith("decimal128(38, 9)") and schema["scored_at"] == "timestamp[us, tz=UTC]"
    assert schema["info"].startswith("struct<") and schema["buckets"].startswith("list<")


def test_a_query_export_with_a_join(bigquery_emulator: BigQueryEmulator, dataset: str, tmp_path: Path) -> None:
    sql = ("SELECT u.user_id, u.info.plan AS plan, p.price, u.amount * 2 AS doubled FROM users u "
           "JOIN plans p ON u.info.plan = p.plan WHERE u.user_id <= 100")
    url = str(tmp_path / "store")
    summary = export(dataset, url, query=sql)
    assert summary.rows == 100
    expected = expected_bodies(bigquery_emulator, dataset, sql, summary.snapshot)
    assert stored_bodies(url, "users", summary.snapshot) == expected
    assert expected["2"]["prediction"]["price"] == 29.5


@pytest.mark.parametrize("name", ["{dataset}.users", f"{BQ_PROJECT}.{{dataset}}.users", "`{dataset}.users`"])
def test_qualified_and_quoted_table_names(dataset: str, tmp_path: Path, name: str) -> None:
    """A project id may hold '-': the table path is quoted whole, as BigQuery requires."""
    summary = export(dataset, str(tmp_path / "store"), table=name.format(dataset=dataset))
    assert summary.rows == ROWS


def test_the_query_runs_once_into_a_temporary_table_that_is_dropped(bigquery_emulator: BigQueryEmulator, dataset: str, tmp_path: Path) -> None:
    marker = 987654321  # a literal only this test's query holds, to find its jobs in the emulator's job list
    export(dataset, str(tmp_path / "store"), query=f"SELECT user_id, score FROM users WHERE user_id <> {marker}")
    client = bigquery_emulator.client()
    jobs = [j.query for j in client.list_jobs() if str(marker) in (getattr(j, "query", "") or "")]
    client.close()
    assert len(jobs) == 1, jobs
    assert jobs[0].startswith(f"CREATE TABLE `{BQ_PROJECT}.{dataset}.{TEMP_TABLE_PREFIX}")
    assert "expiration_timestamp" in jobs[0]
    assert temporary_tables(bigquery_emulator, dataset) == []


def test_failures_drop_the_temporary_table_and_keep_serving(bigquery_emulator: BigQueryEmulator, dataset: str, tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    first = export(dataset, url, query="SELECT user_id, CAST(user_id AS STRING) AS label FROM users")
    # A failure mid-read: one row's id is over the store's 512-byte limit, so the pipeline fails
    # after other rows were written into the new snapshot.
    bad = f"SELECT IF(user_id = {ROWS - 1}, REPEAT('k', 600), CAST(user_id AS STRING)) AS user_id, 'new' AS label FROM users"
    with pytest.raises(ExportError, match="longer than the maximum of 512 bytes"):
        export(dataset, url, query=bad)
    with pytest.raises(ExportError, match=r"BigQuery refused the export query: .*nope"):
        export(dataset, url, query="SELECT * FROM nope")
    with pytest.raises(ExportError, match="key column 'user_id' is not among the query's columns: plan, price"):
        export(dataset, url, table="plans")
    assert temporary_tables(bigquery_emulator, dataset) == []
    with open_store(url, readonly=True) as store:
        assert store.current("users").id == first.snapshot
        assert sorted(store.state("users").snapshots) == [first.snapshot]  # the failed snapshot was discarded
        assert json.loads(store.get("users", first.snapshot, b"7"))["prediction"] == {"label": "7"}


def test_gates_run_on_bigquery_rows(dataset: str, tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    export(dataset, url, query="SELECT user_id, amount, info FROM users")
    with pytest.raises(GateRefused, match="prediction_columns: changed"):
        export(dataset, url, query="SELECT user_id, amount FROM users")
    duplicated = "SELECT user_id, amount, info FROM users UNION ALL SELECT user_id, amount, info FROM users WHERE user_id IN (3, 4)"
    with pytest.raises(GateRefused, match=r"2 duplicate keys \(e\.g\. 3, 4\)"):
        export(dataset, url, query=duplicated)
    nulls = "SELECT IF(MOD(user_id, 100) = 0, NULL, user_id) AS user_id, amount, info FROM users"
    with pytest.raises(GateRefused, match="6 rows have a NULL key"):
        export(dataset, url, query=nulls)
    assert export(dataset, url, query=nulls, policy=GatePolicy(allow_null_keys=True)).rows == ROWS - 6


def cli_export(env: dict[str, str], *args: str, code: str = "from predserve.cli import main; main()") -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", code, "export", "--model", "m", "--key", "user_id", "--table", "users", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def test_the_missing_extra_is_named(tmp_path: Path) -> None:
    """Without predserve[gcp] the export says which extra to install (a real process without the clients)."""
    hide_clients = "import sys; sys.modules['google.cloud.bigquery'] = None\nfrom predserve.cli import main; main()"
    out = cli_export({**os.environ}, "-w", "bigquery://p/d", "--store", str(tmp_path / "s"), code=hide_clients)
    assert out.returncode == 1
    assert out.stderr.strip() == "error: reading from BigQuery needs its client libraries: pip install 'predserve[gcp]'"


def test_without_credentials_the_error_says_how_to_get_them(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIGQUERY_")}
    env["GOOGLE_APPLICATION_CREDENTIALS"] = str(tmp_path / "absent.json")
    out = cli_export(env, "-w", "bigquery://p/d", "--store", str(tmp_path / "s"))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: no Google Cloud credentials for BigQuery: run `gcloud auth application-default login`")


def test_bigquery_to_beam_to_bigtable_to_the_api(bigquery_emulator: BigQueryEmulator, bigtable_emulator: str, dataset: str,
                                                 api_server, tmp_path: Path) -> None:
    """The production path end to end: BigQuery emulator -> Beam -> Bigtable emulator -> the API over HTTP."""
    store = bigtable_url()
    cmd = [sys.executable, "-m", "predserve.cli", "export", "-w", warehouse(dataset), "--model", "users", "--key", "user_id",
           "--table", "users", "--store", store, "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ}, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["published"] and summary["rows"] == ROWS
    expected = expected_bodies(bigquery_emulator, dataset, "SELECT * FROM users", summary["snapshot"])
    server = api_server(store, None, "--no-auth", "--read-timeout", "2")
    with server.client() as http:
        for key in ("1", "11", "300", str(ROWS)):
            response = http.get(f"/v1/models/users/predictions/{key}")
            assert response.status_code == 200 and response.json() == expected[key]
        ids = [str(i) for i in range(1, ROWS + 1, 7)] + ["absent"]
        batch = http.post("/v1/models/users/predictions:batchGet", json={"ids": ids}).json()
    assert batch["snapshot"] == summary["snapshot"]
    assert batch["results"][:-1] == [expected[i] for i in ids[:-1]]
    assert batch["results"][-1]["error"]["code"] == 404
