"""MATRIX_FACTORIZATION and ARIMA_PLUS in SQL (issue 22 items 1-3): CREATE MODEL with the
reference pages' options, ML.RECOMMEND with and without an input table, ML.WEIGHTS and
ML.EVALUATE for both feedback types, the time series functions with their reference columns
(the statements of BigQuery ML's forecasting tutorial, on generated data), and each user's top
N and each series' horizon exported through the real pipeline and served over HTTP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from predserve import Warehouse
from predserve.errors import PredserveError
from predserve.pipeline import run_export
from predserve.warehouse.models import arima

from tests.support.serving import in_process, make_keys

RATINGS = """
CREATE TABLE ratings AS
SELECT u AS user_id, CONCAT('item-', CAST(i AS STRING)) AS item_id,
       1.0 + MOD(u * 7 + i * 3, 5) AS rating, MOD(u * 13 + i, 9) AS plays
FROM UNNEST(GENERATE_ARRAY(1, 60)) AS u, UNNEST(GENERATE_ARRAY(1, 25)) AS i
WHERE MOD(u + i, 3) = 0
"""
EXPLICIT = """
CREATE MODEL recs OPTIONS(model_type='matrix_factorization', user_col='user_id', item_col='item_id',
  rating_col='rating', num_factors=4, l2_reg=0.5, max_iterations=15) AS SELECT user_id, item_id, rating FROM ratings
"""
SALES = """
CREATE TABLE sales AS
SELECT s AS store_id, CONCAT('p', CAST(p AS STRING)) AS product_id, DATE_ADD(DATE '2025-01-01', INTERVAL d DAY) AS day,
       20.0 * s + p + 4 * SIN(d * 2 * ACOS(-1) / 7) + MOD(d * 37 + s * 11 + p * 5, 13) / 6.0 AS units
FROM UNNEST(GENERATE_ARRAY(1, 2)) AS s, UNNEST(GENERATE_ARRAY(1, 2)) AS p, UNNEST(GENERATE_ARRAY(0, 139)) AS d
"""
# BigQuery ML's forecasting tutorial's CREATE MODEL, with a composite series id
FORECASTER = """
CREATE MODEL demand OPTIONS(model_type = 'ARIMA_PLUS', time_series_timestamp_col = 'day',
  time_series_data_col = 'units', time_series_id_col = ['store_id', 'product_id'], auto_arima = TRUE,
  data_frequency = 'AUTO_FREQUENCY', decompose_time_series = TRUE, horizon = 30) AS SELECT * FROM sales
"""


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mf") / "w.duckdb"
    with Warehouse(path) as wh:
        wh.sql(RATINGS)
        wh.sql(EXPLICIT)
        wh.sql("CREATE MODEL plays OPTIONS(model_type='matrix_factorization', feedback_type='implicit', user_col='user_id', "
               "item_col='item_id', rating_col='plays', num_factors=3, wals_alpha=2.0) AS SELECT * FROM ratings")
        wh.sql(SALES)
        wh.sql(FORECASTER)
    return path


def test_recommend_without_input_scores_every_pair_as_the_factorization_does(warehouse: Path) -> None:
    with Warehouse(warehouse, read_only=True) as wh:
        rows = wh.sql("SELECT * FROM ML.RECOMMEND(MODEL recs)")
        model = wh.model("recs").estimator
    assert rows.schema.names == ["predicted_rating", "user_id", "item_id"]
    assert rows.num_rows == 60 * 25
    users = model.index(rows.column("user_id"), True)
    items = model.index(rows.column("item_id"), False)
    np.testing.assert_allclose(rows.column("predicted_rating").to_numpy(), model.factorization.predict(users, items))


def test_recommend_for_input_users_items_and_pairs(warehouse: Path) -> None:
    with Warehouse(warehouse, read_only=True) as wh:
        for_users = wh.sql("SELECT * FROM ML.RECOMMEND(MODEL recs, (SELECT 3 AS user_id UNION ALL SELECT 999))")
        for_items = wh.sql("SELECT * FROM ML.RECOMMEND(MODEL recs, (SELECT 'item-4' AS item_id))")
        pairs = wh.sql("SELECT * FROM ML.RECOMMEND(MODEL recs, (SELECT 3 AS user_id, 'item-4' AS item_id "
                       "UNION ALL SELECT 3, 'no-such-item'))").to_pylist()
        everything = {(r["user_id"], r["item_id"]): r["predicted_rating"]
                      for r in wh.sql("SELECT * FROM ML.RECOMMEND(MODEL recs)").to_pylist()}
    assert for_users.num_rows == 25 and set(for_users.column("user_id").to_pylist()) == {3}  # 999 is unknown
    assert for_items.num_rows == 60 and set(for_items.column("item_id").to_pylist()) == {"item-4"}
    assert pairs[0]["predicted_rating"] == pytest.approx(everything[(3, "item-4")])
    assert pairs[1]["predicted_rating"] is None


def test_explicit_model_fits_its_ratings_and_reports_weights_and_regression_metrics(warehouse: Path) -> None:
    with Warehouse(warehouse, read_only=True) as wh:
        stored = wh.sql("SELECT * FROM ML.EVALUATE(MODEL recs)").to_pylist()[0]
        given = wh.sql("SELECT * FROM ML.EVALUATE(MODEL recs, TABLE ratings)").to_pylist()[0]
        weights = wh.sql("SELECT * FROM ML.WEIGHTS(MODEL recs) WHERE processed_input = 'item_id' AND feature = 'item-4'").to_pylist()
        info = wh.sql("SELECT * FROM ML.TRAINING_INFO(MODEL recs) ORDER BY iteration").to_pylist()
    assert set(stored) == {"mean_absolute_error", "mean_squared_error", "mean_squared_log_error", "median_absolute_error",
                           "r2_score", "explained_variance"}
    assert stored["r2_score"] > 0.5 and given == pytest.approx(stored)
    assert [w["factor"] for w in weights[0]["factor_weights"]] == [1, 2, 3, 4] and isinstance(weights[0]["intercept"], float)
    assert len(info) >= 2 and info[-1]["loss"] <= info[0]["loss"]


def test_implicit_model_names_its_confidence_and_ranking_metrics(warehouse: Path) -> None:
    with Warehouse(warehouse, read_only=True) as wh:
        rows = wh.sql("SELECT * FROM ML.RECOMMEND(MODEL plays, (SELECT 5 AS user_id))")
        metrics = wh.sql("SELECT * FROM ML.EVALUATE(MODEL plays, TABLE ratings)").to_pylist()[0]
    assert rows.schema.names[0] == "predicted_plays_confidence"
    assert set(metrics) == {"mean_average_precision", "mean_squared_error", "normalized_discounted_cumulative_gain",
                            "average_rank"}
    assert 0 < metrics["mean_average_precision"] <= 1 and 0 <= metrics["average_rank"] < 0.5


@pytest.mark.parametrize("statement, message", [
    ("SELECT * FROM ML.PREDICT(MODEL recs, TABLE ratings)", "use ML.RECOMMEND"),
    ("SELECT * FROM ML.FORECAST(MODEL recs)", "ML.FORECAST\\(MODEL recs\\) applies to arima_plus models"),
    ("SELECT * FROM ML.RECOMMEND(MODEL demand)", "applies to matrix_factorization models"),
    ("SELECT * FROM ML.PREDICT(MODEL demand, TABLE sales)", "use ML.FORECAST"),
    ("SELECT * FROM ML.FORECAST(MODEL demand, STRUCT(31 AS horizon))", "model's horizon 30"),
    ("SELECT * FROM ML.ARIMA_EVALUATE(MODEL demand, STRUCT(TRUE AS show_all_candidate_models))", "chosen model"),
    ("CREATE MODEL bad OPTIONS(model_type='arima_plus', time_series_data_col='units') AS SELECT * FROM sales",
     "time_series_timestamp_col"),
    ("CREATE MODEL bad OPTIONS(model_type='arima_plus', time_series_timestamp_col='day', time_series_data_col='units', "
     "holiday_region='US') AS SELECT * FROM sales", "holiday_region 'US' is not supported"),
    ("CREATE MODEL bad OPTIONS(model_type='matrix_factorization', feedback_type='both') AS SELECT * FROM ratings",
     "feedback_type='both' is not one of"),
    ("CREATE MODEL bad OPTIONS(model_type='matrix_factorization') AS SELECT * FROM ratings", "has no column user, item "),
])
def test_refusals_name_what_applies(warehouse: Path, statement: str, message: str) -> None:
    with Warehouse(warehouse) as wh, pytest.raises(PredserveError, match=message):
        wh.sql(statement)


def series(wh: Warehouse, store: int, product: str) -> tuple[np.ndarray, np.ndarray]:
    t = wh.sql(f"SELECT day, units FROM sales WHERE store_id = {store} AND product_id = '{product}' ORDER BY day")
    return t.column("day").to_numpy().astype("datetime64[us]"), t.column("units").to_numpy()


def test_forecast_per_composite_series_is_the_core_forecast(warehouse: Path) -> None:
    with Warehouse(warehouse, read_only=True) as wh:
        rows = wh.sql("SELECT * FROM ML.FORECAST(MODEL demand, STRUCT(14 AS horizon, 0.8 AS confidence_level)) "
                      "WHERE store_id = 2 AND product_id = 'p1' ORDER BY forecast_timestamp")
        stamps, values = series(wh, 2, "p1")
    assert rows.schema.names == ["store_id", "product_id", "forecast_timestamp", "forecast_value", "standard_error",
                                 "confidence_level", "prediction_interval_lower_bound", "prediction_interval_upper_bound",
                                 "confidence_interval_lower_bound", "confidence_interval_upper_bound"]
    assert rows.schema.field("forecast_timestamp").type.tz in ("UTC", "Etc/UTC")  # TIMESTAMP, as BigQuery gives it
    expected = arima.fit_series(stamps, values, arima.ArimaOptions(horizon=30)).forecast(14, 0.8)
    np.testing.assert_array_equal(rows.column("forecast_value").to_numpy(), expected["forecast_value"])
    np.testing.assert_array_equal(rows.column("prediction_interval_upper_bound").to_numpy(),
                                  expected["prediction_interval_upper_bound"])
    assert rows.column("forecast_timestamp")[0].as_py().date().isoformat() == "2025-05-21"


def test_the_tutorials_evaluation_and_coefficient_statements(warehouse: Path) -> None:
    with Warehouse(warehouse, read_only=True) as wh:
        evaluated = wh.sql("SELECT * FROM ML.ARIMA_EVALUATE(MODEL demand)").to_pylist()
        coefficients = wh.sql("SELECT * FROM ML.ARIMA_COEFFICIENTS(MODEL demand)").to_pylist()
        default_horizon = wh.sql("SELECT COUNT(*) AS n FROM ML.FORECAST(MODEL demand)").to_pylist()[0]["n"]
        stored = wh.sql("SELECT * FROM ML.EVALUATE(MODEL demand)").to_pylist()
    assert len(evaluated) == 4 and list(evaluated[0])[:2] == ["store_id", "product_id"]
    assert {r["seasonal_periods"][0] for r in evaluated} == {"WEEKLY"}
    assert all(r["AIC"] is not None and r["variance"] > 0 for r in evaluated)
    assert all(len(r["ar_coefficients"]) == e["non_seasonal_p"] and len(r["ma_coefficients"]) == e["non_seasonal_q"]
               for r, e in zip(coefficients, evaluated))
    assert default_horizon == 4 * 3 and stored == evaluated


def test_explain_forecast_detect_anomalies_and_evaluate_against_actuals(warehouse: Path) -> None:
    with Warehouse(warehouse, read_only=True) as wh:
        explained = wh.sql("SELECT * FROM ML.EXPLAIN_FORECAST(MODEL demand, STRUCT(7 AS horizon, 0.9 AS confidence_level)) "
                           "WHERE store_id = 1 AND product_id = 'p2'").to_pylist()
        training = wh.sql("SELECT COUNT(*) AS n, COUNTIF(is_anomaly) AS flagged "
                          "FROM ML.DETECT_ANOMALIES(MODEL demand, STRUCT(0.99 AS anomaly_prob_threshold))").to_pylist()[0]
        new = wh.sql("SELECT * FROM ML.DETECT_ANOMALIES(MODEL demand, STRUCT(0.95 AS anomaly_prob_threshold), "
                     "(SELECT 1 AS store_id, 'p2' AS product_id, DATE '2025-05-21' AS day, 500.0 AS units))").to_pylist()
        evaluated = wh.sql("SELECT * FROM ML.EVALUATE(MODEL demand, (SELECT 1 AS store_id, 'p2' AS product_id, "
                           "DATE(forecast_timestamp) AS day, forecast_value + 1.0 AS units "
                           "FROM ML.FORECAST(MODEL demand, STRUCT(5 AS horizon)) "
                           "WHERE store_id = 1 AND product_id = 'p2'))").to_pylist()
    kinds = [r["time_series_type"] for r in explained]
    assert kinds.count("history") == 140 and kinds.count("forecast") == 7
    for row in explained[:140]:
        parts = row["trend"] + row["seasonal_period_weekly"] + row["residual"]
        assert parts == pytest.approx(row["time_series_adjusted_data"], abs=1e-9)
        assert row["holiday_effect"] is None and row["seasonal_period_yearly"] is None
    assert training["n"] == 4 * 140 and training["flagged"] <= 12
    assert new[0]["is_anomaly"] is True and new[0]["anomaly_probability"] > 0.999
    assert evaluated[0]["mean_absolute_error"] == pytest.approx(1.0)
    assert evaluated[0]["root_mean_squared_error"] == pytest.approx(1.0)


TOP_N = """
SELECT user_id, ARRAY_AGG(STRUCT(item_id, predicted_rating) ORDER BY predicted_rating DESC, item_id LIMIT 5) AS recommendations
FROM ML.RECOMMEND(MODEL recs) GROUP BY user_id
"""
HORIZON = """
SELECT store_id, product_id,
       ARRAY_AGG(STRUCT(forecast_timestamp, forecast_value, prediction_interval_lower_bound,
                        prediction_interval_upper_bound) ORDER BY forecast_timestamp) AS forecast
FROM ML.FORECAST(MODEL demand, STRUCT(14 AS horizon, 0.9 AS confidence_level)) GROUP BY store_id, product_id
"""


@pytest.mark.anyio
async def test_top_n_and_forecast_horizons_exported_and_served(warehouse: Path, tmp_path: Path) -> None:
    recs_store, demand_store = str(tmp_path / "recs"), str(tmp_path / "demand")
    recs = run_export(warehouse=str(warehouse), model="recs", key="user_id", store_url=recs_store, query=TOP_N)
    demand = run_export(warehouse=str(warehouse), model="demand", key="store_id,product_id", store_url=demand_store,
                        query=HORIZON)
    assert recs.published and recs.rows == 60 and demand.published and demand.rows == 4
    with Warehouse(warehouse, read_only=True) as wh:
        best = wh.sql("SELECT item_id, predicted_rating FROM ML.RECOMMEND(MODEL recs, (SELECT 17 AS user_id)) "
                      "ORDER BY predicted_rating DESC, item_id LIMIT 5").to_pylist()
        horizon = wh.sql("SELECT forecast_value FROM ML.FORECAST(MODEL demand, STRUCT(14 AS horizon)) "
                         "WHERE store_id = 2 AND product_id = 'p2' ORDER BY forecast_timestamp").column(0).to_pylist()
    iam = str(tmp_path / "iam.json")
    keys = make_keys(iam)
    bodies = []
    for store, path in ((recs_store, "/v1/models/recs/predictions/17"), (demand_store, "/v1/models/demand/predictions/2|p2")):
        served = in_process(store, iam, keys)
        try:
            async with served.client() as http:
                bodies.append((await http.get(path)).json())
        finally:
            served.context.close()
    one, series = bodies
    assert [r["item_id"] for r in one["prediction"]["recommendations"]] == [r["item_id"] for r in best]
    assert [r["predicted_rating"] for r in one["prediction"]["recommendations"]] == pytest.approx(
        [r["predicted_rating"] for r in best])
    forecast = series["prediction"]["forecast"]
    assert len(forecast) == 14 and [p["forecast_value"] for p in forecast] == pytest.approx(horizon)
    assert all(p["prediction_interval_lower_bound"] < p["forecast_value"] < p["prediction_interval_upper_bound"]
               for p in forecast)
