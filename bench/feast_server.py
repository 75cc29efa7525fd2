"""Feast's Python feature server on the same predictions, for bench/serve.py's comparison.

Feast gets its own virtualenv (its pins conflict with ours), made once by hand:

    python3 -m venv bench/out/feast-venv && bench/out/feast-venv/bin/pip install feast

The repo (bench/out/feast-repo) holds the same ids and predictions as predserve's store,
flattened into two scalar features (Feast stores scalars): predicted_churned and the first
class's probability, in a SQLite online store (Feast's local default), materialized once.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from common import OUT, free_port, stop, wait_port

FEAST_VENV = OUT / "feast-venv"
FEAST_PYTHON = FEAST_VENV / "bin" / "python"
FEATURES = ["churn:predicted_churned", "churn:churn_probability"]

FEATURE_STORE_YAML = """\
project: predserve_bench
registry: data/registry.db
provider: local
online_store:
  type: sqlite
  path: data/online_store.db
offline_store:
  type: file
entity_key_serialization_version: 3
"""

FEATURES_PY = """\
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
source = FileSource(path="data/predictions.parquet", timestamp_field="event_timestamp")
churn = FeatureView(
    name="churn", entities=[user], ttl=timedelta(days=3650), source=source, online=True,
    schema=[Field(name="user_id", dtype=Int64), Field(name="predicted_churned", dtype=Int64),
            Field(name="churn_probability", dtype=Float64)],
)
"""


def prepare_feast(warehouse: Path, rows: int) -> Path:
    """A Feast repo holding ``rows`` predictions of the bench warehouse, applied and materialized (cached)."""
    repo = OUT / "feast-repo"
    done = repo / f"materialized-{rows}"
    if done.exists():
        return repo
    from predserve import Warehouse

    (repo / "data").mkdir(parents=True, exist_ok=True)
    with Warehouse(warehouse) as wh:
        table = wh.sql("SELECT user_id, predicted_churned, predicted_churned_probs FROM ML.PREDICT(MODEL churn, TABLE users)")
    first = pc.list_element(table["predicted_churned_probs"], 0)
    flat = pa.table({
        "user_id": pc.cast(table["user_id"], pa.int64()),
        "predicted_churned": pc.cast(table["predicted_churned"], pa.int64()),
        "churn_probability": pc.cast(pc.struct_field(first, "prob"), pa.float64()),
        "event_timestamp": pa.array([datetime.now(timezone.utc)] * table.num_rows, pa.timestamp("us", tz="UTC")),
    })
    pq.write_table(flat, repo / "data" / "predictions.parquet")
    (repo / "feature_store.yaml").write_text(FEATURE_STORE_YAML)
    (repo / "features.py").write_text(FEATURES_PY)
    feast = str(FEAST_VENV / "bin" / "feast")
    subprocess.run([feast, "apply"], cwd=repo, check=True, stdout=subprocess.DEVNULL)
    started = time.time()
    end = datetime.now(timezone.utc).isoformat()
    subprocess.run([feast, "materialize", "2000-01-01T00:00:00", end], cwd=repo, check=True, stdout=subprocess.DEVNULL)
    print(f"materialized {rows:,} rows into Feast's SQLite online store in {time.time() - started:.0f}s", flush=True)
    done.touch()
    return repo


class FeastServer:
    """`feast serve` (its Python feature server) with one worker, pinned like predserve's server.

    ``tuned``: the worker is never restarted and the registry is re-read hourly; otherwise Feast's
    defaults, under which gunicorn restarts the worker every ~1,000 requests (--max-requests)."""

    def __init__(self, repo: Path, cpus: str, tuned: bool = True) -> None:
        self.port = free_port()
        cmd = ["taskset", "-c", cpus, str(FEAST_VENV / "bin" / "feast"), "serve", "--port", str(self.port), "--no-access-log",
               "--workers", "1"]
        if tuned:
            cmd += ["--max-requests", "0", "--registry_ttl_sec", "3600"]
        self.proc = subprocess.Popen(cmd, cwd=repo, env={**os.environ, "PATH": f"{FEAST_VENV / 'bin'}:{os.environ['PATH']}"},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __enter__(self) -> "FeastServer":
        wait_port(self.port, timeout=120)
        body = {"features": FEATURES, "entities": {"user_id": [1]}}
        answer = httpx.post(f"http://127.0.0.1:{self.port}/get-online-features", json=body, timeout=30)
        answer.raise_for_status()
        if answer.json()["results"][1]["values"][0] is None:
            raise RuntimeError(f"Feast answered without the feature values: {answer.text[:300]}")
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)

    @staticmethod
    def lua(rows: int) -> str:
        """wrk's script: one random user's two features per request, as predserve's one-id route."""
        features = json.dumps(FEATURES)
        return f"""
math.randomseed(42)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format(nil, "/get-online-features", nil,
    '{{"features":{features},"entities":{{"user_id":[' .. math.random(1, {rows}) .. ']}}}}')
end
"""
