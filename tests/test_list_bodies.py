"""Bodies that are lists per id (issue 22 item 3): each user's top-N items as ARRAY<STRUCT> and
each series' forecast horizon keyed by a composite id, exported through the real pipeline into
LMDB and served over the API. (The profile counts such columns' NULLs only, as docs/pipeline.md
says of arrays: drift on the listed items' shares and the top score is not gated yet.) The lists are built with the SQL that
wraps ML.RECOMMEND / ML.FORECAST (ARRAY_AGG(STRUCT(...) ORDER BY ... LIMIT N)), here over plain
tables of scores, so what is tested is the export and serving of such bodies."""

from __future__ import annotations

from pathlib import Path

import pytest

from predserve import Warehouse
from predserve.pipeline import run_export

from tests.support.serving import in_process, make_keys

TOP_N = """
SELECT user_id, ARRAY_AGG(STRUCT(item_id, predicted_rating) ORDER BY predicted_rating DESC, item_id LIMIT 3) AS recommendations
FROM scores GROUP BY user_id
"""

HORIZON = """
SELECT store_id, product_id,
       ARRAY_AGG(STRUCT(forecast_timestamp, forecast_value, prediction_interval_lower_bound,
                        prediction_interval_upper_bound) ORDER BY forecast_timestamp) AS forecast
FROM forecasts GROUP BY store_id, product_id
"""


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "lists.duckdb"
    with Warehouse(path) as wh:
        wh.sql("""
            CREATE TABLE scores AS
            SELECT u AS user_id, CONCAT('item-', CAST(i AS STRING)) AS item_id,
                   ROUND(MOD(u * 7 + i * 13, 17) / 4.0, 2) AS predicted_rating
            FROM UNNEST(GENERATE_ARRAY(1, 200)) AS u, UNNEST(GENERATE_ARRAY(1, 12)) AS i;
            CREATE TABLE forecasts AS
            SELECT s AS store_id, CONCAT('p', CAST(p AS STRING)) AS product_id,
                   TIMESTAMP_ADD(TIMESTAMP '2026-01-01 00:00:00', INTERVAL h DAY) AS forecast_timestamp,
                   10.0 * s + p + h AS forecast_value, 10.0 * s + p + h - 2 AS prediction_interval_lower_bound,
                   10.0 * s + p + h + 2 AS prediction_interval_upper_bound
            FROM UNNEST(GENERATE_ARRAY(1, 5)) AS s, UNNEST(GENERATE_ARRAY(1, 4)) AS p, UNNEST(GENERATE_ARRAY(0, 13)) AS h
        """)
    return path


def expected_top(warehouse: Path, user: int) -> list[dict]:
    with Warehouse(warehouse, read_only=True) as wh:
        rows = wh.sql(f"SELECT item_id, predicted_rating FROM scores WHERE user_id = {user}").to_pylist()
    rows.sort(key=lambda r: (-r["predicted_rating"], r["item_id"]))
    return rows[:3]


@pytest.mark.anyio
async def test_top_n_recommendations_are_one_body_per_user(warehouse: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    summary = run_export(warehouse=str(warehouse), model="recs", key="user_id", store_url=store, query=TOP_N)
    assert summary.published and summary.rows == 200
    iam = str(tmp_path / "iam.json")
    served = in_process(store, iam, make_keys(iam))
    try:
        async with served.client() as http:
            one = (await http.get("/v1/models/recs/predictions/42")).json()
            batch = (await http.post("/v1/models/recs/predictions:batchGet", json={"ids": ["7", "999"]})).json()
    finally:
        served.context.close()
    assert one["prediction"] == {"recommendations": expected_top(warehouse, 42)}
    assert batch["results"][0]["prediction"]["recommendations"] == expected_top(warehouse, 7)
    assert batch["results"][1]["error"]["code"] == 404


@pytest.mark.anyio
async def test_forecast_horizons_are_served_by_composite_series_id(warehouse: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    summary = run_export(warehouse=str(warehouse), model="demand", key="store_id,product_id", store_url=store, query=HORIZON)
    assert summary.published and summary.rows == 20
    iam = str(tmp_path / "iam.json")
    served = in_process(store, iam, make_keys(iam))
    try:
        async with served.client() as http:
            body = (await http.get("/v1/models/demand/predictions/3|p2")).json()
    finally:
        served.context.close()
    horizon = body["prediction"]["forecast"]
    assert body["id"] == "3|p2" and len(horizon) == 14
    assert [h["forecast_value"] for h in horizon] == [32.0 + h for h in range(14)]
    assert horizon[0]["prediction_interval_lower_bound"] == 30.0 and horizon[0]["forecast_timestamp"].startswith("2026-01-01")
