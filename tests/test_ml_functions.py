"""The evaluation and explanation functions (issue 13, item 3) and random forests (item 4), each
checked against its BigQuery ML reference page (output columns, order and types, arguments,
STRUCT settings, the pages' example statements) and against the numbers computed another way:
from ML.PREDICT's own output, by hand with numpy, or by XGBoost/scikit-learn directly."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy.stats import norm

from predserve import Warehouse
from predserve.errors import ModelError, SQLError
from predserve.warehouse.models.options import resolve_options

BINARY = ("CREATE MODEL clf OPTIONS(model_type='logistic_reg', input_label_cols=['label'], data_split_method='NO_SPLIT', "
          "enable_global_explain=TRUE) AS SELECT x1, x2, color, label FROM people")


def names_and_types(table: pa.Table) -> list[tuple[str, str]]:
    return [(f.name, str(f.type).replace("list<l: ", "list<item: ")) for f in table.schema]


@pytest.fixture
def clf(wh: Warehouse) -> Warehouse:
    wh.sql(BINARY)
    return wh


# ---- ML.CONFUSION_MATRIX ---------------------------------------------------------------------------
def test_confusion_matrix_counts_what_ml_predict_predicts(clf: Warehouse) -> None:
    for threshold in (None, 0.6):
        setting = "" if threshold is None else f", STRUCT({threshold} AS threshold)"
        # the reference page's two examples: a query statement, and a custom threshold
        matrix = clf.sql(f"SELECT * FROM ML.CONFUSION_MATRIX(MODEL clf, (SELECT * FROM people){setting})")
        assert names_and_types(matrix) == [("expected_label", "int32"), ("_0", "int64"), ("_1", "int64")]
        predicted = clf.sql(f"SELECT label, predicted_label, count(*) AS n FROM ML.PREDICT(MODEL clf, TABLE people{setting}) "
                            "GROUP BY ALL").to_pylist()
        counts = {(r["label"], r["predicted_label"]): r["n"] for r in predicted}
        assert matrix.to_pylist() == [{"expected_label": e, "_0": counts.get((e, 0), 0), "_1": counts.get((e, 1), 0)}
                                      for e in (0, 1)]
    # without input rows: the evaluation rows (here, with NO_SPLIT, the training rows)
    assert clf.sql("SELECT * FROM ML.CONFUSION_MATRIX(MODEL clf)").equals(
        clf.sql("SELECT * FROM ML.CONFUSION_MATRIX(MODEL clf, TABLE people)"))
    with pytest.raises(ModelError, match="a threshold needs the evaluation rows"):
        clf.sql("SELECT * FROM ML.CONFUSION_MATRIX(MODEL clf, STRUCT(0.5 AS threshold))")


def test_confusion_matrix_of_a_multiclass_model_and_its_label_columns(wh: Warehouse) -> None:
    wh.sql("CREATE TABLE income AS SELECT *, CASE WHEN x1 > 6 THEN '>50K' WHEN x1 > 3 THEN '<=50K' ELSE 'other label' END AS band "
           "FROM people")
    wh.sql("CREATE MODEL m OPTIONS(model_type='logistic_reg', input_label_cols=['band']) AS SELECT x1, x2, band FROM income")
    matrix = wh.sql("SELECT * FROM ML.CONFUSION_MATRIX(MODEL m, TABLE income)")
    # labels that are not column names are made into ones, unique, in ascending label order
    assert matrix.column_names == ["expected_label", "__50K", "_50K", "other_label"]
    assert matrix.column("expected_label").to_pylist() == ["<=50K", ">50K", "other label"]
    assert sum(sum(matrix.column(c).to_pylist()) for c in matrix.column_names[1:]) == 1000
    with pytest.raises(ModelError, match="binary classification models only"):
        wh.sql("SELECT * FROM ML.CONFUSION_MATRIX(MODEL m, TABLE income, STRUCT(0.5 AS threshold))")
    wh.sql("CREATE MODEL reg OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM people")
    with pytest.raises(ModelError, match="evaluates classification models; reg is linear_reg"):
        wh.sql("SELECT * FROM ML.CONFUSION_MATRIX(MODEL reg)")


# ---- ML.ROC_CURVE --------------------------------------------------------------------------------------
def test_roc_curve_counts_at_each_threshold(clf: Warehouse) -> None:
    rows = clf.sql("SELECT label, predicted_label_probs[OFFSET(1)].prob AS p FROM ML.PREDICT(MODEL clf, TABLE people)").to_pylist()
    y, p = np.array([r["label"] for r in rows]), np.array([r["p"] for r in rows])
    # the reference page's custom-threshold example
    curve = clf.sql("SELECT * FROM ML.ROC_CURVE(MODEL clf, TABLE people, GENERATE_ARRAY(0.4, 0.6, 0.01))")
    assert names_and_types(curve) == [("threshold", "double"), ("recall", "double"), ("false_positive_rate", "double"),
                                      ("true_positives", "int64"), ("false_positives", "int64"), ("true_negatives", "int64"),
                                      ("false_negatives", "int64")]
    assert curve.num_rows == 21 and curve.column("threshold")[20].as_py() == pytest.approx(0.6)
    for row in curve.to_pylist():
        positive = p > row["threshold"]
        tp, fp = int((positive & (y == 1)).sum()), int((positive & (y == 0)).sum())
        tn, fn = int((~positive & (y == 0)).sum()), int((~positive & (y == 1)).sum())
        assert (row["true_positives"], row["false_positives"], row["true_negatives"], row["false_negatives"]) == (tp, fp, tn, fn)
        assert row["recall"] == pytest.approx(tp / (tp + fn)) and row["false_positive_rate"] == pytest.approx(fp / (fp + tn))
    # default thresholds: percentiles of the predicted probabilities; without input, the evaluation rows
    default = clf.sql("SELECT * FROM ML.ROC_CURVE(MODEL clf, TABLE people)")
    assert 2 < default.num_rows <= 101 and min(default.column("threshold").to_pylist()) == pytest.approx(p.min())
    assert clf.sql("SELECT * FROM ML.ROC_CURVE(MODEL clf)").equals(default)
    # the page's precision-recall example
    pr = clf.sql("SELECT recall, true_positives / (true_positives + false_positives) AS precision "
                 "FROM ML.ROC_CURVE(MODEL clf, TABLE people) WHERE true_positives + false_positives > 0").to_pylist()
    assert all(0 <= r["precision"] <= 1 for r in pr)
    with pytest.raises(ModelError, match="thresholds need the evaluation rows"):
        clf.sql("SELECT * FROM ML.ROC_CURVE(MODEL clf, GENERATE_ARRAY(0.1, 0.2, 0.1))")
    clf.sql("CREATE MODEL multi OPTIONS(model_type='logistic_reg', input_label_cols=['kind']) AS SELECT x1, kind FROM people")
    with pytest.raises(ModelError, match="evaluates binary classification models; multi is logistic_reg with 3 classes"):
        clf.sql("SELECT * FROM ML.ROC_CURVE(MODEL multi, TABLE people)")
    with pytest.raises(SQLError, match="unexpected"):
        clf.sql("SELECT * FROM ML.ROC_CURVE(MODEL clf, TABLE people, GENERATE_ARRAY(0.1, 0.2, 0.1), TABLE people)")


# ---- ML.CENTROIDS and ML.DETECT_ANOMALIES ------------------------------------------------------------
@pytest.fixture
def km(wh: Warehouse) -> Warehouse:
    wh.sql("CREATE MODEL km OPTIONS(model_type='kmeans', num_clusters=3, kmeans_init_method='KMEANS++', max_iterations=50, "
           "early_stop=FALSE) AS SELECT x1, x2, color FROM people")
    return wh


def test_centroids_in_the_inputs_units_or_standardized(km: Warehouse) -> None:
    # the reference page's example, ordered by centroid
    out = km.sql("SELECT * FROM ML.CENTROIDS(MODEL km) ORDER BY centroid_id")
    assert names_and_types(out) == [("centroid_id", "int64"), ("feature", "string"), ("numerical_value", "double"),
                                    ("categorical_value", "list<item: struct<category: string, value: string>>"),
                                    ("geography_value", "string")]
    assert out.num_rows == 9  # one row per centroid and feature
    # converged Lloyd iterations: a centroid is the mean of its rows, in the inputs' units
    means = km.sql("SELECT CENTROID_ID AS c, avg(x1) AS x1, avg(x2) AS x2, avg(CAST(color = 'red' AS INT)) AS red "
                   "FROM ML.PREDICT(MODEL km, TABLE people) GROUP BY 1").to_pylist()
    by_centroid = {(r["centroid_id"], r["feature"]): r for r in out.to_pylist()}
    for m in means:
        assert by_centroid[(m["c"], "x1")]["numerical_value"] == pytest.approx(m["x1"])
        assert by_centroid[(m["c"], "x2")]["numerical_value"] == pytest.approx(m["x2"])
        shares = {s["category"]: float(s["value"]) for s in by_centroid[(m["c"], "color")]["categorical_value"]}
        assert shares["red"] == pytest.approx(m["red"]) and sum(shares.values()) == pytest.approx(1.0)
    standardized = km.sql("SELECT * FROM ML.CENTROIDS(MODEL km, STRUCT(TRUE AS standardize)) WHERE feature = 'x1' "
                          "ORDER BY centroid_id").column("numerical_value").to_pylist()
    mean, std = km.sql("SELECT avg(x1) AS m, stddev_samp(x1) AS s FROM people").to_pylist()[0].values()
    assert standardized == pytest.approx([(by_centroid[(c, "x1")]["numerical_value"] - mean) / std for c in (1, 2, 3)])
    with pytest.raises(ModelError, match="describes kmeans models"):
        km.sql("CREATE MODEL reg OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM people; "
               "SELECT * FROM ML.CENTROIDS(MODEL reg)")


def test_detect_anomalies_uses_normalized_distance_and_contamination(km: Warehouse) -> None:
    sql = "SELECT * FROM ML.DETECT_ANOMALIES(MODEL km, STRUCT({} AS contamination), TABLE people) ORDER BY id"
    out = km.sql(sql.format(0.1))
    assert names_and_types(out)[:3] == [("is_anomaly", "bool"), ("normalized_distance", "double"), ("centroid_id", "int64")]
    assert out.column_names[3:] == km.sql("SELECT * FROM people").column_names  # then the input columns
    # contamination is the share of the training rows taken as anomalous
    assert sum(out.column("is_anomaly").to_pylist()) == 100
    assert sum(km.sql(sql.format(0.0)).column("is_anomaly").to_pylist()) == 0
    assert sum(km.sql(sql.format(0.5)).column("is_anomaly").to_pylist()) == 500
    # the normalized distance, from ML.PREDICT's distances: distance / the cluster's radius (the
    # root mean square distance of its rows), the smallest over the centroids
    predicted = km.sql("SELECT id, CENTROID_ID, NEAREST_CENTROIDS_DISTANCE AS d FROM ML.PREDICT(MODEL km, TABLE people) ORDER BY id").to_pylist()
    assigned = [next(x["DISTANCE"] for x in r["d"] if x["CENTROID_ID"] == r["CENTROID_ID"]) for r in predicted]
    radius = {c: np.sqrt(np.mean([d ** 2 for d, r in zip(assigned, predicted) if r["CENTROID_ID"] == c])) for c in (1, 2, 3)}
    expected = [min(x["DISTANCE"] / radius[x["CENTROID_ID"]] for x in r["d"]) for r in predicted]
    assert out.column("normalized_distance").to_pylist() == pytest.approx(expected)
    anomalous = np.array(out.column("is_anomaly").to_pylist())
    assert np.array(expected)[anomalous].min() > np.array(expected)[~anomalous].max()
    for statement, message in [
        ("SELECT * FROM ML.DETECT_ANOMALIES(MODEL km, TABLE people)", "needs STRUCT\\(value AS contamination\\)"),
        ("SELECT * FROM ML.DETECT_ANOMALIES(MODEL km, STRUCT(0.7 AS contamination), TABLE people)", "between 0 and 0.5"),
        ("SELECT * FROM ML.DETECT_ANOMALIES(MODEL km, STRUCT(0.9 AS anomaly_prob_threshold), TABLE people)", "applies to ARIMA_PLUS models"),
        ("SELECT * FROM ML.DETECT_ANOMALIES(MODEL km, STRUCT(0.1 AS contamination))", "needs the rows to judge"),
        ("SELECT * FROM ML.DETECT_ANOMALIES(MODEL km, TABLE people, STRUCT(0.1 AS contamination))", "MODEL name, STRUCT"),
    ]:
        with pytest.raises((ModelError, SQLError), match=message):
            km.sql(statement)


# ---- ML.FEATURE_IMPORTANCE ---------------------------------------------------------------------------
def test_feature_importance_is_xgboosts_split_statistics(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL bt OPTIONS(model_type='boosted_tree_regressor', input_label_cols=['y'], max_iterations=5, "
           "category_encoding_method='ONE_HOT_ENCODING') AS SELECT x1, x2, color, y FROM people")
    out = wh.sql("SELECT * FROM ML.FEATURE_IMPORTANCE(MODEL bt)")
    assert names_and_types(out) == [("feature", "string"), ("importance_weight", "double"), ("importance_gain", "double"),
                                    ("importance_cover", "double")]
    booster = wh.model("bt").estimator.booster
    weight, gain = booster.get_score(importance_type="weight"), booster.get_score(importance_type="total_gain")
    rows = {r["feature"]: r for r in out.to_pylist()}
    assert rows["x1"]["importance_weight"] == weight["f0"]
    assert rows["x1"]["importance_gain"] == pytest.approx(gain["f0"] / weight["f0"])
    # a one-hot encoded input: its category columns' splits together (f2..f4: blue, green, red)
    color = sum(weight.get(f"f{i}", 0) for i in (2, 3, 4))
    assert rows["color"]["importance_weight"] == color
    # with TRANSFORM: the query's columns before the TRANSFORM
    wh.sql("CREATE MODEL tr OPTIONS(model_type='boosted_tree_regressor', input_label_cols=['y'], max_iterations=5) "
           "TRANSFORM(x1 * x2 AS both, ML.STANDARD_SCALER(x1) OVER() AS s1, color, y) AS SELECT x1, x2, color, y FROM people")
    transformed = {r["feature"]: r for r in wh.sql("SELECT * FROM ML.FEATURE_IMPORTANCE(MODEL tr)").to_pylist()}
    booster = wh.model("tr").estimator.booster.get_score(importance_type="weight")
    assert set(transformed) == {"x1", "x2", "color"}
    assert transformed["x2"]["importance_weight"] == booster.get("f0", 0)
    assert transformed["x1"]["importance_weight"] == booster.get("f0", 0) + booster.get("f1", 0)
    with pytest.raises(ModelError, match="supports boosted tree and random forest models"):
        wh.sql("CREATE MODEL lin OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM people; "
               "SELECT * FROM ML.FEATURE_IMPORTANCE(MODEL lin)")


# ---- ML.EXPLAIN_PREDICT and ML.GLOBAL_EXPLAIN ------------------------------------------------------------
EXPLAIN_COLUMNS = ["top_feature_attributions", "baseline_prediction_value", "prediction_value", "approximation_error"]


def test_linear_attributions_are_weight_times_standardized_value(clf: Warehouse) -> None:
    # the reference page's linear example: the top three attributions
    out = clf.sql("SELECT * FROM ML.EXPLAIN_PREDICT(MODEL clf, (SELECT label, x1, x2, color, id FROM people), "
                  "STRUCT(3 AS top_k_features)) ORDER BY id")
    assert out.column_names == ["predicted_label", "probability", *EXPLAIN_COLUMNS, "label", "x1", "x2", "color", "id"]
    assert dict(names_and_types(out))["top_feature_attributions"] == "list<item: struct<feature: string, attribution: double>>"
    predicted = clf.sql("SELECT predicted_label, predicted_label_probs FROM ML.PREDICT(MODEL clf, TABLE people) ORDER BY id")
    assert out.column("predicted_label").equals(predicted.column("predicted_label"))
    weights = {r["processed_input"]: r for r in clf.sql("SELECT * FROM ML.WEIGHTS(MODEL clf, STRUCT(TRUE AS standardize))").to_pylist()}
    data = clf.sql("SELECT x1, x2, color FROM people ORDER BY id")
    z = {c: (data.column(c).to_numpy() - data.column(c).to_numpy().mean()) / data.column(c).to_numpy().std(ddof=1) for c in ("x1", "x2")}
    colors = {c["category"]: c["weight"] for c in weights["color"]["category_weights"]}
    for i, row in enumerate(out.to_pylist()[:50]):
        sign = 1.0 if row["predicted_label"] == 1 else -1.0  # the predicted class's log-odds
        expected = {"x1": weights["x1"]["weight"] * z["x1"][i], "x2": weights["x2"]["weight"] * z["x2"][i],
                    "color": colors[data.column("color")[i].as_py()]}
        got = {a["feature"]: a["attribution"] for a in row["top_feature_attributions"]}
        assert got == pytest.approx({k: sign * v for k, v in expected.items()})
        assert [abs(a["attribution"]) for a in row["top_feature_attributions"]] == sorted(map(abs, got.values()), reverse=True)
        assert row["baseline_prediction_value"] == pytest.approx(sign * weights["__INTERCEPT__"]["weight"])
        p = row["probability"]
        assert row["prediction_value"] == pytest.approx(np.log(p / (1 - p)))
        assert row["prediction_value"] == pytest.approx(row["baseline_prediction_value"] + sum(got.values()))
        assert row["approximation_error"] == 0.0
    assert len(clf.sql("SELECT * FROM ML.EXPLAIN_PREDICT(MODEL clf, TABLE people, STRUCT(1 AS top_k_features))")
               .column("top_feature_attributions")[0].as_py()) == 1


def test_tree_attributions_are_xgboosts_tree_shap(wh: Warehouse) -> None:
    import xgboost as xgb

    wh.sql("CREATE MODEL bt OPTIONS(model_type='boosted_tree_classifier', input_label_cols=['label'], max_iterations=10) "
           "AS SELECT x1, x2, color, label FROM people")
    # the reference page's tree example: top three attributions and a custom threshold
    out = wh.sql("SELECT * FROM ML.EXPLAIN_PREDICT(MODEL bt, (SELECT label, x1, x2, color, id FROM people), "
                 "STRUCT(3 AS top_k_features, 0.7 AS threshold)) ORDER BY id").to_pylist()
    model = wh.model("bt")
    x = model.encoder.encode(wh.sql("SELECT x1, x2, color FROM people ORDER BY id"))
    shap = model.estimator.booster.predict(xgb.DMatrix(x), pred_contribs=True)
    margin = model.estimator.booster.predict(xgb.DMatrix(x), output_margin=True)
    probs = wh.sql("SELECT predicted_label_probs[OFFSET(1)].prob AS p FROM ML.PREDICT(MODEL bt, TABLE people) ORDER BY id").column("p").to_pylist()
    for i, row in enumerate(out):
        positive = probs[i] > 0.7
        assert row["predicted_label"] == int(positive)
        sign = 1.0 if positive else -1.0
        got = {a["feature"]: a["attribution"] for a in row["top_feature_attributions"]}
        assert got == pytest.approx({"x1": sign * shap[i, 0], "x2": sign * shap[i, 1], "color": sign * shap[i, 2]}, abs=1e-5)
        assert row["baseline_prediction_value"] == pytest.approx(sign * shap[i, 3], abs=1e-5)
        assert row["prediction_value"] == pytest.approx(sign * margin[i], abs=1e-4)
    approx = wh.sql("SELECT * FROM ML.EXPLAIN_PREDICT(MODEL bt, TABLE people, STRUCT(TRUE AS approx_feature_contrib))")
    assert approx.num_rows == 1000
    with pytest.raises(ModelError, match="explains supervised models"):
        wh.sql("CREATE MODEL km OPTIONS(model_type='kmeans', num_clusters=2) AS SELECT x1 FROM people; "
               "SELECT * FROM ML.EXPLAIN_PREDICT(MODEL km, TABLE people)")
    with pytest.raises(SQLError, match="integrated_gradients_num_steps belongs to BigQuery ML's DNN models"):
        wh.sql("SELECT * FROM ML.EXPLAIN_PREDICT(MODEL bt, TABLE people, STRUCT(30 AS integrated_gradients_num_steps))")


def test_global_explain_is_the_mean_absolute_attribution_over_the_evaluation_rows(clf: Warehouse) -> None:
    expected = clf.sql("SELECT a.feature, avg(abs(a.attribution)) AS attribution FROM ML.EXPLAIN_PREDICT(MODEL clf, TABLE people, "
                       "STRUCT(10 AS top_k_features)) AS e, UNNEST(e.top_feature_attributions) AS a GROUP BY 1 ORDER BY 2 DESC")
    out = clf.sql("SELECT * FROM ML.GLOBAL_EXPLAIN(MODEL clf)")  # the reference page's regression example, on a classifier
    assert out.column_names == ["feature", "attribution"]
    assert out.column("feature").to_pylist() == expected.column("feature").to_pylist()
    assert out.column("attribution").to_pylist() == pytest.approx(expected.column("attribution").to_pylist())
    per_class = clf.sql("SELECT * FROM ML.GLOBAL_EXPLAIN(MODEL clf, STRUCT(TRUE AS class_level_explain))")
    assert per_class.column_names == ["class_label", "feature", "attribution"]
    assert per_class.column("class_label").to_pylist() == ["0"] * 3 + ["1"] * 3
    clf.sql("CREATE MODEL plain OPTIONS(model_type='logistic_reg', input_label_cols=['label']) AS SELECT x1, label FROM people")
    with pytest.raises(ModelError, match="needs a model trained with enable_global_explain=TRUE"):
        clf.sql("SELECT * FROM ML.GLOBAL_EXPLAIN(MODEL plain)")


def test_global_explain_of_trees_per_class(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL bt OPTIONS(model_type='boosted_tree_classifier', input_label_cols=['kind'], max_iterations=3, "
           "enable_global_explain=TRUE) AS SELECT x1, x2, color, kind FROM people")
    out = wh.sql("SELECT * FROM ML.GLOBAL_EXPLAIN(MODEL bt, STRUCT(TRUE AS class_level_explain))").to_pylist()
    assert [r["class_label"] for r in out] == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    assert all(r["feature"] == "color" for r in out[::3])  # kind is color, class by class


# ---- ML.ADVANCED_WEIGHTS ---------------------------------------------------------------------------------
P_VALUES = ("CREATE MODEL lin OPTIONS(model_type='linear_reg', input_label_cols=['y'], data_split_method='NO_SPLIT', "
            "calculate_p_values=TRUE, category_encoding_method='DUMMY_ENCODING') AS SELECT x1, x2, color, y FROM people")


def test_advanced_weights_are_the_least_squares_standard_errors(wh: Warehouse) -> None:
    wh.sql(P_VALUES)
    out = wh.sql("SELECT * FROM ML.ADVANCED_WEIGHTS(MODEL lin, STRUCT(TRUE AS standardize))")
    assert names_and_types(out) == [("processed_input", "string"), ("category", "string"), ("weight", "double"),
                                    ("standard_error", "double"), ("p_value", "double")]
    data = wh.sql("SELECT x1, x2, color, y FROM people")
    x1, x2 = (data.column(c).to_numpy() for c in ("x1", "x2"))
    color = np.array(data.column("color").to_pylist())
    # DUMMY_ENCODING drops the most frequent color: red (334 rows; blue and green have 333)
    design = np.column_stack([(x1 - x1.mean()) / x1.std(ddof=1), (x2 - x2.mean()) / x2.std(ddof=1),
                              color == "blue", color == "green", np.ones(len(x1))]).astype(float)
    y = data.column("y").to_numpy()
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ beta
    errors = np.sqrt(np.diag(residual @ residual / (len(y) - 5) * np.linalg.inv(design.T @ design)))
    rows = {(r["processed_input"], r["category"]): r for r in out.to_pylist()}
    order = [("x1", None), ("x2", None), ("color", "blue"), ("color", "green"), ("__INTERCEPT__", None)]
    assert [rows[k]["weight"] for k in order] == pytest.approx(beta, rel=1e-6)
    assert [rows[k]["standard_error"] for k in order] == pytest.approx(errors, rel=1e-6)
    assert [rows[k]["p_value"] for k in order] == pytest.approx(2 * norm.sf(np.abs(beta) / errors), abs=1e-12)
    assert rows[("color", "red")]["weight"] == 0.0 and rows[("color", "red")]["standard_error"] is None
    # in the inputs' units: a numeric weight and its standard error both divided by the stddev,
    # the same p-value; the intercept's standard error and p-value are not given
    raw = {(r["processed_input"], r["category"]): r for r in wh.sql("SELECT * FROM ML.ADVANCED_WEIGHTS(MODEL lin)").to_pylist()}
    assert raw[("x1", None)]["standard_error"] == pytest.approx(errors[0] / x1.std(ddof=1))
    assert raw[("x1", None)]["p_value"] == pytest.approx(rows[("x1", None)]["p_value"])
    assert raw[("__INTERCEPT__", None)]["standard_error"] is None and raw[("__INTERCEPT__", None)]["p_value"] is None


def test_advanced_weights_of_logistic_regression_use_the_fisher_information(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL lg OPTIONS(model_type='logistic_reg', input_label_cols=['label'], data_split_method='NO_SPLIT', "
           "calculate_p_values=TRUE, category_encoding_method='DUMMY_ENCODING') AS SELECT x1, x2, label FROM people")
    out = wh.sql("SELECT * FROM ML.ADVANCED_WEIGHTS(MODEL lg, STRUCT(TRUE AS standardize))").to_pylist()
    data = wh.sql("SELECT x1, x2 FROM people")
    x1, x2 = (data.column(c).to_numpy() for c in ("x1", "x2"))
    design = np.column_stack([(x1 - x1.mean()) / x1.std(ddof=1), (x2 - x2.mean()) / x2.std(ddof=1), np.ones(len(x1))])
    beta = np.array([r["weight"] for r in out])
    p = 1 / (1 + np.exp(-design @ beta))
    errors = np.sqrt(np.diag(np.linalg.inv(design.T @ (design * (p * (1 - p))[:, None]))))
    assert [r["standard_error"] for r in out] == pytest.approx(errors, rel=1e-9)


@pytest.mark.parametrize("options, lacking", [
    ("calculate_p_values=TRUE", "category_encoding_method='DUMMY_ENCODING'"),
    ("category_encoding_method='DUMMY_ENCODING'", "calculate_p_values=TRUE"),
    ("calculate_p_values=TRUE, category_encoding_method='DUMMY_ENCODING', l1_reg=1.0", "l1_reg=0"),
])
def test_advanced_weights_requirements(wh: Warehouse, options: str, lacking: str) -> None:
    wh.sql(f"CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y'], {options}) AS SELECT x1, color, y FROM people")
    with pytest.raises(ModelError, match=f"lacks: {lacking}"):
        wh.sql("SELECT * FROM ML.ADVANCED_WEIGHTS(MODEL m)")


def test_p_values_need_fewer_than_1000_features(wh: Warehouse) -> None:
    with pytest.raises(ModelError, match="calculate_p_values=TRUE needs fewer than 1,000 features after encoding"):
        wh.sql("CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y'], calculate_p_values=TRUE, data_split_method="
               "'NO_SPLIT', category_encoding_method='DUMMY_ENCODING') AS SELECT CAST(id AS STRING) AS key, color, y FROM people")


# ---- ML.TRANSFORM ----------------------------------------------------------------------------------------------
def test_ml_transform_applies_the_fitted_transform(wh: Warehouse) -> None:
    # the reference page's example, on penguin-like columns
    wh.sql("CREATE TABLE penguins AS SELECT kind AS species, color AS island, x1 AS culmen_length_mm, x2 AS flipper_length_mm, "
           "IF(id % 2 = 0, 'MALE', 'FEMALE') AS sex, x1 + x2 AS culmen_depth_mm, y + 100 AS body_mass_g FROM people")
    wh.sql("""CREATE OR REPLACE MODEL mymodel
      TRANSFORM(species, island, ML.MAX_ABS_SCALER(culmen_length_mm) OVER () AS culmen_length_mm,
        ML.MAX_ABS_SCALER(flipper_length_mm) OVER () AS flipper_length_mm, sex, body_mass_g)
      OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'])
    AS (SELECT * FROM penguins WHERE body_mass_g IS NOT NULL)""")
    out = wh.sql("SELECT * FROM ML.TRANSFORM(MODEL mymodel, TABLE penguins)")
    assert out.column_names[:6] == ["species", "island", "culmen_length_mm", "flipper_length_mm", "sex", "body_mass_g"]
    assert "culmen_depth_mm" in out.column_names  # an input column the TRANSFORM does not output is passed through
    # the statistics fitted on the training rows (80% of them: AUTO_SPLIT) are applied
    top = wh.model("mymodel").transform.columns[2][1]
    assert out.column("culmen_length_mm").to_pylist() == pytest.approx(
        [v / float(top.split("/ ")[1].split(",")[0].replace("COALESCE(NULLIF(", "")) for v in
         wh.sql("SELECT culmen_length_mm FROM penguins").column(0).to_pylist()])
    # rows to predict, without the label: the label's column is left out
    unlabeled = wh.sql("SELECT * FROM ML.TRANSFORM(MODEL mymodel, (SELECT * EXCEPT (body_mass_g) FROM penguins))")
    assert "body_mass_g" not in unlabeled.column_names and unlabeled.num_rows == 1000
    wh.sql("CREATE MODEL plain OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM people")
    with pytest.raises(ModelError, match="was created without a TRANSFORM clause"):
        wh.sql("SELECT * FROM ML.TRANSFORM(MODEL plain, TABLE people)")


# ---- random forests -----------------------------------------------------------------------------------------
def test_random_forest_options_and_defaults_are_bigquerys() -> None:
    options = resolve_options({"model_type": "random_forest_classifier"})
    assert {k: options[k] for k in ("num_parallel_tree", "max_tree_depth", "subsample", "colsample_bynode", "l2_reg",
                                    "min_tree_child_weight", "early_stop", "approx_global_feature_contrib")} == {
        "num_parallel_tree": 100, "max_tree_depth": 15, "subsample": 0.8, "colsample_bynode": 0.8, "l2_reg": 1.0,
        "min_tree_child_weight": 1, "early_stop": True, "approx_global_feature_contrib": False}
    explained = resolve_options({"model_type": "random_forest_regressor", "enable_global_explain": True})
    assert explained["approx_global_feature_contrib"] is True  # the default with >= 50 trees and global explain
    for raw, message in [({"num_parallel_tree": 1}, "at least 2"), ({"subsample": 1.0}, "less than 1"),
                         ({"max_iterations": 5}, "option 'max_iterations' is not valid"),
                         ({"learn_rate": 0.1}, "option 'learn_rate' is not valid"),
                         ({"booster_type": "DART"}, "option 'booster_type' is not valid")]:
        with pytest.raises(ModelError, match=message):
            resolve_options({"model_type": "random_forest_classifier", **raw})


def test_random_forest_is_xgboosts_random_forest_mode(wh: Warehouse) -> None:
    import xgboost as xgb

    wh.sql("CREATE MODEL rf OPTIONS(model_type='random_forest_classifier', input_label_cols=['label'], num_parallel_tree=30, "
           "max_tree_depth=6, data_split_method='NO_SPLIT', enable_global_explain=TRUE) AS SELECT x1, x2, color, label FROM people")
    data = wh.sql("SELECT x1, x2, color, label FROM people")
    codes = {"blue": 0, "green": 1, "red": 2}
    x = np.column_stack([data.column("x1"), data.column("x2"), [codes[c] for c in data.column("color").to_pylist()]])
    direct = xgb.XGBRFClassifier(n_estimators=30, max_depth=6, subsample=0.8, colsample_bynode=0.8, reg_lambda=1.0,
                                 tree_method="hist", random_state=0, n_jobs=2).fit(x, data.column("label").to_numpy())
    got = wh.sql("SELECT predicted_label_probs FROM ML.PREDICT(MODEL rf, (SELECT x1, x2, color FROM people))")
    np.testing.assert_allclose([r[1]["prob"] for r in got.column(0).to_pylist()], direct.predict_proba(x)[:, 1], atol=1e-6)
    model = wh.model("rf")
    assert model.estimator.booster.num_boosted_rounds() == 1 and len(model.estimator.booster.get_dump()) == 30
    info = wh.sql("SELECT * FROM ML.TRAINING_INFO(MODEL rf)").to_pylist()
    assert [r["iteration"] for r in info] == [0] and info[0]["learning_rate"] is None
    assert wh.sql("SELECT * FROM ML.EVALUATE(MODEL rf)").to_pylist()[0]["roc_auc"] > 0.9
    assert wh.sql("SELECT count(*) AS n FROM ML.FEATURE_IMPORTANCE(MODEL rf)").to_pylist() == [{"n": 3}]
    assert wh.sql("SELECT count(*) AS n FROM ML.GLOBAL_EXPLAIN(MODEL rf)").to_pylist() == [{"n": 3}]
    row = wh.sql("SELECT * FROM ML.EXPLAIN_PREDICT(MODEL rf, TABLE people)").to_pylist()[0]
    assert row["prediction_value"] == pytest.approx(row["baseline_prediction_value"] +
                                                    sum(a["attribution"] for a in row["top_feature_attributions"]))


def test_random_forest_regressor_with_instance_weights(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL rfr OPTIONS(model_type='random_forest_regressor', input_label_cols=['y'], num_parallel_tree=20, "
           "instance_weight_col='w') AS SELECT x1, x2, color, y, 1 + id % 2 AS w FROM people")
    assert wh.model("rfr").encoder.input_names == ["x1", "x2", "color"]
    assert wh.sql("SELECT * FROM ML.EVALUATE(MODEL rfr)").to_pylist()[0]["r2_score"] > 0.8
    with pytest.raises(ModelError, match="cannot be combined with auto_class_weights"):
        wh.sql("CREATE MODEL rfc OPTIONS(model_type='random_forest_classifier', input_label_cols=['label'], "
               "instance_weight_col='w', auto_class_weights=TRUE) AS SELECT x1, label, 1 AS w FROM people")
