"""Bodies that are lists per id (issue 22 item 3): each user's top-N items as ARRAY<STRUCT> and
each series' forecast horizon keyed by a composite id, exported through the real pipeline into
LMDB and served over the API; their fields profiled and gated for drift like scalar columns
(docs/pipeline.md, "List bodies"): the shares of the recommended items
(`recommendations.item_id`), the top score (`recommendations[0].predicted_rating`) and every
listed value (`forecast.forecast_value`), and per sampled id whether its list changed or its
values moved (gated for a horizon; for a ranking only when a column limit names the field).
The lists are built with the SQL that wraps ML.RECOMMEND / ML.FORECAST
(ARRAY_AGG(STRUCT(...) ORDER BY ... LIMIT N)), here over plain tables of scores, so that each
retrain's change is known exactly: other items recommended (refused), two items swapped for 2%
of the users (published; refused under a column limit of 1%), a forecast shifted (refused,
published with --allow-drift) or swapped across series (refused per id)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from predserve import Warehouse, settings
from predserve.pipeline import GatePolicy, GateRefused, run_export
from predserve.pipeline import drift as drifts
from predserve.store import limits, reports

from tests.support.serving import in_process, make_keys

TOP_N = """
SELECT user_id, ARRAY_AGG(STRUCT(item_id, predicted_rating) ORDER BY predicted_rating DESC, item_id LIMIT 3) AS recommendations
FROM {table} GROUP BY user_id
"""

HORIZON = """
SELECT store_id, product_id,
       ARRAY_AGG(STRUCT(forecast_timestamp, forecast_value, prediction_interval_lower_bound,
                        prediction_interval_upper_bound) ORDER BY forecast_timestamp) AS forecast
FROM {table} GROUP BY store_id, product_id
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
                   CAST(10 * s + p + h AS FLOAT64) AS forecast_value,
                   CAST(10 * s + p + h - 2 AS FLOAT64) AS prediction_interval_lower_bound,
                   CAST(10 * s + p + h + 2 AS FLOAT64) AS prediction_interval_upper_bound
            FROM UNNEST(GENERATE_ARRAY(1, 5)) AS s, UNNEST(GENERATE_ARRAY(1, 4)) AS p, UNNEST(GENERATE_ARRAY(0, 13)) AS h;
            -- retrains: each user's items by rank (the ratings have no ties)
            CREATE TABLE ranked AS
            SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY predicted_rating DESC, item_id) AS r FROM scores;
            -- other items recommended: every user's n-th item is item-n, with the same ratings
            CREATE TABLE scores_renamed AS
            SELECT user_id, CONCAT('item-', CAST(r AS STRING)) AS item_id, predicted_rating FROM ranked;
            -- every 50th user's third and fourth items swapped (4 of 200 users), the ratings by rank unchanged
            CREATE TABLE scores_swapped AS
            SELECT a.user_id, b.item_id, a.predicted_rating
            FROM ranked AS a JOIN ranked AS b ON a.user_id = b.user_id
             AND b.r = IF(MOD(a.user_id, 50) = 0 AND a.r IN (3, 4), 7 - a.r, a.r);
            -- every forecast 30 higher
            CREATE TABLE forecasts_shifted AS
            SELECT store_id, product_id, forecast_timestamp, forecast_value + 30 AS forecast_value,
                   prediction_interval_lower_bound + 30 AS prediction_interval_lower_bound,
                   prediction_interval_upper_bound + 30 AS prediction_interval_upper_bound
            FROM forecasts
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
    summary = run_export(warehouse=str(warehouse), model="recs", key="user_id", store_url=store, query=TOP_N.format(table="scores"))
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
    summary = run_export(warehouse=str(warehouse), model="demand", key="store_id,product_id", store_url=store, query=HORIZON.format(table="forecasts"))
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


# ---- the profile and drift of list fields ------------------------------------------------------
def top_lists(warehouse: Path, table: str = "scores") -> dict[int, list[dict]]:
    """Each user's top 3 (item_id, predicted_rating), as TOP_N lists them, computed here from the rows."""
    with Warehouse(warehouse, read_only=True) as wh:
        rows = wh.sql(f"SELECT user_id, item_id, predicted_rating FROM {table}").to_pylist()
    lists: dict[int, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (-r["predicted_rating"], r["item_id"])):
        lists.setdefault(row["user_id"], []).append({"item_id": row["item_id"], "predicted_rating": row["predicted_rating"]})
    return {user: items[:3] for user, items in lists.items()}


def histogram(values: list[float]) -> dict:
    """A numeric column's profile of ``values`` (no NULLs), with the profile's binning."""
    low, high = min(values), max(values)
    counts = [0] * 10
    for v in values:
        counts[min(int((v - low) * (10 / (high - low))), 9)] += 1
    return {"kind": "numeric", "nulls": 0, "low": low, "high": high, "counts": counts}


def export_recs(warehouse: Path, store: str, table: str, **kwargs):
    return run_export(warehouse=str(warehouse), model="recs", key="user_id", store_url=store,
                      query=TOP_N.format(table=table), **kwargs)


def export_demand(warehouse: Path, store: str, table: str, **kwargs):
    return run_export(warehouse=str(warehouse), model="demand", key="store_id,product_id", store_url=store,
                      query=HORIZON.format(table=table), **kwargs)


def test_the_profile_counts_each_list_field_as_a_column(warehouse: Path, tmp_path: Path) -> None:
    lists = top_lists(warehouse)
    profile = export_recs(warehouse, str(tmp_path / "store"), "scores").profile.to_json()["columns"]
    assert list(profile) == ["recommendations", "recommendations.item_id", "recommendations[0].predicted_rating",
                             "recommendations.predicted_rating"]
    assert profile["recommendations"] == {"kind": "other", "nulls": 0}
    items = Counter(item["item_id"] for top in lists.values() for item in top)
    assert profile["recommendations.item_id"] == {"kind": "categorical", "nulls": 0, "values": dict(items), "other": 0,
                                                  "array": "recommendations", "field": "item_id", "element": "every",
                                                  "total": 600}
    assert list(profile["recommendations.item_id"]["values"]) == sorted(items, key=lambda i: (-items[i], i))  # most listed first
    first = histogram([top[0]["predicted_rating"] for top in lists.values()])
    assert profile["recommendations[0].predicted_rating"] == {
        **first, "array": "recommendations", "field": "predicted_rating", "element": "first"}
    every = histogram([item["predicted_rating"] for top in lists.values() for item in top])
    assert profile["recommendations.predicted_rating"] == {
        **every, "array": "recommendations", "field": "predicted_rating", "element": "every", "total": 600}
    demand = export_demand(warehouse, str(tmp_path / "store"), "forecasts").profile.to_json()["columns"]
    values = [10.0 * s + p + h for s in range(1, 6) for p in range(1, 5) for h in range(14)]
    assert demand["forecast[0].forecast_value"]["low"] == 11.0 and demand["forecast[0].forecast_value"]["high"] == 54.0
    assert {k: demand["forecast.forecast_value"][k] for k in ("nulls", "low", "high", "counts", "total")} == {
        **{k: v for k, v in histogram(values).items() if k != "kind"}, "total": 280}
    assert not [name for name in demand if "forecast_timestamp" in name]  # timestamps are never a drift signal


def test_a_retrain_that_recommends_other_items_is_refused(warehouse: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    first = export_recs(warehouse, store, "scores")
    with pytest.raises(GateRefused) as refused:
        export_recs(warehouse, store, "scores_renamed")
    drift = refused.value.summary.drift.to_json()["columns"]
    before = first.profile.to_json()["columns"]["recommendations.item_id"]["values"]
    shares = {f"item-{n}": 200 / 600 for n in (1, 2, 3)}  # every user now lists item-1, item-2, item-3
    worst = max(abs(shares.get(i, 0) - before.get(i, 0) / 600) for i in set(before) | set(shares))
    assert drift["recommendations.item_id"]["distance"] == pytest.approx(worst, abs=1e-6) and worst > 0.2
    already = sum(1 for top in top_lists(warehouse).values() if [i["item_id"] for i in top] == list(shares))
    assert drift["recommendations.item_id"]["changed"] == pytest.approx(1 - already / 200, abs=1e-6)
    # a ranking's per-id figures are reported, not gated (an ordinary retrain changes nearly every list)
    assert drift["recommendations.item_id"]["gated"] == ["distance"]
    for name in ("recommendations[0].predicted_rating", "recommendations.predicted_rating"):  # the same ratings, by rank
        assert drift[name]["distance"] == 0 and drift[name]["moved"] == 0 and drift[name]["gated"] == ["distance"]
    assert [g.name for g in refused.value.summary.gates if g.blocks] == ["prediction_drift"]
    message = str(refused.value)
    assert f"prediction_drift: recommendations.item_id: L-infinity distance {worst:.4f} (value item-" in message
    assert "is above the limit 0.1" in message and "changed_labels" not in message


def test_a_retrain_that_changes_nothing_material_publishes(warehouse: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    export_recs(warehouse, store, "scores")
    retrain = export_recs(warehouse, store, "scores_swapped")
    assert retrain.published and all(g.passed for g in retrain.gates)
    drift = retrain.drift.to_json()["columns"]
    assert drift["recommendations.item_id"]["changed"] == 4 / 200  # the four users whose third item changed
    assert drift["recommendations.item_id"]["distance"] <= 4 / 600
    assert drift["recommendations[0].predicted_rating"]["moved"] == 0 and drift["recommendations.predicted_rating"]["moved"] == 0
    assert drift["recommendations.item_id"]["gated"] == ["distance"]
    # a column limit gates a ranking's per-id figure: 2% of the users' lists changed, above 1%
    strict = GatePolicy(drift_limits=limits.DriftLimits(column_max_changed_labels={"recommendations.item_id": 0.01}))
    with pytest.raises(GateRefused) as refused:
        export_recs(warehouse, store, "scores", policy=strict)  # the four lists swapped back
    assert refused.value.summary.drift.to_json()["columns"]["recommendations.item_id"]["gated"] == ["distance", "changed"]
    assert [g.name for g in refused.value.summary.gates if g.blocks] == ["changed_labels"]
    assert ("changed_labels: recommendations.item_id: 2.0% of 200 sampled ids in both snapshots changed, above the limit 1.0%"
            in str(refused.value))


def test_a_shifted_forecast_is_refused_and_allow_drift_publishes_it(warehouse: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    export_demand(warehouse, store, "forecasts")
    with pytest.raises(GateRefused) as refused:
        export_demand(warehouse, store, "forecasts_shifted")
    drift = refused.value.summary.drift.to_json()["columns"]
    for name in ("forecast[0].forecast_value", "forecast.forecast_value"):
        assert drift[name]["distance"] > settings.MAX_DRIFT and drift[name]["moved"] == 1.0
        assert drift[name]["mean_abs_change"] == pytest.approx(30.0)
    message = str(refused.value)
    assert "prediction_drift: forecast[0].forecast_value: Jensen-Shannon divergence" in message
    moved = "100.0% of 20 sampled ids in both snapshots moved by more than 0.5 standard deviations"
    assert f"moved_values: forecast[0].forecast_value: {moved}" in message and f"; forecast.forecast_value: {moved}" in message
    assert [g.name for g in refused.value.summary.gates if g.blocks] == ["prediction_drift", "moved_values"]
    published = export_demand(warehouse, store, "forecasts_shifted", policy=GatePolicy(allow_drift=True))
    assert published.published
    assert {g.name: g.overridden for g in published.gates if not g.passed} == {"prediction_drift": True, "moved_values": True}


def test_a_forecast_swapped_across_series_is_refused_per_id(warehouse: Path, tmp_path: Path) -> None:
    """A horizon (a list without an id field) is gated per id: the values are the same, each series has another's."""
    store = str(tmp_path / "store")
    export_demand(warehouse, store, "forecasts")
    swapped = HORIZON.format(table="forecasts").replace("SELECT store_id,", "SELECT 6 - store_id AS store_id,")
    with pytest.raises(GateRefused) as refused:
        run_export(warehouse=str(warehouse), model="demand", key="store_id,product_id", store_url=store, query=swapped)
    drift = refused.value.summary.drift.to_json()["columns"]
    assert drift["forecast.forecast_value"]["distance"] == 0 and drift["forecast.forecast_value"]["gated"] == ["distance", "moved"]
    assert drift["forecast.forecast_value"]["moved"] == 16 / 20  # every store but store 3 (6 - 3 = 3)
    assert [g.name for g in refused.value.summary.gates if g.blocks] == ["moved_values"]


def test_per_id_figures_of_list_fields() -> None:
    """Order counts for an id field; a numeric field of every element moves by position."""
    profile = {
        "item_id": reports.ColumnProfile(kind="categorical", nulls=0, array="recs", field="item_id", element="every"),
        "first": reports.ColumnProfile(kind="numeric", nulls=0, array="recs", field="score", element="first"),
        "every": reports.ColumnProfile(kind="numeric", nulls=0, array="recs", field="score", element="every"),
    }

    def bodies(lists: list[list[tuple[str, float]]]) -> list[bytes]:
        return [json.dumps({"prediction": {"recs": [{"item_id": i, "score": s} for i, s in items]}}).encode() for items in lists]

    old = bodies([[("a", 4.0), ("b", 3.0)], [("a", 2.0), ("c", 1.0)], [("b", 3.0), ("c", 2.0)], [("a", 1.0), ("b", 0.0)]])
    new = bodies([[("b", 4.0), ("a", 3.0)], [("a", 2.0), ("c", 1.0)], [("b", 3.0), ("c", 9.0)], [("a", 1.0)]])
    kinds = {name: column.kind for name, column in profile.items()}
    columns = drifts.compare_bodies(["1", "2", "3", "4"], old, new, kinds, tolerance=0.5, lists=profile).columns
    assert columns["item_id"] == {"changed": 0.5}  # id 1 reordered, id 4 lost an item
    assert columns["first"]["moved"] == 0.0  # the first scores did not change
    assert columns["every"]["moved"] == 0.5  # id 3's second score moved; id 4's list is shorter
    assert columns["every"]["mean_abs_change"] == pytest.approx(7.0 / 7)  # |9 - 2| over the 7 positions in both


# Lists of 0 to 3 elements (an empty list has no first element), a NaN among the scores (counted as NULL);
# one statement for the local warehouse and the BigQuery emulator.
LISTS_SQL = """
CREATE TABLE lists AS
SELECT u AS user_id,
       ARRAY(SELECT AS STRUCT CONCAT('item-', CAST(MOD(u * k, 13) AS STRING)) AS item_id,
                              IF(MOD(u + k, 17) = 0, CAST('NaN' AS FLOAT64), MOD(u * k, 13) / 4) AS score
             FROM UNNEST(GENERATE_ARRAY(1, MOD(u, 4))) AS k ORDER BY k) AS recommendations
FROM UNNEST(GENERATE_ARRAY(1, 500)) AS u
"""


def test_the_bigquery_source_profiles_list_fields_like_the_local_warehouse(bigquery_emulator, tmp_path: Path) -> None:
    from tests.support.production import export_from_bigquery_and_locally

    remote, local, _ = export_from_bigquery_and_locally(bigquery_emulator, LISTS_SQL, "lists", tmp_path)
    columns = local.profile.to_json()["columns"]
    elements = sum(u % 4 for u in range(1, 501))
    nan = sum(1 for u in range(1, 501) for k in range(1, u % 4 + 1) if (u + k) % 17 == 0)
    assert columns["recommendations.item_id"]["total"] == elements and columns["recommendations.item_id"]["nulls"] == 0
    assert columns["recommendations.score"]["nulls"] == nan and sum(columns["recommendations.score"]["counts"]) == elements - nan
    empty = sum(1 for u in range(1, 501) if u % 4 == 0)
    first_nan = sum(1 for u in range(1, 501) if u % 4 and (u + 1) % 17 == 0)
    assert columns["recommendations[0].score"]["nulls"] == empty + first_nan
    assert remote.profile == local.profile
