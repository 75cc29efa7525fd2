"""Explanations: ML.EXPLAIN_PREDICT, ML.GLOBAL_EXPLAIN and ML.FEATURE_IMPORTANCE.

Attributions are exact and add up: ``baseline_prediction_value + sum(attributions) =
prediction_value``, as BigQuery ML's Explainable AI overview defines them:

- linear and logistic regression: Shapley values, ``weight * feature value`` in the model's
  encoded space (numeric features standardized), the baseline being the intercept;
- boosted trees and random forests: tree SHAP, computed by XGBoost from the Booster
  (``pred_contribs``; Saabas's approximate contributions with ``approx_feature_contrib``),
  the baseline being XGBoost's bias term, the expected output over the training data.

A classifier's attributions explain the predicted class's log-odds (its logit): for a binary
model the positive class's margin, negated when the negative class is predicted. An input
column's attribution is the sum over the encoded columns it became (a category's one-hot
columns, a TIMESTAMP's parts); with TRANSFORM, the features are the TRANSFORM's outputs.

ML.GLOBAL_EXPLAIN is the mean absolute attribution over the evaluation rows (the training rows
without a split), computed at CREATE MODEL when ``enable_global_explain`` is TRUE and stored
with the model (``GlobalExplanation``): per feature for the predicted classes, and per class
toward that class's logit.

ML.FEATURE_IMPORTANCE reads XGBoost's split statistics: ``importance_weight`` the number of
splits on the feature, ``importance_gain`` and ``importance_cover`` their average gain and
cover. With TRANSFORM it reports the query's columns before the TRANSFORM, as BigQuery ML
does: a split on a TRANSFORM output counts for every input column that output reads.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from predserve.errors import ModelError
from predserve.warehouse.models.explanation import check_explainable, feature_names, feature_starts
from predserve.warehouse.models.metrics import predicted_classes
from predserve.warehouse.models.trained import TrainedModel, with_input_columns

TOP_CLASS_FEATURES = 10  # ML.GLOBAL_EXPLAIN with class_level_explain: the top features of each class
ATTRIBUTIONS = pa.list_(pa.struct([("feature", pa.string()), ("attribution", pa.float64())]))


# ---- ML.EXPLAIN_PREDICT ------------------------------------------------------------------------------
def explain_batch(model: TrainedModel, batch: pa.RecordBatch, threshold: float | None, top_k: int,
                  approx: bool) -> pa.RecordBatch:
    """predicted_<label>, probability (classifiers), top_feature_attributions,
    baseline_prediction_value, prediction_value, approximation_error, then the input columns."""
    check_explainable(model.kind, model.name, "ML.EXPLAIN_PREDICT")
    x = model.encoder.encode(model._features(batch))
    n = len(x)
    columns: list[pa.Array] = []
    names: list[str] = [model.output_prefix]
    if model.kind.classifies:
        probs = np.asarray(model.estimator.predict_proba(x), dtype=np.float64) if n else np.zeros((0, len(model.classes)))
        target = predicted_classes(probs, threshold)
        columns += [pa.array(model.classes, type=model.label_type).take(pa.array(target)),
                    pa.array(probs[np.arange(n), target])]
        names.append("probability")
        attributions, baseline = model.contributions(x, target, approx)
        value = baseline + attributions.sum(axis=1)
    else:
        predicted = np.asarray(model.estimator.predict(x), dtype=np.float64) if n else np.zeros(0)
        columns.append(pa.array(predicted))
        attributions, baseline = model.contributions(x, None, approx)
        value = predicted
    k = min(top_k, attributions.shape[1])
    order = np.argsort(-np.abs(attributions), axis=1, kind="stable")[:, :k]
    entries = pa.StructArray.from_arrays(
        [pa.array(np.asarray(feature_names(model.encoder), dtype=object)[order].ravel(), pa.string()),
         pa.array(np.take_along_axis(attributions, order, axis=1).ravel(), pa.float64())],
        names=["feature", "attribution"])
    columns += [pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32)), entries),
                pa.array(baseline, pa.float64()), pa.array(value, pa.float64()), pa.array(np.zeros(n))]
    names += ["top_feature_attributions", "baseline_prediction_value", "prediction_value", "approximation_error"]
    return with_input_columns(columns, names, batch)


# ---- ML.GLOBAL_EXPLAIN ------------------------------------------------------------------------------
def global_explain_table(model: TrainedModel, class_level: bool) -> pa.Table:
    """feature, attribution (most important first); with ``class_level`` for a classifier,
    class_label, feature, attribution: the top 10 features of each class."""
    check_explainable(model.kind, model.name, "ML.GLOBAL_EXPLAIN")
    explanation = model.global_explanation
    if explanation is None:
        reason = "enable_global_explain=TRUE" if not model.options.get("enable_global_explain") else \
            "enable_global_explain=TRUE by this predserve version"
        raise ModelError(f"ML.GLOBAL_EXPLAIN needs a model trained with {reason}; re-create {model.name} with "
                         "CREATE OR REPLACE MODEL ... OPTIONS(..., enable_global_explain=TRUE)")
    names = np.asarray(explanation.features, dtype=object)
    if not class_level or explanation.by_class is None:
        order = np.argsort(-explanation.overall, kind="stable")
        return pa.table({"feature": pa.array(names[order], pa.string()), "attribution": pa.array(explanation.overall[order])})
    labels, features, values = [], [], []
    for label, row in zip(model.classes, explanation.by_class):
        order = np.argsort(-row, kind="stable")[:TOP_CLASS_FEATURES]
        labels += [str(label)] * len(order)
        features += names[order].tolist()
        values += row[order].tolist()
    return pa.table({"class_label": pa.array(labels, pa.string()), "feature": pa.array(features, pa.string()),
                     "attribution": pa.array(values, pa.float64())})


# ---- ML.FEATURE_IMPORTANCE ---------------------------------------------------------------------------
def feature_importance_table(model: TrainedModel) -> pa.Table:
    """feature, importance_weight, importance_gain, importance_cover for tree models."""
    if not model.kind.supports("FEATURE_IMPORTANCE"):
        raise ModelError(f"ML.FEATURE_IMPORTANCE supports boosted tree and random forest models; {model.name} is {model.model_type}")
    booster = model.estimator.booster
    splits = booster.get_score(importance_type="weight")
    gains = booster.get_score(importance_type="total_gain")
    covers = booster.get_score(importance_type="total_cover")
    starts = list(feature_starts(model.encoder)) + [len(model.encoder.output_names)]
    totals: dict[str, np.ndarray] = {}  # feature -> [splits, total gain, total cover]
    for index, feature in enumerate(feature_names(model.encoder)):
        keys = [f"f{i}" for i in range(starts[index], starts[index + 1])]
        totals[feature] = np.array([sum(d.get(key, 0.0) for key in keys) for d in (splits, gains, covers)], dtype=np.float64)
    if model.transform is not None:
        totals = _before_transform(model, totals)
    rows = [{"feature": name, "importance_weight": t[0], "importance_gain": t[1] / t[0] if t[0] else 0.0,
             "importance_cover": t[2] / t[0] if t[0] else 0.0} for name, t in totals.items()]
    schema = pa.schema([("feature", pa.string()), ("importance_weight", pa.float64()), ("importance_gain", pa.float64()),
                        ("importance_cover", pa.float64())])
    return pa.Table.from_pylist(rows, schema=schema)


def _before_transform(model: TrainedModel, totals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Totals per TRANSFORM output -> per query column it reads (in the query's column order)."""
    sources = model.transform.source_columns()
    inputs = [row["input"] for row in model.feature_info]
    out = {name: np.zeros(3) for name in inputs}
    for feature, total in totals.items():
        output = model.transform.output_of(feature)
        for column in sources.get(output, []):
            key = next((name for name in inputs if name.lower() == column.lower()), None)
            if key is not None:
                out[key] = out[key] + total
    return out
