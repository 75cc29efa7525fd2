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

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from predserve.errors import ModelError
from predserve.warehouse.storage import StoredModelError, array_field, array_to_data, list_field

if TYPE_CHECKING:
    from predserve.warehouse.models import TrainedModel

TOP_CLASS_FEATURES = 10  # ML.GLOBAL_EXPLAIN with class_level_explain: the top features of each class
ATTRIBUTIONS = pa.list_(pa.struct([("feature", pa.string()), ("attribution", pa.float64())]))


def _explainable(model: "TrainedModel", function: str) -> None:
    if model.model_type == "kmeans":
        raise ModelError(f"{function} explains supervised models (linear, logistic, boosted tree, random forest); "
                         f"{model.name} is kmeans")


def feature_names(model: "TrainedModel") -> list[str]:
    return [f.name for f in model.encoder.features]


def _feature_starts(model: "TrainedModel") -> np.ndarray:
    """The first encoded column of each input feature (features are contiguous blocks)."""
    widths = [len(f.output_names) for f in model.encoder.features]
    return np.cumsum([0] + widths[:-1]).astype(np.int64)


def contributions(model: "TrainedModel", x: np.ndarray, target: np.ndarray | None,
                  approx: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(attributions (rows, input features), baseline (rows,)) toward each row's ``target``
    class (None for regression)."""
    from predserve.warehouse.models import TREE_MODELS

    n = len(x)
    if not n:
        return np.zeros((0, len(model.encoder.features))), np.zeros(0)
    if model.model_type in TREE_MODELS:
        import xgboost as xgb

        raw = np.asarray(model.estimator.booster.predict(xgb.DMatrix(x, missing=np.nan), pred_contribs=True,
                                                         approx_contribs=approx, validate_features=False), dtype=np.float64)
        if raw.ndim == 3:  # multiclass: (rows, classes, features + 1)
            raw = raw[np.arange(n), target]
        columns, baseline = raw[:, :-1], raw[:, -1]
    else:
        coef = np.atleast_2d(model.estimator.coef_)
        intercept = np.atleast_1d(model.estimator.intercept_)
        row = target if len(coef) > 1 else np.zeros(n, dtype=np.int64)  # one row of weights per class when multiclass
        columns, baseline = x * coef[row], intercept[row].astype(np.float64)
    grouped = np.add.reduceat(columns, _feature_starts(model), axis=1)
    if target is not None and len(model.classes) == 2:  # the negative class's log-odds are the positive's, negated
        sign = np.where(target == 0, -1.0, 1.0)
        grouped, baseline = grouped * sign[:, None], baseline * sign
    return grouped, baseline


# ---- ML.EXPLAIN_PREDICT ------------------------------------------------------------------------------
def explain_batch(model: "TrainedModel", batch: pa.RecordBatch, threshold: float | None, top_k: int,
                  approx: bool) -> pa.RecordBatch:
    """predicted_<label>, probability (classifiers), top_feature_attributions,
    baseline_prediction_value, prediction_value, approximation_error, then the input columns."""
    from predserve.warehouse.metrics import predicted_classes
    from predserve.warehouse.models import CLASSIFIERS, with_input_columns

    _explainable(model, "ML.EXPLAIN_PREDICT")
    x = model.encoder.encode(model._features(batch))
    n = len(x)
    columns: list[pa.Array] = []
    names: list[str] = [model.output_prefix]
    if model.model_type in CLASSIFIERS:
        probs = np.asarray(model.estimator.predict_proba(x), dtype=np.float64) if n else np.zeros((0, len(model.classes)))
        target = predicted_classes(probs, threshold)
        columns += [pa.array(model.classes, type=model.label_type).take(pa.array(target)),
                    pa.array(probs[np.arange(n), target])]
        names.append("probability")
        attributions, baseline = contributions(model, x, target, approx)
        value = baseline + attributions.sum(axis=1)
    else:
        predicted = np.asarray(model.estimator.predict(x), dtype=np.float64) if n else np.zeros(0)
        columns.append(pa.array(predicted))
        attributions, baseline = contributions(model, x, None, approx)
        value = predicted
    k = min(top_k, attributions.shape[1])
    order = np.argsort(-np.abs(attributions), axis=1, kind="stable")[:, :k]
    entries = pa.StructArray.from_arrays(
        [pa.array(np.asarray(feature_names(model), dtype=object)[order].ravel(), pa.string()),
         pa.array(np.take_along_axis(attributions, order, axis=1).ravel(), pa.float64())],
        names=["feature", "attribution"])
    columns += [pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32)), entries),
                pa.array(baseline, pa.float64()), pa.array(value, pa.float64()), pa.array(np.zeros(n))]
    names += ["top_feature_attributions", "baseline_prediction_value", "prediction_value", "approximation_error"]
    return with_input_columns(columns, names, batch)


# ---- ML.GLOBAL_EXPLAIN ------------------------------------------------------------------------------
@dataclass
class GlobalExplanation:
    """Mean absolute attributions over the evaluation rows, kept at CREATE MODEL."""

    features: list[str]
    overall: np.ndarray  # (features,): toward each row's predicted class (or the regression value)
    by_class: np.ndarray | None  # (classes, features): toward each class's logit; None for regression

    def to_data(self) -> dict[str, Any]:
        return {"features": self.features, "overall": array_to_data(self.overall),
                "by_class": array_to_data(self.by_class) if self.by_class is not None else None}

    @classmethod
    def from_data(cls, data: dict[str, Any], num_classes: int) -> "GlobalExplanation":
        features = list_field(data, "features")
        overall = array_field(data, "overall", 1)
        by_class = array_field(data, "by_class", 2) if data.get("by_class") is not None else None
        if not all(isinstance(f, str) for f in features) or overall.shape != (len(features),) or (
                by_class is not None and by_class.shape != (num_classes, len(features))):
            raise StoredModelError("the stored global explanation does not match its features and classes")
        return cls(features, overall.astype(np.float64), None if by_class is None else by_class.astype(np.float64))


def global_explanation(model: "TrainedModel", x: np.ndarray) -> GlobalExplanation:
    """The explanation ML.GLOBAL_EXPLAIN reports, from the evaluation rows ``x`` (encoded)."""
    from predserve.warehouse.metrics import predicted_classes
    from predserve.warehouse.models import CLASSIFIERS

    _explainable(model, "enable_global_explain")
    approx = bool(model.options.get("approx_global_feature_contrib"))
    if model.model_type not in CLASSIFIERS:
        attributions, _ = contributions(model, x, None, approx)
        return GlobalExplanation(feature_names(model), np.abs(attributions).mean(axis=0), None)
    target = predicted_classes(np.asarray(model.estimator.predict_proba(x), dtype=np.float64))
    overall = np.abs(contributions(model, x, target, approx)[0]).mean(axis=0)
    by_class = np.vstack([np.abs(contributions(model, x, np.full(len(x), c), approx)[0]).mean(axis=0)
                          for c in range(len(model.classes))])
    return GlobalExplanation(feature_names(model), overall, by_class)


def global_explain_table(model: "TrainedModel", class_level: bool) -> pa.Table:
    """feature, attribution (most important first); with ``class_level`` for a classifier,
    class_label, feature, attribution: the top 10 features of each class."""
    _explainable(model, "ML.GLOBAL_EXPLAIN")
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
def feature_importance_table(model: "TrainedModel") -> pa.Table:
    """feature, importance_weight, importance_gain, importance_cover for tree models."""
    from predserve.warehouse.models import TREE_MODELS

    if model.model_type not in TREE_MODELS:
        raise ModelError(f"ML.FEATURE_IMPORTANCE supports boosted tree and random forest models; {model.name} is {model.model_type}")
    booster = model.estimator.booster
    splits = booster.get_score(importance_type="weight")
    gains = booster.get_score(importance_type="total_gain")
    covers = booster.get_score(importance_type="total_cover")
    starts = list(_feature_starts(model)) + [len(model.encoder.output_names)]
    totals: dict[str, np.ndarray] = {}  # feature -> [splits, total gain, total cover]
    for index, feature in enumerate(feature_names(model)):
        keys = [f"f{i}" for i in range(starts[index], starts[index + 1])]
        totals[feature] = np.array([sum(d.get(key, 0.0) for key in keys) for d in (splits, gains, covers)], dtype=np.float64)
    if model.transform is not None:
        totals = _before_transform(model, totals)
    rows = [{"feature": name, "importance_weight": t[0], "importance_gain": t[1] / t[0] if t[0] else 0.0,
             "importance_cover": t[2] / t[0] if t[0] else 0.0} for name, t in totals.items()]
    schema = pa.schema([("feature", pa.string()), ("importance_weight", pa.float64()), ("importance_gain", pa.float64()),
                        ("importance_cover", pa.float64())])
    return pa.Table.from_pylist(rows, schema=schema)


def _before_transform(model: "TrainedModel", totals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
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
