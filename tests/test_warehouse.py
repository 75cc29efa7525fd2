"""BigQuery ML SQL on the embedded warehouse, checked against scikit-learn/XGBoost fitted
directly on the same preprocessed data, and against hand-computed metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from predserve import Warehouse
from predserve.errors import ModelError, SQLError


def design_matrix(table: pa.Table, train: pa.Table) -> np.ndarray:
    """BigQuery ML's automatic preprocessing, written out by hand for x1, x2, color."""
    cols = []
    for name in ("x1", "x2"):
        t = train.column(name).to_numpy()
        cols.append((table.column(name).to_numpy() - t.mean()) / t.std(ddof=1))
    for cat in ("blue", "green", "red"):
        cols.append((table.column("color").to_numpy(zero_copy_only=False) == cat).astype(float))
    return np.column_stack(cols)


# ---- SQL surface ---------------------------------------------------------------------------
def test_script_returns_last_result_and_bigquery_syntax_runs(wh: Warehouse) -> None:
    out = wh.sql("""
        CREATE SCHEMA analytics;
        CREATE TABLE `analytics.scores` AS SELECT id, IF(x1 > 5, 'hi', 'lo') AS band FROM people;
        CREATE VIEW analytics.hi AS SELECT * FROM analytics.scores WHERE band = 'hi';
        SELECT COUNT(*) AS n, SAFE_DIVIDE(1, 0) AS nothing FROM `my-project.analytics.hi`
    """)
    assert out.to_pylist() == [{"n": wh.sql("SELECT COUNT(*) n FROM people WHERE x1 > 5").to_pylist()[0]["n"], "nothing": None}]


def test_syntax_error_points_at_the_statement_and_position(wh: Warehouse) -> None:
    with pytest.raises(SQLError, match=r"statement 2 of 2 \('SELEC id FROM people'\): syntax error at line 1, column"):
        wh.sql("SELECT 1; SELEC id FROM people")


def test_runtime_error_names_the_statement(wh: Warehouse) -> None:
    with pytest.raises(SQLError, match="no_such_table"):
        wh.sql("SELECT * FROM no_such_table")


# ---- linear_reg ----------------------------------------------------------------------------
def test_linear_reg_matches_sklearn_and_weights_are_in_original_units(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL lin OPTIONS(model_type='linear_reg', input_label_cols=['y'], data_split_method='NO_SPLIT') "
           "AS SELECT x1, x2, color, y FROM people")
    data = wh.sql("SELECT x1, x2, color, y FROM people")
    direct = LinearRegression().fit(design_matrix(data, data), data.column("y").to_numpy())
    predicted = wh.sql("SELECT predicted_y FROM ML.PREDICT(MODEL lin, TABLE people) ORDER BY id").column(0).to_numpy()
    ordered = wh.sql("SELECT x1, x2, color FROM people ORDER BY id")
    np.testing.assert_allclose(predicted, direct.predict(design_matrix(ordered, data)), rtol=1e-9, atol=1e-9)
    weights = {r["processed_input"]: r for r in wh.sql("SELECT * FROM ML.WEIGHTS(MODEL lin)").to_pylist()}
    raw = LinearRegression().fit(np.column_stack([data.column("x1"), data.column("x2")]
                                                 + [(data.column("color").to_numpy(zero_copy_only=False) == c) for c in ("blue", "green", "red")]),
                                 data.column("y").to_numpy())
    assert weights["x1"]["weight"] == pytest.approx(raw.coef_[0], rel=1e-6)
    assert weights["x2"]["weight"] == pytest.approx(raw.coef_[1], rel=1e-6)
    assert [c["category"] for c in weights["color"]["category_weights"]] == ["blue", "green", "red"]


def test_regression_metrics_by_hand(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL lin OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, x2, color, y FROM people")
    rows = wh.sql("SELECT y, predicted_y FROM ML.PREDICT(MODEL lin, (SELECT * FROM people WHERE id < 300))")
    y, p = rows.column("y").to_numpy(), rows.column("predicted_y").to_numpy()
    metrics = wh.sql("SELECT * FROM ML.EVALUATE(MODEL lin, (SELECT * FROM people WHERE id < 300))").to_pylist()[0]
    assert metrics["mean_absolute_error"] == pytest.approx(np.mean(np.abs(y - p)))
    assert metrics["mean_squared_error"] == pytest.approx(np.mean((y - p) ** 2))
    assert metrics["median_absolute_error"] == pytest.approx(np.median(np.abs(y - p)))
    assert metrics["r2_score"] == pytest.approx(1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2))
    assert metrics["explained_variance"] == pytest.approx(1 - np.var(y - p) / np.var(y))


# ---- logistic_reg ------------------------------------------------------------------------
def test_logistic_reg_run_to_convergence_matches_sklearn(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL clf OPTIONS(model_type='logistic_reg', input_label_cols=['label'], data_split_method='NO_SPLIT', "
           "max_iterations=1000, early_stop=FALSE) AS SELECT x1, x2, color, label FROM people")
    data = wh.sql("SELECT x1, x2, color, label FROM people")
    direct = LogisticRegression(C=np.inf, max_iter=1000).fit(design_matrix(data, data), data.column("label").to_numpy())
    out = wh.sql("SELECT id, predicted_label, predicted_label_probs FROM ML.PREDICT(MODEL clf, TABLE people) ORDER BY id")
    expected = direct.predict_proba(design_matrix(wh.sql("SELECT * FROM people ORDER BY id"), data))[:, 1]
    got = np.array([probs[1]["prob"] for probs in out.column("predicted_label_probs").to_pylist()])
    assert [p["label"] for p in out.column("predicted_label_probs")[0].as_py()] == [0, 1]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert out.column("predicted_label").to_pylist() == (expected > 0.5).astype(int).tolist()


def test_classification_metrics_by_hand_and_threshold(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL clf OPTIONS(model_type='logistic_reg', input_label_cols=['label']) AS SELECT x1, x2, color, label FROM people")
    rows = wh.sql("SELECT label, predicted_label FROM ML.PREDICT(MODEL clf, TABLE people, STRUCT(0.7 AS threshold))")
    y, p = rows.column("label").to_numpy(), rows.column("predicted_label").to_numpy()
    tp, fp, fn = np.sum((p == 1) & (y == 1)), np.sum((p == 1) & (y == 0)), np.sum((p == 0) & (y == 1))
    m = wh.sql("SELECT * FROM ML.EVALUATE(MODEL clf, TABLE people, STRUCT(0.7 AS threshold))").to_pylist()[0]
    assert m["precision"] == pytest.approx(tp / (tp + fp))
    assert m["recall"] == pytest.approx(tp / (tp + fn))
    assert m["accuracy"] == pytest.approx(np.mean(y == p))
    assert m["f1_score"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert 0.5 < m["roc_auc"] <= 1.0 and m["log_loss"] > 0


def test_multiclass_logistic_reg(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL multi OPTIONS(model_type='logistic_reg', input_label_cols=['kind']) AS SELECT x1, x2, color, kind FROM people")
    out = wh.sql("SELECT kind, predicted_kind, predicted_kind_probs FROM ML.PREDICT(MODEL multi, TABLE people)")
    probs = out.column("predicted_kind_probs").to_pylist()
    assert [p["label"] for p in probs[0]] == ["a", "b", "c"]
    assert all(abs(sum(p["prob"] for p in row) - 1) < 1e-9 for row in probs)
    # color determines kind exactly (both are i % 3), so the model is near perfect
    assert np.mean(np.array(out.column("kind").to_pylist()) == np.array(out.column("predicted_kind").to_pylist())) > 0.99
    metrics = wh.sql("SELECT * FROM ML.EVALUATE(MODEL multi)").to_pylist()[0]
    assert metrics["accuracy"] > 0.99


def test_unseen_category_gets_zero_weight(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL lin OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, color, y FROM people")
    out = wh.sql("SELECT predicted_y FROM ML.PREDICT(MODEL lin, (SELECT 1.0 AS x1, 'purple' AS color))").to_pylist()[0]
    weights = {r["processed_input"]: r for r in wh.sql("SELECT * FROM ML.WEIGHTS(MODEL lin)").to_pylist()}
    assert out["predicted_y"] == pytest.approx(weights["__INTERCEPT__"]["weight"] + weights["x1"]["weight"] * 1.0)


def test_null_numeric_is_imputed_with_the_training_mean(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL lin OPTIONS(model_type='linear_reg', input_label_cols=['y'], data_split_method='NO_SPLIT') "
           "AS SELECT x1, y FROM people")
    mean = wh.sql("SELECT avg(x1) m FROM people").to_pylist()[0]["m"]
    with_null = wh.sql("SELECT predicted_y FROM ML.PREDICT(MODEL lin, (SELECT CAST(NULL AS DOUBLE) AS x1))").to_pylist()[0]
    with_mean = wh.sql(f"SELECT predicted_y FROM ML.PREDICT(MODEL lin, (SELECT {mean} AS x1))").to_pylist()[0]
    assert with_null["predicted_y"] == pytest.approx(with_mean["predicted_y"])


# ---- trees and clustering ----------------------------------------------------------------
def test_boosted_tree_classifier_matches_xgboost(wh: Warehouse) -> None:
    import xgboost as xgb

    wh.sql("CREATE MODEL bt OPTIONS(model_type='boosted_tree_classifier', input_label_cols=['label'], max_iterations=15, "
           "max_tree_depth=4, learn_rate=0.2, data_split_method='NO_SPLIT') AS SELECT x1, x2, color, label FROM people")
    data = wh.sql("SELECT x1, x2, color, label FROM people")
    color_codes = {"blue": 0, "green": 1, "red": 2}
    x = np.column_stack([data.column("x1"), data.column("x2"), [color_codes[c] for c in data.column("color").to_pylist()]])
    direct = xgb.XGBClassifier(n_estimators=15, max_depth=4, learning_rate=0.2, tree_method="hist", random_state=0,
                               reg_lambda=1.0, n_jobs=2).fit(x, data.column("label").to_numpy())
    got = wh.sql("SELECT predicted_label_probs FROM ML.PREDICT(MODEL bt, (SELECT x1, x2, color FROM people))")
    probs = np.array([row[1]["prob"] for row in got.column(0).to_pylist()])
    np.testing.assert_allclose(probs, direct.predict_proba(x)[:, 1], atol=1e-6)
    info = wh.sql("SELECT * FROM ML.TRAINING_INFO(MODEL bt)").to_pylist()
    assert len(info) == 15 and info[-1]["loss"] < info[0]["loss"]


def test_boosted_tree_regressor(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL btr OPTIONS(model_type='boosted_tree_regressor', input_label_cols=['y'], max_iterations=30) "
           "AS SELECT x1, x2, color, y FROM people")
    assert wh.sql("SELECT * FROM ML.EVALUATE(MODEL btr)").to_pylist()[0]["r2_score"] > 0.9


def test_kmeans(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL km OPTIONS(model_type='kmeans', num_clusters=3, kmeans_init_method='KMEANS++') AS SELECT x1, x2 FROM people")
    out = wh.sql("SELECT CENTROID_ID, NEAREST_CENTROIDS_DISTANCE FROM ML.PREDICT(MODEL km, TABLE people)").to_pylist()
    assert {r["CENTROID_ID"] for r in out} == {1, 2, 3}
    for row in out[:20]:
        distances = [d["DISTANCE"] for d in row["NEAREST_CENTROIDS_DISTANCE"]]
        assert distances == sorted(distances) and row["NEAREST_CENTROIDS_DISTANCE"][0]["CENTROID_ID"] == row["CENTROID_ID"]
    metrics = wh.sql("SELECT * FROM ML.EVALUATE(MODEL km)").to_pylist()[0]
    assert metrics["davies_bouldin_index"] > 0 and metrics["mean_squared_distance"] > 0


# ---- splits, persistence, ML.PREDICT anywhere ----------------------------------------------
def test_auto_split_rules(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL small OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM people WHERE id < 400")
    wh.sql("CREATE MODEL mid OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM people")
    small = wh.sql("SELECT * FROM ML.EVALUATE(MODEL small)").to_pylist()[0]
    all_rows = wh.sql("SELECT * FROM ML.EVALUATE(MODEL small, (SELECT x1, y FROM people WHERE id < 400))").to_pylist()[0]
    assert small == pytest.approx(all_rows)  # under 500 rows: evaluated on the training rows
    assert wh.model("mid").training_rows == 800  # 500..50,000 rows: 20% held out


def test_custom_and_seq_splits(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL c OPTIONS(model_type='linear_reg', input_label_cols=['y'], data_split_method='CUSTOM', "
           "data_split_col='is_eval') AS SELECT x1, y, id >= 900 AS is_eval FROM people")
    assert wh.model("c").training_rows == 900
    assert "is_eval" not in wh.model("c").encoder.input_names
    wh.sql("CREATE MODEL s OPTIONS(model_type='linear_reg', input_label_cols=['y'], data_split_method='SEQ', "
           "data_split_col='id', data_split_eval_fraction=0.25) AS SELECT id, x1, y FROM people")
    assert wh.model("s").training_rows == 750


def test_models_persist_and_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    with Warehouse(path) as w:
        w.sql("CREATE TABLE t AS SELECT i::DOUBLE AS x, 2.0 * i AS y FROM range(50) r(i)")
        w.sql("CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x, y FROM t")
    with Warehouse(path) as w:
        assert w.sql("SELECT name, model_type, label FROM _predserve.models").to_pylist() == [
            {"name": "m", "model_type": "linear_reg", "label": "y"}]
        assert w.sql("SELECT predicted_y FROM ML.PREDICT(MODEL m, (SELECT 3.0 AS x))").to_pylist()[0]["predicted_y"] == pytest.approx(6.0)
        w.sql("DROP MODEL m")
        with pytest.raises(ModelError, match="model m does not exist"):
            w.sql("SELECT * FROM ML.PREDICT(MODEL m, TABLE t)")
        w.sql("DROP MODEL IF EXISTS m")


def test_predict_inside_cte_subquery_and_ctas(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL clf OPTIONS(model_type='logistic_reg', input_label_cols=['label']) AS SELECT x1, x2, color, label FROM people")
    wh.sql("CREATE TABLE scored AS SELECT id, predicted_label FROM ML.PREDICT(MODEL clf, (SELECT * FROM people WHERE id < 100))")
    cte = wh.sql("WITH p AS (SELECT * FROM ML.PREDICT(MODEL clf, TABLE people)) SELECT count(*) AS n FROM p WHERE id < 100")
    nested = wh.sql("SELECT count(*) AS n FROM (SELECT id FROM ML.PREDICT(MODEL clf, TABLE people)) WHERE id < 100")
    assert wh.sql("SELECT count(*) AS n FROM scored").to_pylist() == cte.to_pylist() == nested.to_pylist() == [{"n": 100}]


def test_predict_streams_in_batches(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL lin OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM people")
    wh.sql("CREATE TABLE many AS SELECT (i % 100) / 10.0 AS x1 FROM range(300000) t(i)")
    reader = wh.reader("SELECT * FROM ML.PREDICT(MODEL lin, TABLE many)")
    sizes = [batch.num_rows for batch in reader]
    assert sum(sizes) == 300_000 and len(sizes) > 1 and max(sizes) <= 131_072


def test_feature_info(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL lin OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, color, y FROM people")
    info = {r["input"]: r for r in wh.sql("SELECT * FROM ML.FEATURE_INFO(MODEL lin)").to_pylist()}
    assert info["color"]["category_count"] == 3 and info["x1"]["min"] >= 0 and info["x1"]["stddev"] > 0


# ---- errors ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "statement, error, message",
    [
        ("CREATE MODEL m OPTIONS(model_type='neural_net') AS SELECT x1, y FROM people", ModelError, "unknown model_type"),
        ("CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y'], colour='red') AS SELECT x1, y FROM people", ModelError, "option 'colour' is not valid"),
        ("CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y'], l2_reg=-1) AS SELECT x1, y FROM people", ModelError, "out of range"),
        ("CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y'], max_iterations='many') AS SELECT x1, y FROM people", ModelError, "must be an integer"),
        ("CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['target']) AS SELECT x1, y FROM people", ModelError, "label column 'target' is not in the training query"),
        ("CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, CASE WHEN id < 5 THEN NULL ELSE y END AS y FROM people", ModelError, "NULL in 5 rows"),
        ("CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['color']) AS SELECT x1, color FROM people", ModelError, "needs a numeric label"),
        ("CREATE MODEL m OPTIONS(model_type='logistic_reg', input_label_cols=['id']) AS SELECT x1, id FROM people", ModelError, "at most 50 classes"),
        ("SELECT * FROM ML.PREDICT(MODEL ghost, TABLE people)", ModelError, "model ghost does not exist"),
        ("CREATE MODEL m OPTIONS(model_type='linear_reg') AS SELECT x1, y FROM people", ModelError, "label column 'label' is not in the training query"),
    ],
)
def test_clear_errors(wh: Warehouse, statement: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        wh.sql(statement)


def test_missing_columns_at_prediction_time(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL lin OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, x2, y FROM people")
    with pytest.raises(ModelError, match="missing column\\(s\\) the model was trained on: x2"):
        wh.sql("SELECT * FROM ML.PREDICT(MODEL lin, (SELECT x1 FROM people))")


def test_failed_create_model_leaves_the_old_model(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL lin OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM people")
    before = wh.model("lin").created_at
    with pytest.raises(ModelError):
        wh.sql("CREATE OR REPLACE MODEL lin OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT color AS y, x1 FROM people")
    assert wh.model("lin").created_at == before
    with pytest.raises(ModelError, match="already exists"):
        wh.sql("CREATE MODEL lin OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM people")
    wh.sql("CREATE MODEL IF NOT EXISTS lin OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM people")
    assert wh.model("lin").created_at == before
    wh.sql("CREATE OR REPLACE MODEL lin OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM people")
    assert wh.model("lin").created_at > before


# ---- TRANSFORM ---------------------------------------------------------------------------
def test_transform_is_fitted_on_training_rows_and_reapplied_at_prediction(wh: Warehouse) -> None:
    wh.sql("""
        CREATE MODEL t OPTIONS(model_type='linear_reg', input_label_cols=['y'], data_split_method='NO_SPLIT')
        TRANSFORM(ML.STANDARD_SCALER(x1) OVER() AS s1, ML.MIN_MAX_SCALER(x2) OVER() AS m2,
                  ML.BUCKETIZE(x1, [3, 6]) AS b1, ML.QUANTILE_BUCKETIZE(x2, 4) OVER() AS q2,
                  ML.LABEL_ENCODER(color) OVER() AS c, IF(x1 > 5, 1.0, 0.0) AS big, y)
        AS SELECT x1, x2, color, y FROM people
    """)
    model = wh.model("t")
    stats = wh.sql("SELECT avg(x1) m, stddev_samp(x1) s, min(x2) lo, max(x2) hi FROM people").to_pylist()[0]
    out = model.transform.apply(wh.sql("SELECT 5.0 AS x1, 1000.0 AS x2, 'green' AS color, -1.0 AS x2b, 'zzz' AS other"), skip={"y"})
    row = out.to_pylist()[0]
    assert row["s1"] == pytest.approx((5.0 - stats["m"]) / stats["s"])
    assert row["m2"] == 1.0  # above the training maximum: capped
    assert row["b1"] == "bin_2" and row["big"] == 0.0
    assert row["c"] == 2  # blue=1, green=2, red=3
    assert row["q2"] == "bin_4"
    unseen = model.transform.apply(wh.sql("SELECT 1.0 AS x1, 1.0 AS x2, 'purple' AS color"), skip={"y"}).to_pylist()[0]
    assert unseen["c"] == 0 and unseen["b1"] == "bin_1"
    # ML.PREDICT applies the TRANSFORM itself and passes the original columns through
    predicted = wh.sql("SELECT * FROM ML.PREDICT(MODEL t, (SELECT id, x1, x2, color FROM people WHERE id < 3))")
    assert predicted.schema.names == ["predicted_y", "id", "x1", "x2", "color"]
    expected = model.estimator.predict(model.encoder.encode(model.transform.apply(
        wh.sql("SELECT x1, x2, color FROM people WHERE id < 3"), skip={"y"})))
    np.testing.assert_allclose(predicted.column("predicted_y").to_numpy(), expected)
    assert wh.sql("SELECT * FROM ML.EVALUATE(MODEL t, TABLE people)").to_pylist()[0]["r2_score"] > 0.5


def test_transform_errors(wh: Warehouse) -> None:
    with pytest.raises(ModelError, match="ML.BAG_OF_WORDS is not supported in TRANSFORM; supported: ML.STANDARD_SCALER"):
        wh.sql("CREATE MODEL t OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
               "TRANSFORM(ML.BAG_OF_WORDS(color) OVER() AS p, y) AS SELECT color, y FROM people")
    with pytest.raises(ModelError, match="ML.POLYNOMIAL_EXPAND takes a STRUCT of named features"):
        wh.sql("CREATE MODEL t OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
               "TRANSFORM(ML.POLYNOMIAL_EXPAND(x1) AS p, y) AS SELECT x1, y FROM people")
    with pytest.raises(ModelError, match="needs a name"):
        wh.sql("CREATE MODEL t OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
               "TRANSFORM(x1 * 2, y) AS SELECT x1, y FROM people")
    wh.sql("CREATE MODEL t OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
           "TRANSFORM(ML.STANDARD_SCALER(x1) OVER() AS s1, y) AS SELECT x1, y FROM people")
    with pytest.raises(ModelError, match="TRANSFORM cannot be applied"):
        wh.sql("SELECT * FROM ML.PREDICT(MODEL t, (SELECT x2 FROM people))")


def test_training_info_reports_eval_loss_on_the_held_out_rows(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL bt OPTIONS(model_type='boosted_tree_regressor', input_label_cols=['y'], max_iterations=5) "
           "AS SELECT x1, x2, color, y FROM people")
    info = wh.sql("SELECT * FROM ML.TRAINING_INFO(MODEL bt) ORDER BY iteration").to_pylist()
    assert [r["iteration"] for r in info] == [0, 1, 2, 3, 4]
    assert all(r["eval_loss"] is not None and r["eval_loss"] > 0 for r in info)
    assert info[-1]["eval_loss"] < info[0]["eval_loss"]
    wh.sql("CREATE MODEL lin OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, x2, color, y FROM people")
    row = wh.sql("SELECT * FROM ML.TRAINING_INFO(MODEL lin)").to_pylist()[0]
    mse = wh.sql("SELECT mean_squared_error FROM ML.EVALUATE(MODEL lin)").to_pylist()[0]["mean_squared_error"]
    assert row["eval_loss"] == pytest.approx(mse)  # the evaluation split's MSE, as ML.EVALUATE reports it
    wh.sql("CREATE MODEL small OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM people WHERE id < 100")
    assert wh.sql("SELECT eval_loss FROM ML.TRAINING_INFO(MODEL small)").to_pylist() == [{"eval_loss": None}]


def test_struct_columns_expand_into_one_feature_per_field(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL st OPTIONS(model_type='linear_reg', input_label_cols=['y'], data_split_method='NO_SPLIT') "
           "AS SELECT STRUCT(x1 AS a, color AS c) AS s, y FROM people")
    assert wh.model("st").encoder.input_names == ["s_a", "s_c"]
    flat = wh.sql("CREATE MODEL fl OPTIONS(model_type='linear_reg', input_label_cols=['y'], data_split_method='NO_SPLIT') "
                  "AS SELECT x1 AS s_a, color AS s_c, y FROM people")
    assert flat.num_columns == 0
    nested = wh.sql("SELECT predicted_y FROM ML.PREDICT(MODEL st, (SELECT STRUCT(x1 AS a, color AS c) AS s FROM people ORDER BY id))")
    plain = wh.sql("SELECT predicted_y FROM ML.PREDICT(MODEL fl, (SELECT x1 AS s_a, color AS s_c FROM people ORDER BY id))")
    np.testing.assert_allclose(nested.column(0).to_numpy(), plain.column(0).to_numpy())
    with pytest.raises(ModelError, match="nested STRUCT"):
        wh.sql("CREATE MODEL bad OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
               "AS SELECT STRUCT(STRUCT(x1 AS a) AS inner_s) AS s, y FROM people")


def test_string_arrays_are_multi_hot_encoded(wh: Warehouse) -> None:
    wh.sql("CREATE TABLE tagged AS SELECT id, CASE id % 4 WHEN 0 THEN ['a', 'b'] WHEN 1 THEN ['b'] WHEN 2 THEN [] ELSE NULL END AS tags, "
           "(CASE WHEN id % 4 = 0 THEN 3.0 ELSE 0.0 END) + (CASE WHEN id % 4 IN (0, 1) THEN 2.0 ELSE 0.0 END) AS y FROM people")
    wh.sql("CREATE MODEL mh OPTIONS(model_type='linear_reg', input_label_cols=['y'], data_split_method='NO_SPLIT') "
           "AS SELECT tags, y FROM tagged")
    feature = wh.model("mh").encoder.features[0]
    assert feature.output_names == ["tags_a", "tags_b", "tags_NULL"]
    rows = wh.sql("SELECT tags FROM (VALUES (1, ['b', 'a', 'zzz']), (2, NULL), (3, [])) t(i, tags) ORDER BY i")
    x = wh.model("mh").encoder.encode(rows)
    assert x.tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    got = wh.sql("SELECT predicted_y FROM ML.PREDICT(MODEL mh, (SELECT i, tags FROM (VALUES (1, ['a', 'b']), (2, ['b'])) t(i, tags))) "
                 "ORDER BY i").column(0).to_pylist()
    assert got == pytest.approx([5.0, 2.0])


def test_kmeans_custom_initial_centroids(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL kc OPTIONS(model_type='kmeans', kmeans_init_method='CUSTOM', kmeans_init_col='seed', "
           "max_iterations=1, standardize_features=FALSE) "
           "AS SELECT x1, x2, id IN (1, 2, 3) AS seed FROM people")
    model = wh.model("kc")
    assert model.estimator.n_clusters == 3 and model.encoder.input_names == ["x1", "x2"]
    from sklearn.cluster import KMeans

    data = wh.sql("SELECT x1, x2, id IN (1, 2, 3) AS seed FROM people")
    x = np.column_stack([data.column("x1").to_numpy(), data.column("x2").to_numpy()])
    seeds = data.column("seed").to_numpy(zero_copy_only=False)
    direct = KMeans(n_clusters=3, init=x[seeds], n_init=1, max_iter=1, tol=0.01, random_state=0).fit(x)
    np.testing.assert_allclose(model.estimator.cluster_centers_, direct.cluster_centers_)
    with pytest.raises(ModelError, match="marks 3 rows"):
        wh.sql("CREATE MODEL kx OPTIONS(model_type='kmeans', kmeans_init_method='CUSTOM', kmeans_init_col='seed', num_clusters=4) "
               "AS SELECT x1, x2, id IN (1, 2, 3) AS seed FROM people")
    with pytest.raises(ModelError, match="needs kmeans_init_col"):
        wh.sql("CREATE MODEL ky OPTIONS(model_type='kmeans', kmeans_init_method='CUSTOM') AS SELECT x1, x2 FROM people")
