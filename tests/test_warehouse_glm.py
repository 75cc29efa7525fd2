"""Linear models as BigQuery ML trains them: batch gradient descent and its options,
optimize_strategy's AUTO rules, per-iteration ML.TRAINING_INFO, multiclass ML.WEIGHTS, and
the preprocessing linear models get (TIMESTAMP parts, DUMMY_ENCODING, numeric arrays)."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pytest
from sklearn.linear_model import Lasso, LogisticRegression, Ridge

from predserve import Warehouse
from predserve.errors import ModelError
from predserve.warehouse.models.families.boosted_trees import fit_xgboost
from predserve.warehouse.models.options import resolve_options
from tests.test_warehouse import design_matrix


def info(wh: Warehouse, model: str) -> list[dict]:
    return wh.sql(f"SELECT * FROM ML.TRAINING_INFO(MODEL {model}) ORDER BY iteration").to_pylist()


def standardized(data: pa.Table, *names: str) -> np.ndarray:
    cols = [data.column(n).to_numpy() for n in names]
    return np.column_stack([(c - c.mean()) / c.std(ddof=1) for c in cols])


# ---- batch gradient descent ------------------------------------------------------------------
def test_constant_learn_rate_takes_exactly_the_gradient_steps(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL gd OPTIONS(model_type='linear_reg', input_label_cols=['y'], data_split_method='NO_SPLIT', "
           "optimize_strategy='BATCH_GRADIENT_DESCENT', learn_rate_strategy='CONSTANT', learn_rate=0.1, "
           "max_iterations=3, early_stop=FALSE) AS SELECT x1, x2, y FROM people")
    data = wh.sql("SELECT x1, x2, y FROM people")
    x, y = standardized(data, "x1", "x2"), data.column("y").to_numpy()
    w, b = np.zeros(2), 0.0
    losses = []
    for _ in range(3):  # d/dw of mean((xw + b - y)^2), written out by hand
        r = x @ w + b - y
        w, b = w - 0.1 * 2 * x.T @ r / len(y), b - 0.1 * 2 * r.mean()
        losses.append(np.mean((x @ w + b - y) ** 2))
    rows = info(wh, "gd")
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert [r["learning_rate"] for r in rows] == [0.1, 0.1, 0.1]
    assert [r["loss"] for r in rows] == pytest.approx(losses)
    weights = {r["processed_input"]: r["weight"] for r in wh.sql("SELECT * FROM ML.WEIGHTS(MODEL gd, STRUCT(TRUE AS standardize))").to_pylist()}
    assert [weights["x1"], weights["x2"], weights["__INTERCEPT__"]] == pytest.approx([*w, b])


def test_line_search_doubles_a_too_small_initial_rate(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL ls OPTIONS(model_type='logistic_reg', input_label_cols=['label'], ls_init_learn_rate=0.001, "
           "max_iterations=6, early_stop=FALSE) AS SELECT x1, x2, label FROM people")
    rates = [r["learning_rate"] for r in info(wh, "ls")]
    assert rates == [0.002, 0.004, 0.008, 0.016, 0.032, 0.064]


def test_line_search_keeps_the_best_of_four_rates(wh: Warehouse) -> None:
    # BigQuery's ML.TRAINING_INFO reference: with ls_init_learn_rate=0.1 the first iteration
    # compares the models trained with rates 0.2, 0.1, 0.05 and 0.025 and keeps the best.
    wh.sql("CREATE MODEL ls OPTIONS(model_type='linear_reg', input_label_cols=['y'], data_split_method='NO_SPLIT', "
           "optimize_strategy='BATCH_GRADIENT_DESCENT', max_iterations=1) AS SELECT x1, x2, y FROM people")
    data = wh.sql("SELECT x1, x2, y FROM people")
    x, y = standardized(data, "x1", "x2"), data.column("y").to_numpy()
    grad_w, grad_b = -2 * x.T @ y / len(y), -2 * y.mean()  # the gradient at zero weights
    losses = {r: np.mean((x @ (-r * grad_w) - r * grad_b - y) ** 2) for r in (0.2, 0.1, 0.05, 0.025)}
    best = min(losses, key=losses.get)
    row = info(wh, "ls")[0]
    assert row["learning_rate"] == best and row["loss"] == pytest.approx(losses[best])


def test_default_training_stops_early_and_reports_every_iteration(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL clf OPTIONS(model_type='logistic_reg', input_label_cols=['label']) AS SELECT x1, x2, color, label FROM people")
    rows = info(wh, "clf")
    assert 2 <= len(rows) < 20  # max_iterations=20, but early_stop ends it sooner
    assert [r["iteration"] for r in rows] == list(range(len(rows)))
    assert all(r["eval_loss"] is not None and r["learning_rate"] > 0 for r in rows)
    losses = [r["loss"] for r in rows]
    assert losses == sorted(losses, reverse=True)  # line search never lets the loss rise
    # Early stop watches the evaluation loss: the last iteration improved it by less than 1%.
    last, before = rows[-1]["eval_loss"], rows[-2]["eval_loss"]
    assert (before - last) / before < 0.01
    assert all((a["eval_loss"] - b["eval_loss"]) / a["eval_loss"] >= 0.01 for a, b in zip(rows[:-2], rows[1:-1]))


def test_max_iterations_bounds_the_run(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL short OPTIONS(model_type='logistic_reg', input_label_cols=['kind'], max_iterations=2, early_stop=FALSE) "
           "AS SELECT x1, color, kind FROM people")
    assert len(info(wh, "short")) == 2


def test_l1_reg_converges_to_the_lasso_solution(wh: Warehouse) -> None:
    # Our objective is MSE + l1_reg * |w|_1 / n, which is Lasso's with alpha = l1_reg / (2n).
    wh.sql("CREATE MODEL l1 OPTIONS(model_type='linear_reg', input_label_cols=['y'], data_split_method='NO_SPLIT', "
           "l1_reg=2000, max_iterations=500, early_stop=FALSE) AS SELECT x1, x2, y FROM people")
    data = wh.sql("SELECT x1, x2, y FROM people")
    direct = Lasso(alpha=2000 / (2 * 1000), tol=1e-12, max_iter=100_000).fit(standardized(data, "x1", "x2"), data.column("y").to_numpy())
    weights = {r["processed_input"]: r["weight"] for r in wh.sql("SELECT * FROM ML.WEIGHTS(MODEL l1, STRUCT(TRUE AS standardize))").to_pylist()}
    assert [weights["x1"], weights["x2"]] == pytest.approx(direct.coef_, abs=1e-6)
    assert len(info(wh, "l1")) == 500  # AUTO_STRATEGY chose gradient descent because of l1_reg


def test_l2_reg_gradient_descent_converges_to_the_normal_equation(wh: Warehouse) -> None:
    common = "model_type='linear_reg', input_label_cols=['y'], data_split_method='NO_SPLIT', l2_reg=300"
    wh.sql(f"CREATE MODEL ne OPTIONS({common}) AS SELECT x1, x2, y FROM people")
    wh.sql(f"CREATE MODEL bgd OPTIONS({common}, optimize_strategy='BATCH_GRADIENT_DESCENT', max_iterations=300, early_stop=FALSE) "
           "AS SELECT x1, x2, y FROM people")
    ne = info(wh, "ne")
    assert len(ne) == 1 and ne[0]["learning_rate"] is None  # AUTO_STRATEGY: the normal equation
    data = wh.sql("SELECT x1, x2, y FROM people")
    ridge = Ridge(alpha=300).fit(standardized(data, "x1", "x2"), data.column("y").to_numpy())
    for model in ("ne", "bgd"):
        w = {r["processed_input"]: r["weight"] for r in wh.sql(f"SELECT * FROM ML.WEIGHTS(MODEL {model}, STRUCT(TRUE AS standardize))").to_pylist()}
        assert [w["x1"], w["x2"], w["__INTERCEPT__"]] == pytest.approx([*ridge.coef_, ridge.intercept_], rel=1e-6)


def test_auto_strategy_uses_gradient_descent_when_rows_are_few_for_the_features(wh: Warehouse) -> None:
    # 40 rows, 5 encoded features: fewer than 10 rows per feature, so BigQuery ML's rule picks BGD.
    wh.sql("CREATE MODEL few OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, x2, color, y FROM people WHERE id < 40")
    assert info(wh, "few")[0]["learning_rate"] is not None
    wh.sql("CREATE MODEL many OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, x2, color, y FROM people WHERE id < 50")
    assert info(wh, "many")[0]["learning_rate"] is None


def test_fit_intercept_false_leaves_the_intercept_at_zero(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL noint OPTIONS(model_type='logistic_reg', input_label_cols=['label'], fit_intercept=FALSE) "
           "AS SELECT x1, x2, label FROM people")
    rows = wh.sql("SELECT * FROM ML.WEIGHTS(MODEL noint, STRUCT(TRUE AS standardize)) WHERE processed_input = '__INTERCEPT__'").to_pylist()
    assert rows[0]["weight"] == 0.0


def test_class_weights_shift_the_decision(wh: Warehouse) -> None:
    base = "model_type='logistic_reg', input_label_cols=['label'], data_split_method='NO_SPLIT'"
    wh.sql(f"CREATE MODEL plain OPTIONS({base}) AS SELECT x1, label FROM people")
    wh.sql(f"CREATE MODEL heavy OPTIONS({base}, class_weights=[STRUCT('1', 5.0), STRUCT('0', 1.0)]) AS SELECT x1, label FROM people")
    share = {m: wh.sql(f"SELECT avg(predicted_label) AS s FROM ML.PREDICT(MODEL {m}, TABLE people)").to_pylist()[0]["s"]
             for m in ("plain", "heavy")}
    assert share["heavy"] > share["plain"]


@pytest.mark.parametrize("options, message", [
    ("model_type='logistic_reg', learn_rate=0.5", "learn_rate only applies with learn_rate_strategy='CONSTANT'"),
    ("model_type='logistic_reg', optimize_strategy='NORMAL_EQUATION'", "only applies to linear_reg"),
    ("model_type='linear_reg', optimize_strategy='NORMAL_EQUATION', l1_reg=1", "cannot be used with l1_reg"),
])
def test_invalid_solver_combinations_are_errors(wh: Warehouse, options: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        wh.sql(f"CREATE MODEL bad OPTIONS({options}, input_label_cols=['label']) AS SELECT x1, label FROM people")


def test_diverging_constant_rate_is_an_error(wh: Warehouse) -> None:
    with pytest.raises(ModelError, match="training diverged with learn_rate=1000000.0; lower LEARN_RATE"):
        wh.sql("CREATE MODEL boom OPTIONS(model_type='linear_reg', input_label_cols=['y'], optimize_strategy='BATCH_GRADIENT_DESCENT', "
               "learn_rate_strategy='CONSTANT', learn_rate=1e6, max_iterations=200, early_stop=FALSE) AS SELECT x1, x2, y FROM people")


# ---- multiclass ML.WEIGHTS -------------------------------------------------------------------
def test_multiclass_weights_have_one_set_per_class_and_match_sklearn(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL multi OPTIONS(model_type='logistic_reg', input_label_cols=['kind'], data_split_method='NO_SPLIT', "
           "max_iterations=3000, early_stop=FALSE) AS SELECT x1, x2, color, kind FROM people WHERE id % 7 <> 0 OR x1 > 5")
    rows = wh.sql("SELECT * FROM ML.WEIGHTS(MODEL multi)").to_pylist()
    assert [(r["class_label"], r["processed_input"]) for r in rows] == [
        (k, p) for k in ("a", "b", "c") for p in ("x1", "x2", "color", "__INTERCEPT__")
    ]
    data = wh.sql("SELECT x1, x2, color, kind FROM people WHERE id % 7 <> 0 OR x1 > 5")
    direct = LogisticRegression(C=np.inf, max_iter=5000, tol=1e-10).fit(design_matrix(data, data), data.column("kind").to_numpy(zero_copy_only=False))
    got = wh.sql("SELECT predicted_kind_probs FROM ML.PREDICT(MODEL multi, (SELECT x1, x2, color FROM people WHERE id < 50 ORDER BY id))")
    probs = np.array([[p["prob"] for p in row] for row in got.column(0).to_pylist()])
    expected = direct.predict_proba(design_matrix(wh.sql("SELECT x1, x2, color FROM people WHERE id < 50 ORDER BY id"), data))
    np.testing.assert_allclose(probs, expected, atol=2e-3)


# ---- preprocessing for linear models ---------------------------------------------------------
def test_timestamp_becomes_unix_seconds_and_one_hot_calendar_parts(wh: Warehouse) -> None:
    # Hourly timestamps from Saturday 2022-12-31 20:00 UTC; y depends on the hour of day only.
    wh.sql("CREATE TABLE events AS SELECT id, TIMESTAMP '2022-12-31 20:00:00+00' + INTERVAL (id) HOUR AS ts, "
           "CAST(extract(hour FROM TIMESTAMP '2022-12-31 20:00:00+00' + INTERVAL (id) HOUR) >= 12 AS FLOAT64) AS y FROM people")
    wh.sql("CREATE MODEL tsm OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT ts, y FROM events")
    rows = {r["processed_input"]: r for r in wh.sql("SELECT * FROM ML.WEIGHTS(MODEL tsm)").to_pylist()}
    assert list(rows) == ["ts", "_TS_DOM_ts", "_TS_DOW_ts", "_TS_MOY_ts", "_TS_HOD_ts", "_TS_MOH_ts", "_TS_WOY_ts", "_TS_YEAR_ts",
                          "__INTERCEPT__"]
    assert rows["ts"]["weight"] is not None and rows["_TS_HOD_ts"]["weight"] is None
    assert [c["category"] for c in rows["_TS_HOD_ts"]["category_weights"]] == [str(h) for h in range(24)]
    assert [c["category"] for c in rows["_TS_YEAR_ts"]["category_weights"]] == ["2022", "2023"]
    assert [c["category"] for c in rows["_TS_DOW_ts"]["category_weights"]] == [str(d) for d in range(1, 8)]  # 1 = Sunday
    # The hour-of-day one-hot carries the signal: predictions are (nearly) exact.
    out = wh.sql("SELECT y, predicted_y FROM ML.PREDICT(MODEL tsm, TABLE events)")
    assert np.abs(out.column("y").to_numpy() - out.column("predicted_y").to_numpy()).max() < 1e-6

    encoder = wh.model("tsm").encoder
    probe = pa.table({"ts": pa.array([dt.datetime(2023, 1, 1, 0, 30), dt.datetime(2023, 1, 7, 23, 0), None],
                                     type=pa.timestamp("us", tz="UTC"))})
    x = encoder.encode(probe)
    names = encoder.output_names
    on = [[n for n, v in zip(names, row) if v == 1.0] for row in x]
    # 2023-01-01 is a Sunday: week 1 of 2023 (BigQuery: weeks begin on Sunday, days before the first Sunday are week 0).
    # Minute 30 never occurs in training (all rows are on the hour): unseen, so no _TS_MOH_ column is set.
    assert on[0] == ["_TS_DOM_ts_1", "_TS_DOW_ts_1", "_TS_MOY_ts_1", "_TS_HOD_ts_0", "_TS_WOY_ts_1", "_TS_YEAR_ts_2023"]
    assert on[1] == ["_TS_DOM_ts_7", "_TS_DOW_ts_7", "_TS_MOY_ts_1", "_TS_HOD_ts_23", "_TS_MOH_ts_0", "_TS_WOY_ts_1", "_TS_YEAR_ts_2023"]
    # A NULL timestamp: the training mean of the Unix seconds (0 once standardized), no part set
    # (NULL was not seen in training, so it gets weight 0 like any unseen value).
    assert x[2, 0] == 0.0 and on[2] == []


def test_timestamp_week_zero_before_the_first_sunday(wh: Warehouse) -> None:
    wh.sql("CREATE TABLE days AS SELECT id, TIMESTAMP '2022-01-01 00:00:00+00' + INTERVAL (id) DAY AS ts, x1 AS y FROM people")
    wh.sql("CREATE MODEL dm OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT ts, y FROM days")
    encoder = wh.model("dm").encoder
    probe = pa.table({"ts": pa.array([dt.datetime(2022, 1, 1), dt.datetime(2022, 1, 2)], type=pa.timestamp("us", tz="UTC"))})
    names, x = encoder.output_names, encoder.encode(probe)
    # 2022-01-01 is a Saturday (week 0); Sunday 2022-01-02 starts week 1, as BigQuery's EXTRACT(WEEK).
    assert [n for n, v in zip(names, x[0]) if n.startswith("_TS_WOY") and v] == ["_TS_WOY_ts_0"]
    assert [n for n, v in zip(names, x[1]) if n.startswith("_TS_WOY") and v] == ["_TS_WOY_ts_1"]


def test_timestamp_is_unix_seconds_for_boosted_trees_and_datetime_is_categorical(wh: Warehouse) -> None:
    wh.sql("CREATE TABLE stamps AS SELECT id, TIMESTAMP '2024-01-01 00:00:00+00' + INTERVAL (id) MINUTE AS ts, "
           "DATETIME '2024-01-01 00:00:00' + INTERVAL (id % 3) DAY AS d, x1 AS y FROM people")
    wh.sql("CREATE MODEL tree OPTIONS(model_type='boosted_tree_regressor', input_label_cols=['y'], max_iterations=2) "
           "AS SELECT ts, y FROM stamps")
    assert wh.model("tree").encoder.output_names == ["ts"]
    wh.sql("CREATE MODEL dtm OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT d, y FROM stamps")
    assert wh.model("dtm").encoder.output_names == ["d_2024-01-01 00:00:00", "d_2024-01-02 00:00:00", "d_2024-01-03 00:00:00"]


def test_dummy_encoding_drops_the_most_frequent_category(wh: Warehouse) -> None:
    # 'blue' is the most frequent color in this query (every row with id % 3 = 2, plus extra).
    query = "SELECT x1, IF(id < 100, 'blue', color) AS color, y FROM people"
    wh.sql(f"CREATE MODEL dummy OPTIONS(model_type='linear_reg', input_label_cols=['y'], category_encoding_method='DUMMY_ENCODING') AS {query}")
    wh.sql(f"CREATE MODEL onehot OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS {query}")
    cats = {c["category"]: c["weight"] for c in
            wh.sql("SELECT * FROM ML.WEIGHTS(MODEL dummy) WHERE processed_input = 'color'").to_pylist()[0]["category_weights"]}
    assert list(cats) == ["blue", "green", "red"] and cats["blue"] == 0.0 and cats["green"] != 0.0
    # The same fit, parameterized differently: predictions agree with one-hot encoding.
    a = wh.sql("SELECT predicted_y FROM ML.PREDICT(MODEL dummy, TABLE people) ORDER BY id").column(0).to_numpy()
    b = wh.sql("SELECT predicted_y FROM ML.PREDICT(MODEL onehot, TABLE people) ORDER BY id").column(0).to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_numeric_arrays_are_used_as_they_are(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL vec OPTIONS(model_type='linear_reg', input_label_cols=['y'], data_split_method='NO_SPLIT') "
           "AS SELECT [x1, x2] AS v, y FROM people WHERE id % 3 <> 0")
    encoder = wh.model("vec").encoder
    assert encoder.output_names == ["v_0", "v_1"]
    x = encoder.encode(wh.sql("SELECT v FROM (VALUES (1, [2.0, 3.0]), (2, NULL)) t(i, v) ORDER BY i"))
    means = wh.sql("SELECT avg(x1) a, avg(x2) b FROM people WHERE id % 3 <> 0").to_pylist()[0]
    assert x.tolist() == [[2.0, 3.0], [pytest.approx(means["a"]), pytest.approx(means["b"])]]  # not standardized
    # y = 3 x1 - 2 x2 + noise for these rows: the weights come out per position.
    w = wh.sql("SELECT category_weights FROM ML.WEIGHTS(MODEL vec) WHERE processed_input = 'v'").to_pylist()[0]["category_weights"]
    assert [c["category"] for c in w] == ["0", "1"]
    assert [c["weight"] for c in w] == pytest.approx([3.0, -2.0], abs=0.05)
    with pytest.raises(ModelError, match="arrays of 2"):
        wh.sql("SELECT * FROM ML.PREDICT(MODEL vec, (SELECT [1.0, 2.0, 3.0] AS v))")
    with pytest.raises(ModelError, match="different lengths"):
        wh.sql("CREATE MODEL ragged OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
               "AS SELECT IF(id % 2 = 0, [x1], [x1, x2]) AS v, y FROM people")


def test_custom_split_puts_null_rows_in_evaluation(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL cs OPTIONS(model_type='linear_reg', input_label_cols=['y'], data_split_method='CUSTOM', data_split_col='e') "
           "AS SELECT x1, y, CASE WHEN id < 100 THEN NULL WHEN id < 200 THEN TRUE ELSE FALSE END AS e FROM people")
    assert wh.sql("SELECT training_rows FROM _predserve.models WHERE name = 'cs'").to_pylist() == [{"training_rows": 800}]


# ---- TRANSFORM encoders' vocabulary ------------------------------------------------------------
def test_encoders_follow_top_k_frequency_threshold_and_drop(wh: Warehouse) -> None:
    # BigQuery ML's documented examples: f over [NULL, a, b, b, c, c, c, d, d].
    wh.sql("CREATE TABLE letters AS SELECT * FROM (VALUES (1, NULL, 1.0), (2, 'a', 2.0), (3, 'b', 3.0), (4, 'b', 3.0), "
           "(5, 'c', 4.0), (6, 'c', 4.0), (7, 'c', 4.0), (8, 'd', 5.0), (9, 'd', 5.0)) t(id, f, y)")
    wh.sql("CREATE MODEL enc OPTIONS(model_type='linear_reg', input_label_cols=['y'], data_split_method='NO_SPLIT') "
           "TRANSFORM(ML.LABEL_ENCODER(f, 2, 2) OVER() AS label_2_2, ML.LABEL_ENCODER(f) OVER() AS label_default, "
           "ML.ONE_HOT_ENCODER(f, 'most_frequent', 10, 0) OVER() AS dummy, ML.ONE_HOT_ENCODER(f, 'none', 2, 2) OVER() AS top2, y) "
           "AS SELECT f, y FROM letters")
    model = wh.model("enc")
    out = model.transform.apply(wh.sql("SELECT f FROM letters ORDER BY id"), skip={"y"}).to_pylist()
    # the documented output of ML.LABEL_ENCODER(f, 2, 2): b and c are the vocabulary
    assert [r["label_2_2"] for r in out] == [0, 0, 1, 1, 2, 2, 2, 0, 0]
    # the default frequency_threshold is 5: no letter occurs 5 times, so everything is 0
    assert {r["label_default"] for r in out} == {0}
    # outside the vocabulary (and NULL) is one category: BigQuery's index 0
    assert [r["top2"] for r in out] == [None, None, "b", "b", "c", "c", "c", None, None]
    # 'most_frequent' drops c (dummy encoding): its column stays, always 0, weight 0.0
    dummy = next(f for f in model.encoder.features if f.name == "dummy")
    assert dummy.categories == ["a", "b", "c", "d", None] and dummy.categories[dummy.dropped] == "c"
    weights = {c["category"]: c["weight"] for c in
               wh.sql("SELECT category_weights FROM ML.WEIGHTS(MODEL enc) WHERE processed_input = 'dummy'").to_pylist()[0]["category_weights"]}
    assert weights["c"] == 0.0
    with pytest.raises(ModelError, match="drop must be 'none' or 'most_frequent'"):
        wh.sql("CREATE MODEL bad OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
               "TRANSFORM(ML.ONE_HOT_ENCODER(f, 'least') OVER() AS e, y) AS SELECT f, y FROM letters")
    with pytest.raises(ModelError, match="top_k must be an integer literal"):
        wh.sql("CREATE MODEL bad OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
               "TRANSFORM(ML.LABEL_ENCODER(f, 0) OVER() AS e, y) AS SELECT f, y FROM letters")


def test_ml_functions_outside_their_place_are_clear_errors(wh: Warehouse) -> None:
    from predserve.errors import SQLError

    with pytest.raises(SQLError, match=r"ML.TF_IDF is not supported here.*the preprocessing functions ML.STANDARD_SCALER"):
        wh.sql("SELECT ML.TF_IDF(color) OVER() FROM people")
    with pytest.raises(SQLError, match="line 1, column 15: ML.PREDICT needs MODEL name"):
        wh.sql("SELECT * FROM ML.PREDICT(TABLE people)")


# ---- kmeans ------------------------------------------------------------------------------------
def test_kmeans_iterations_early_stop_and_default_cluster_count(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL km OPTIONS(model_type='kmeans') AS SELECT x1, x2 FROM people")
    assert wh.model("km").estimator.n_clusters == 3  # BigQuery's default: log10(1,000 rows)
    rows = info(wh, "km")
    losses = [r["loss"] for r in rows]
    assert losses == sorted(losses, reverse=True) and len(rows) < 20
    assert (losses[-2] - losses[-1]) / losses[-2] < 0.01  # stopped at the first iteration under 1% progress
    assert all((a - b) / a >= 0.01 for a, b in zip(losses[:-2], losses[1:-1]))
    # the last loss is the mean squared distance ML.EVALUATE reports on the same rows
    assert losses[-1] == pytest.approx(wh.sql("SELECT mean_squared_distance FROM ML.EVALUATE(MODEL km)").to_pylist()[0]["mean_squared_distance"])
    wh.sql("CREATE MODEL km5 OPTIONS(model_type='kmeans', num_clusters=4, max_iterations=5, early_stop=FALSE) AS SELECT x1, x2 FROM people")
    assert len(info(wh, "km5")) == 5


def test_kmeans_run_to_convergence_matches_sklearn(wh: Warehouse) -> None:
    from sklearn.cluster import KMeans

    wh.sql("CREATE MODEL kc OPTIONS(model_type='kmeans', kmeans_init_method='CUSTOM', kmeans_init_col='seed', "
           "max_iterations=100, early_stop=FALSE) AS SELECT x1, x2, id IN (1, 2, 3, 4) AS seed FROM people")
    data = wh.sql("SELECT x1, x2, id IN (1, 2, 3, 4) AS seed FROM people")
    x = standardized(data, "x1", "x2")
    direct = KMeans(n_clusters=4, init=x[data.column("seed").to_numpy(zero_copy_only=False)], n_init=1, max_iter=100, tol=0).fit(x)
    np.testing.assert_allclose(wh.model("kc").estimator.cluster_centers_, direct.cluster_centers_, atol=1e-9)


def test_kmeans_cosine_distance_is_bigquerys_formula(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL kcos OPTIONS(model_type='kmeans', num_clusters=3, distance_type='COSINE', standardize_features=FALSE) "
           "AS SELECT x1 + 1 AS a, x2 + 1 AS b FROM people")
    centers = wh.model("kcos").estimator.cluster_centers_
    row = wh.sql("SELECT NEAREST_CENTROIDS_DISTANCE AS d FROM ML.PREDICT(MODEL kcos, (SELECT 3.0 AS a, 1.0 AS b))").to_pylist()[0]["d"]
    point = np.array([3.0, 1.0])
    expected = {i + 1: np.sqrt(1 - point @ c / (np.linalg.norm(point) * np.linalg.norm(c))) for i, c in enumerate(centers)}
    assert {d["CENTROID_ID"]: d["DISTANCE"] for d in row} == pytest.approx(expected)


def test_boosted_trees_stop_early_on_relative_progress(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL bt OPTIONS(model_type='boosted_tree_regressor', input_label_cols=['y'], max_iterations=200) "
           "AS SELECT x1, x2, color, y FROM people")
    rows = info(wh, "bt")
    assert len(rows) < 200
    eval_losses = [r["eval_loss"] for r in rows]  # the evaluation split is what early stopping watches
    assert eval_losses[-2] - eval_losses[-1] < 0.01 * eval_losses[-2]
    assert all(a - b >= 0.01 * a for a, b in zip(eval_losses[:-2], eval_losses[1:-1]))
    assert wh.model("bt").estimator.get_booster().num_boosted_rounds() == len(rows)
    wh.sql("CREATE MODEL bt_all OPTIONS(model_type='boosted_tree_regressor', input_label_cols=['y'], max_iterations=60, "
           "early_stop=FALSE) AS SELECT x1, x2, color, y FROM people")
    assert len(info(wh, "bt_all")) == 60


# ---- warm start ----------------------------------------------------------------------------------
def test_warm_start_continues_from_the_previous_weights_with_its_options(wh: Warehouse) -> None:
    first = ("model_type='linear_reg', input_label_cols=['y'], data_split_method='NO_SPLIT', learn_rate_strategy='CONSTANT', "
             "learn_rate=0.05, early_stop=FALSE, optimize_strategy='BATCH_GRADIENT_DESCENT'")
    wh.sql(f"CREATE MODEL once OPTIONS({first}, max_iterations=6) AS SELECT x1, x2, y FROM people")
    wh.sql(f"CREATE MODEL twice OPTIONS({first}, max_iterations=3) AS SELECT x1, x2, y FROM people")
    wh.sql("CREATE OR REPLACE MODEL twice OPTIONS(model_type='linear_reg', warm_start=TRUE) AS SELECT x1, x2, y FROM people")
    rows = info(wh, "twice")
    assert sorted((r["training_run"], r["iteration"]) for r in rows) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert {r["learning_rate"] for r in rows} == {0.05}  # the first run's options, not the defaults
    # 3 + 3 constant-rate steps are the same 6 steps
    once = wh.sql("SELECT predicted_y FROM ML.PREDICT(MODEL once, TABLE people) ORDER BY id").column(0).to_numpy()
    twice = wh.sql("SELECT predicted_y FROM ML.PREDICT(MODEL twice, TABLE people) ORDER BY id").column(0).to_numpy()
    np.testing.assert_allclose(twice, once, rtol=1e-12)


def test_warm_start_kmeans_continues_from_the_centroids(wh: Warehouse) -> None:
    opts = "model_type='kmeans', num_clusters=4, early_stop=FALSE"
    wh.sql(f"CREATE MODEL k5 OPTIONS({opts}, max_iterations=5) AS SELECT x1, x2 FROM people")
    wh.sql(f"CREATE MODEL k23 OPTIONS({opts}, max_iterations=2) AS SELECT x1, x2 FROM people")
    wh.sql("CREATE OR REPLACE MODEL k23 OPTIONS(model_type='kmeans', warm_start=TRUE, max_iterations=3) AS SELECT x1, x2 FROM people")
    np.testing.assert_allclose(wh.model("k23").estimator.cluster_centers_, wh.model("k5").estimator.cluster_centers_)
    assert [r["training_run"] for r in info(wh, "k23")].count(1) == 3
    # a model seeded with CUSTOM centroids continues from its centroids: no init column needed
    wh.sql("CREATE MODEL kc OPTIONS(model_type='kmeans', kmeans_init_method='CUSTOM', kmeans_init_col='seed') "
           "AS SELECT x1, x2, id IN (1, 2, 3) AS seed FROM people")
    wh.sql("CREATE OR REPLACE MODEL kc OPTIONS(model_type='kmeans', warm_start=TRUE) AS SELECT x1, x2 FROM people WHERE id < 500")
    assert wh.model("kc").estimator.n_clusters == 3 and {r["training_run"] for r in info(wh, "kc")} == {0, 1}


def test_warm_start_errors(wh: Warehouse) -> None:
    with pytest.raises(ModelError, match="which does not exist"):
        wh.sql("CREATE OR REPLACE MODEL nothing OPTIONS(model_type='linear_reg', input_label_cols=['y'], warm_start=TRUE) AS SELECT x1, y FROM people")
    wh.sql("CREATE MODEL base OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM people")
    with pytest.raises(ModelError, match="CREATE OR REPLACE MODEL base"):
        wh.sql("CREATE MODEL base OPTIONS(model_type='linear_reg', warm_start=TRUE) AS SELECT x1, y FROM people")
    with pytest.raises(ModelError, match="needs the same training schema"):
        wh.sql("CREATE OR REPLACE MODEL base OPTIONS(model_type='linear_reg', warm_start=TRUE) AS SELECT x1, x2, y FROM people")
    with pytest.raises(ModelError, match="keeps the model_type"):
        wh.sql("CREATE OR REPLACE MODEL base OPTIONS(model_type='kmeans', warm_start=TRUE) AS SELECT x1 FROM people")
    with pytest.raises(ModelError, match="cannot be used with warm_start"):
        wh.sql("CREATE OR REPLACE MODEL base OPTIONS(model_type='linear_reg', warm_start=TRUE, optimize_strategy='NORMAL_EQUATION') "
               "AS SELECT x1, y FROM people")
    assert len(info(wh, "base")) == 1  # every failed warm start left the model as it was


def test_one_hot_that_cannot_fit_in_memory_is_refused(wh: Warehouse) -> None:
    wh.sql("CREATE TABLE wide AS SELECT i, 'user-' || i AS user_id, i % 7 AS y FROM range(30000) t(i)")
    # AUTO_SPLIT trains on 80% of the 30,000 rows: 24,000 rows, each user_id distinct
    with pytest.raises(ModelError, match=r"24,000 rows x 24,000 columns .* column .user_id. alone gives 24,000 .* Drop or bucket"):
        wh.sql("CREATE MODEL ids OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT user_id, y FROM wide")


def test_feature_info_describes_the_query_columns_before_transform(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL t OPTIONS(model_type='linear_reg', input_label_cols=['y'], data_split_method='NO_SPLIT') "
           "TRANSFORM(ML.STANDARD_SCALER(x1) OVER() AS s1, ML.ONE_HOT_ENCODER(color) OVER() AS c, y) "
           "AS SELECT x1, color, y FROM people")
    rows = {r["input"]: r for r in wh.sql("SELECT * FROM ML.FEATURE_INFO(MODEL t)").to_pylist()}
    assert list(rows) == ["x1", "color"]  # BigQuery ML: the pre-transform columns of the query
    stats = wh.sql("SELECT min(x1)::DOUBLE lo, max(x1)::DOUBLE hi FROM people").to_pylist()[0]
    assert (rows["x1"]["min"], rows["x1"]["max"]) == (stats["lo"], stats["hi"])
    assert rows["color"]["category_count"] == 3 and rows["color"]["mean"] is None
    wh.sql("CREATE MODEL tags OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
           "AS SELECT IF(id % 2 = 0, ['a', 'b'], ['c']) AS tags, [x1, x2] AS v, y FROM people")
    rows = {r["input"]: r for r in wh.sql("SELECT * FROM ML.FEATURE_INFO(MODEL tags)").to_pylist()}
    assert rows["tags"]["category_count"] == 3  # distinct elements, the multi-hot categories
    assert rows["v"]["category_count"] is None and rows["v"]["null_count"] == 0


def test_kmeans_training_info_has_cluster_info_and_no_eval_loss(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL km OPTIONS(model_type='kmeans', num_clusters=3) AS SELECT x1, x2 FROM people")
    rows = info(wh, "km")
    assert "eval_loss" not in rows[0]
    last = rows[-1]["cluster_info"]
    assert [c["centroid_id"] for c in last] == [1, 2, 3] and sum(c["cluster_size"] for c in last) == 1000
    # the sizes are those ML.PREDICT assigns with the final centroids
    counted = wh.sql("SELECT CENTROID_ID AS c, count(*) AS n FROM ML.PREDICT(MODEL km, TABLE people) GROUP BY 1").to_pylist()
    sizes = {r["c"]: r["n"] for r in counted}
    assert {c["centroid_id"]: c["cluster_size"] for c in last} == sizes
    # radius: root mean squared distance; the size-weighted squares give back the loss
    assert sum(c["cluster_size"] * c["cluster_radius"] ** 2 for c in last) / 1000 == pytest.approx(rows[-1]["loss"])


# ---- boosted tree options ------------------------------------------------------------------------
def test_boosted_tree_category_encodings(wh: Warehouse) -> None:
    common = "input_label_cols=['y'], data_split_method='NO_SPLIT', max_iterations=3"
    wh.sql(f"CREATE MODEL lab OPTIONS(model_type='boosted_tree_regressor', {common}) AS SELECT x1, color, y FROM people")
    assert wh.model("lab").encoder.output_names == ["x1", "color"]  # LABEL_ENCODING, the default
    wh.sql(f"CREATE MODEL oh OPTIONS(model_type='boosted_tree_regressor', {common}, category_encoding_method='ONE_HOT_ENCODING') "
           "AS SELECT x1, color, y FROM people")
    assert wh.model("oh").encoder.output_names == ["x1", "color_blue", "color_green", "color_red"]
    wh.sql(f"CREATE MODEL te OPTIONS(model_type='boosted_tree_regressor', {common}, category_encoding_method='TARGET_ENCODING') "
           "AS SELECT x1, color, y FROM people")
    means = {r["color"]: r["m"] for r in wh.sql("SELECT color, avg(y)::DOUBLE AS m FROM people GROUP BY color").to_pylist()}
    overall = wh.sql("SELECT avg(y)::DOUBLE AS m FROM people").to_pylist()[0]["m"]
    encoded = wh.model("te").encoder.encode(pa.table({"x1": [1.0, 1.0, 1.0], "color": ["red", "blue", "purple"]}))
    assert encoded[:, 1].tolist() == pytest.approx([means["red"], means["blue"], overall])  # unseen: the overall mean
    # binary classification: the share of the positive (greater) label in each category
    wh.sql("CREATE MODEL tec OPTIONS(model_type='boosted_tree_classifier', input_label_cols=['label'], max_iterations=2, "
           "data_split_method='NO_SPLIT', category_encoding_method='TARGET_ENCODING') AS SELECT color, label FROM people")
    share = wh.sql("SELECT avg(label)::DOUBLE AS s FROM people WHERE color = 'green'").to_pylist()[0]["s"]
    assert wh.model("tec").encoder.encode(pa.table({"color": ["green"]}))[0, 0] == pytest.approx(share)
    with pytest.raises(ModelError, match="TARGET_ENCODING' needs a regression or binary label"):
        wh.sql("CREATE MODEL tem OPTIONS(model_type='boosted_tree_classifier', input_label_cols=['kind'], "
               "category_encoding_method='TARGET_ENCODING') AS SELECT color, kind FROM people")


def test_instance_weight_col_weighs_rows_and_is_not_a_feature(wh: Warehouse) -> None:
    common = "model_type='boosted_tree_regressor', input_label_cols=['y'], data_split_method='NO_SPLIT', max_iterations=5, max_tree_depth=1"
    # rows with x1 > 5 weigh 0: the model learns only from the others
    wh.sql(f"CREATE MODEL w OPTIONS({common}, instance_weight_col='wt') AS SELECT x1, y, IF(x1 > 5, 0.0, 1.0) AS wt FROM people")
    wh.sql(f"CREATE MODEL low OPTIONS({common}) AS SELECT x1, y FROM people WHERE x1 <= 5")
    assert wh.model("w").encoder.input_names == ["x1"]
    probe = "(SELECT x1 FROM people WHERE x1 <= 5 ORDER BY id)"
    a = wh.sql(f"SELECT predicted_y FROM ML.PREDICT(MODEL w, {probe})").column(0).to_numpy()
    b = wh.sql(f"SELECT predicted_y FROM ML.PREDICT(MODEL low, {probe})").column(0).to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5)
    with pytest.raises(ModelError, match="must be zero or more in every row"):
        wh.sql(f"CREATE MODEL bad OPTIONS({common}, instance_weight_col='wt') AS SELECT x1, y, x1 - 5 AS wt FROM people")
    with pytest.raises(ModelError, match="cannot be combined with auto_class_weights"):
        wh.sql("CREATE MODEL bad OPTIONS(model_type='boosted_tree_classifier', input_label_cols=['label'], auto_class_weights=TRUE, "
               "instance_weight_col='wt') AS SELECT x1, label, 1.0 AS wt FROM people")


def test_dart_options_reach_xgboost(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL dart OPTIONS(model_type='boosted_tree_regressor', input_label_cols=['y'], booster_type='DART', "
           "dropout=0.3, dart_normalize_type='FOREST', max_iterations=3) AS SELECT x1, y FROM people")
    booster = wh.model("dart").estimator.get_booster()  # the stored model is a DART booster...
    assert json.loads(booster.save_config())["learner"]["gradient_booster"]["name"] == "dart"
    # ...trained with the options (training parameters are not part of XGBoost's saved model: fit one here)
    options = resolve_options({"model_type": "boosted_tree_regressor", "booster_type": "DART", "dropout": 0.3,
                               "dart_normalize_type": "FOREST", "max_iterations": 3})
    data = wh.sql("SELECT x1, y FROM people")
    trees, _ = fit_xgboost("boosted_tree_regressor", options, data.column("x1").to_numpy()[:, None], data.column("y").to_numpy())
    dart = json.loads(trees.get_booster().save_config())["learner"]["gradient_booster"]["dart_train_param"]
    assert (float(dart["rate_drop"]), dart["normalize_type"]) == (pytest.approx(0.3), "forest")
    with pytest.raises(ModelError, match="dropout only applies with booster_type='DART'"):
        wh.sql("CREATE MODEL bad OPTIONS(model_type='boosted_tree_regressor', input_label_cols=['y'], dropout=0.3) AS SELECT x1, y FROM people")


def test_service_only_options_are_named_in_the_error(wh: Warehouse) -> None:
    with pytest.raises(ModelError, match="'num_trials' belongs to BigQuery ML's hyperparameter tuning"):
        wh.sql("CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y'], num_trials=10) AS SELECT x1, y FROM people")
    with pytest.raises(ModelError, match="'kms_key_name' belongs to BigQuery ML's Cloud KMS"):
        wh.sql("CREATE MODEL m OPTIONS(model_type='kmeans', kms_key_name='k') AS SELECT x1 FROM people")
    wh.sql("CREATE MODEL ok OPTIONS(model_type='linear_reg', input_label_cols=['y'], enable_global_explain=FALSE) AS SELECT x1, y FROM people")


def test_more_transform_scalers_match_bigquerys_examples(wh: Warehouse) -> None:
    # The examples on BigQuery ML's reference pages, as training data.
    wh.sql("CREATE TABLE nums AS SELECT * FROM (VALUES (1, NULL), (2, -3), (3, 1), (4, 2), (5, 3), (6, 4), (7, 5)) t(id, f)")
    wh.sql("CREATE MODEL sc OPTIONS(model_type='linear_reg', input_label_cols=['id'], data_split_method='NO_SPLIT') "
           "TRANSFORM(ML.ROBUST_SCALER(f) OVER() AS robust, ML.MAX_ABS_SCALER(f) OVER() AS max_abs, "
           "ML.ROBUST_SCALER(f, [10, 90], FALSE) OVER() AS robust_wide, id) AS SELECT f, id FROM nums")
    out = wh.model("sc").transform.apply(wh.sql("SELECT f FROM nums ORDER BY id"), skip={"id"}).to_pylist()
    assert [r["robust"] for r in out] == pytest.approx([None, -5 / 3, -1 / 3, 0.0, 1 / 3, 2 / 3, 1.0], nan_ok=True)
    assert [r["max_abs"] for r in out] == pytest.approx([None, -0.6, 0.2, 0.4, 0.6, 0.8, 1.0], nan_ok=True)
    assert out[2]["robust_wide"] == pytest.approx(1 / 8)  # not centred; divided by q90 - q10 = 5 - (-3)
    wh.sql("CREATE TABLE gaps AS SELECT * FROM (VALUES (1, NULL, NULL), (2, -3, NULL), (3, -3, NULL), (4, -3, NULL), (5, 1, 'a'), "
           "(6, 2, 'a'), (7, 3, 'b'), (8, 4, 'b'), (9, 5, 'c'), (10, NULL, 'c'), (11, NULL, 'c')) t(id, f, s)")
    wh.sql("CREATE MODEL imp OPTIONS(model_type='linear_reg', input_label_cols=['id'], data_split_method='NO_SPLIT') "
           "TRANSFORM(ML.IMPUTER(f, 'mean') OVER() AS mean_f, ML.IMPUTER(f, 'median') OVER() AS median_f, "
           "ML.IMPUTER(s, 'most_frequent') OVER() AS s, id) AS SELECT f, s, id FROM gaps")
    row = wh.model("imp").transform.apply(pa.table({"f": pa.array([None], pa.int32()), "s": pa.array([None], pa.string())}),
                                          skip={"id"}).to_pylist()[0]
    assert row == {"mean_f": 0.75, "median_f": 1.0, "s": "c"}
    with pytest.raises(ModelError, match="needs strategy 'mean', 'median' or 'most_frequent'"):
        wh.sql("CREATE MODEL bad OPTIONS(model_type='linear_reg', input_label_cols=['id']) "
               "TRANSFORM(ML.IMPUTER(f, 'mode') OVER() AS g, id) AS SELECT f, id FROM gaps")


def test_polynomial_expand_and_feature_cross_make_struct_features(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL px OPTIONS(model_type='linear_reg', input_label_cols=['y'], data_split_method='NO_SPLIT') "
           "TRANSFORM(ML.POLYNOMIAL_EXPAND(STRUCT(x1 AS f1, x2 AS f2)) AS p, ML.FEATURE_CROSS(STRUCT(color, kind, "
           "IF(x1 > 5, 'hi', 'lo') AS band), 3) AS fc, y) AS SELECT x1, x2, color, kind, y FROM people")
    model = wh.model("px")
    # BigQuery's documented examples: STRUCT(2 AS f1, 3 AS f2) and STRUCT('a' AS f1, 'b' AS f2, 'c' AS f3)
    row = model.transform.apply(pa.table({"x1": [2.0], "x2": [3.0], "color": ["a"], "kind": ["b"]}), skip={"y"}).to_pylist()[0]
    assert row["p"] == {"f1": 2.0, "f1_f1": 4.0, "f1_f2": 6.0, "f2": 3.0, "f2_f2": 9.0}
    # crosses of 2 and 3 distinct features, named and valued in the features' order
    assert row["fc"] == {"color_band": "a_lo", "color_kind": "a_b", "color_kind_band": "a_b_lo", "kind_band": "b_lo"}
    # the STRUCT outputs become p_<field> / fc_<field> model columns, as STRUCT expansion names them
    names = model.encoder.input_names
    assert names[:5] == ["p_f1", "p_f1_f1", "p_f1_f2", "p_f2", "p_f2_f2"] and "fc_color_kind" in names
    assert wh.sql("SELECT * FROM ML.EVALUATE(MODEL px)").to_pylist()[0]["r2_score"] > 0.9
    with pytest.raises(ModelError, match="degree must be an integer literal in \\[2, 5\\)"):
        wh.sql("CREATE MODEL bad OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
               "TRANSFORM(ML.FEATURE_CROSS(STRUCT(color, kind), 1) AS fc, y) AS SELECT color, kind, y FROM people")


# ---- preprocessing functions in a plain SELECT -------------------------------------------------
@pytest.mark.parametrize("select, expected", [
    # the examples on BigQuery ML's reference pages, with their documented outputs
    ("SELECT f, ML.STANDARD_SCALER(f) OVER() AS out FROM UNNEST([1,2,3,4,5]) AS f ORDER BY f",
     [-1.2649110640673518, -0.6324555320336759, 0.0, 0.6324555320336759, 1.2649110640673518]),
    ("SELECT f, ML.MIN_MAX_SCALER(f) OVER() AS out FROM UNNEST([1,2,3,4,5]) AS f ORDER BY f", [0.0, 0.25, 0.5, 0.75, 1.0]),
    ("SELECT f, ML.MAX_ABS_SCALER(f) OVER() AS out FROM UNNEST([NULL, -3, 1, 2, 3, 4, 5]) AS f ORDER BY f NULLS FIRST",
     [None, -0.6, 0.2, 0.4, 0.6, 0.8, 1.0]),
    ("SELECT f, ML.ROBUST_SCALER(f) OVER() AS out FROM UNNEST([NULL, -3, 1, 2, 3, 4, 5]) AS f ORDER BY f NULLS FIRST",
     [None, -1.6666666666666667, -0.3333333333333333, 0.0, 0.3333333333333333, 0.6666666666666666, 1.0]),
    ("SELECT f, ML.IMPUTER(f, 'mean') OVER() AS out FROM UNNEST([NULL, -3, -3, -3, 1, 2, 3, 4, 5]) AS f ORDER BY f NULLS FIRST",
     [0.75, -3.0, -3.0, -3.0, 1.0, 2.0, 3.0, 4.0, 5.0]),
    ("SELECT f, ML.IMPUTER(f, 'most_frequent') OVER() AS out "
     "FROM UNNEST([NULL, NULL, NULL, NULL, 'a', 'a', 'b', 'b', 'c', 'c', 'c']) AS f ORDER BY f NULLS FIRST",
     ["c", "c", "c", "c", "a", "a", "b", "b", "c", "c", "c"]),
    ("SELECT f, ML.QUANTILE_BUCKETIZE(f, 3) OVER() AS out FROM UNNEST([1,2,3,4,5]) AS f ORDER BY f",
     ["bin_1", "bin_2", "bin_2", "bin_3", "bin_3"]),
    ("SELECT f, ML.QUANTILE_BUCKETIZE(f, 3, \"bucket_ranges\") OVER() AS out FROM UNNEST([1,2,3,4,5]) AS f ORDER BY f",
     ["(-inf, 2)", "[2, 4)", "[2, 4)", "[4, +inf)", "[4, +inf)"]),
    ("SELECT 1 AS f, [ML.BUCKETIZE(2.5, [1, 2, 3]), ML.BUCKETIZE(2.5, [1, 2, 3], TRUE), ML.BUCKETIZE(2.5, [1, 2, 3], FALSE, "
     "\"bucket_ranges\"), ML.BUCKETIZE(2.5, [1, 2, 3], FALSE, \"bucket_ranges_json\")] AS out",
     [["bin_3", "bin_2", "[2, 3)", '{"start": "2", "end": "3"}']]),
    ("SELECT 1 AS f, ML.POLYNOMIAL_EXPAND(STRUCT(2 AS f1, 3 AS f2)) AS out",
     [{"f1": 2.0, "f1_f1": 4.0, "f1_f2": 6.0, "f2": 3.0, "f2_f2": 9.0}]),
    ("SELECT 1 AS f, ML.FEATURE_CROSS(STRUCT('a' AS f1, 'b' AS f2, 'c' AS f3)) AS out",
     [{"f1_f2": "a_b", "f1_f3": "a_c", "f2_f3": "b_c"}]),
    ("SELECT 1 AS f, ML.NGRAMS(['a', 'b', 'c'], [2,3], '#') AS out", [["a#b", "a#b#c", "b#c"]]),
    ("SELECT f, ML.HASH_BUCKETIZE(f, 3) AS out FROM UNNEST(['a', 'b', 'c', 'd']) AS f ORDER BY f", [0, 1, 1, 2]),
    ("SELECT f, ML.LABEL_ENCODER(f, 2, 2) OVER () AS out FROM UNNEST([NULL, 'a', 'b', 'b', 'c', 'c', 'c', 'd', 'd']) AS f "
     "ORDER BY f NULLS FIRST", [0, 0, 1, 1, 2, 2, 2, 0, 0]),
    # BigQuery's FARM_FINGERPRINT reference example, which ML.HASH_BUCKETIZE builds on
    ("SELECT 1 AS f, FARM_FINGERPRINT(CONCAT(CAST(1 AS STRING), 'foo', CAST(true AS STRING))) AS out", [-1541654101129638711]),
    ("SELECT 1 AS f, FARM_FINGERPRINT(CONCAT(CAST(2 AS STRING), 'apple', CAST(false AS STRING))) AS out", [2794438866806483259]),
])
def test_preprocessing_functions_in_a_plain_select_match_bigquerys_examples(wh: Warehouse, select: str, expected: list) -> None:
    got = wh.sql(select).column("out").to_pylist()
    numeric = any(isinstance(v, float) for v in expected)
    assert got == (pytest.approx(expected) if numeric else expected)


# Each preprocessing function, over the same rows in a plain query and in a model's TRANSFORM
# fitted on them (NO_SPLIT): BigQuery gives one result either way, and so must predserve,
# NULL included (a NULL input stays NULL; the encoders give 0 or their NULL category).
SAME_BOTH_WAYS = {
    "std": "ML.STANDARD_SCALER(x) OVER()", "minmax": "ML.MIN_MAX_SCALER(x) OVER()", "maxabs": "ML.MAX_ABS_SCALER(x) OVER()",
    "robust": "ML.ROBUST_SCALER(x, [10, 90]) OVER()", "imputed": "ML.IMPUTER(x, 'median') OVER()",
    "mostfreq": "ML.IMPUTER(s, 'most_frequent') OVER()", "bucket": "ML.BUCKETIZE(x, [2, 4], FALSE, 'bucket_ranges')",
    "quantiles": "ML.QUANTILE_BUCKETIZE(x, 3) OVER()", "label": "ML.LABEL_ENCODER(s, 2, 1) OVER()",
    "poly": "ML.POLYNOMIAL_EXPAND(STRUCT(x AS a, y AS b))", "cross": "ML.FEATURE_CROSS(STRUCT(s, t))",
    "ngrams": "ML.NGRAMS(tokens, [1, 2], '_')", "hashed": "ML.HASH_BUCKETIZE(s, 4)",
}


def test_every_preprocessing_function_agrees_in_a_query_and_in_transform(wh: Warehouse) -> None:
    wh.sql("CREATE TABLE rows AS SELECT * FROM (VALUES (1, NULL, 1.0, 'a', 'p', ['x', 'y']), (2, 1.0, 2.0, 'b', 'q', NULL), "
           "(3, 2.0, NULL, 'b', 'p', ['y']), (4, 3.0, 4.0, NULL, 'q', ['x', 'y', 'z']), (5, 5.0, 5.0, 'c', NULL, []), "
           "(6, 8.0, 1.0, 'b', 'p', ['z'])) v(id, x, y, s, t, tokens)")
    columns = ", ".join(f"{sql} AS {name}" for name, sql in SAME_BOTH_WAYS.items())
    in_query = wh.sql(f"SELECT id, {columns} FROM rows ORDER BY id").to_pylist()
    wh.sql(f"CREATE MODEL every OPTIONS(model_type='linear_reg', input_label_cols=['id'], data_split_method='NO_SPLIT') "
           f"TRANSFORM({columns}, id) AS SELECT * FROM rows")
    in_transform = wh.sql("SELECT * FROM ML.TRANSFORM(MODEL every, (SELECT * FROM rows ORDER BY id))").to_pylist()
    for name in SAME_BOTH_WAYS:
        got, expected = [r[name] for r in in_transform], [r[name] for r in in_query]
        assert [v is None for v in got] == [v is None for v in expected], name
        numeric = any(isinstance(v, float) for v in expected)  # the same up to the last bit of a float
        pairs = [(g, e) for g, e in zip(got, expected) if e is not None]
        assert all(g == (pytest.approx(e, rel=1e-12) if numeric else e) for g, e in pairs), name
    # ML.MIN_MAX_SCALER of NULL is NULL both ways (the issue: 0.0 in a plain query before)
    assert in_query[0]["minmax"] is None and in_transform[0]["minmax"] is None
    assert [r["hashed"] for r in in_query][3] is None and [r["ngrams"] for r in in_query][1] is None


def test_preprocessing_in_a_select_follows_the_window_and_reports_misuse(wh: Warehouse) -> None:
    rows = wh.sql("SELECT kind, ML.MIN_MAX_SCALER(x1) OVER (PARTITION BY kind) AS m FROM people").to_pylist()
    for kind in ("a", "b", "c"):
        scaled = [r["m"] for r in rows if r["kind"] == kind]
        assert min(scaled) == 0.0 and max(scaled) == 1.0  # scaled within each partition
    with pytest.raises(ModelError, match="ML.STANDARD_SCALER\\(...\\) needs OVER\\(\\)"):
        wh.sql("SELECT ML.STANDARD_SCALER(x1) FROM people")
    with pytest.raises(ModelError, match="ML.ONE_HOT_ENCODER works inside CREATE MODEL ... TRANSFORM"):
        wh.sql("SELECT ML.ONE_HOT_ENCODER(color) OVER() FROM people")
    with pytest.raises(ModelError, match="ML.LABEL_ENCODER\\(...\\) needs OVER\\(\\)"):
        wh.sql("SELECT ML.LABEL_ENCODER(color) FROM people")
    # ML.LABEL_ENCODER follows the window as the scalers do: a vocabulary per partition
    rows = wh.sql("SELECT kind, color, ML.LABEL_ENCODER(color, 10, 1) OVER (PARTITION BY kind) AS e FROM people").to_pylist()
    assert {(r["kind"], r["color"], r["e"]) for r in rows} == {("a", "red", 1), ("b", "green", 1), ("c", "blue", 1)}
