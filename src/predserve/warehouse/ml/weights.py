"""ML.WEIGHTS and ML.ADVANCED_WEIGHTS for linear models.

Weights live in the encoded space, where numeric inputs are standardized; both functions
report them in the inputs' original units unless ``STRUCT(TRUE AS standardize)``: a numeric
weight is divided by the input's training standard deviation and the intercept absorbs the
means. Categories (one-hot columns) are not standardized, so their weights read the same
either way.

Standard errors (``calculate_p_values=TRUE``) are computed at CREATE MODEL on the training
rows (families/linear.py says how); p-values are ``2 * (1 - Phi(|weight| / standard_error))``,
the formula BigQuery ML's reference gives.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from predserve.errors import ModelError
from predserve.warehouse.models.features import CategoricalFeature, FeatureEncoder, NumericFeature
from predserve.warehouse.models.registry import spoken_list, where
from predserve.warehouse.models.trained import TrainedModel

INTERCEPT = "__INTERCEPT__"


def _check_weights(model: TrainedModel, function: str) -> None:
    name = function.removeprefix("ML.")
    if not model.kind.supports(name):
        supported = spoken_list([t.name for t in where(lambda t: t.supports(name))])
        raise ModelError(f"{function} supports {supported} models; {model.name} is {model.model_type}")


# ---- ML.WEIGHTS -------------------------------------------------------------------------------
def weights_table(model: TrainedModel, standardize: bool = False) -> pa.Table:
    """ML.WEIGHTS for linear models: one row per input plus __INTERCEPT__; for multiclass
    models one such set per class, with ``class_label``."""
    _check_weights(model, "ML.WEIGHTS")
    coef = np.atleast_2d(model.estimator.coef_)
    intercepts = np.atleast_1d(model.estimator.intercept_)
    multiclass = len(model.classes) > 2
    rows: list[dict[str, Any]] = []
    for index, (w, b) in enumerate(zip(coef, intercepts)):
        class_rows = _weight_rows(model.encoder, w, float(b), standardize)
        if multiclass:
            for row in class_rows:
                row["class_label"] = str(model.classes[index])
        rows.extend(class_rows)
    fields = [
        ("processed_input", pa.string()), ("weight", pa.float64()),
        ("category_weights", pa.list_(pa.struct([("category", pa.string()), ("weight", pa.float64())]))),
    ]
    if multiclass:
        fields.append(("class_label", pa.string()))
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


def _weight_rows(encoder: FeatureEncoder, w: np.ndarray, b: float, standardize: bool) -> list[dict[str, Any]]:
    """One weight vector as ML.WEIGHTS rows; numeric weights in original units unless ``standardize``."""
    rows: list[dict[str, Any]] = []
    for feature, part in _feature_parts(encoder, w):
        if isinstance(feature, NumericFeature):
            weight = float(part[0])
            if feature.standardize and not standardize:
                b -= weight * feature.mean / feature.stddev
                weight /= feature.stddev
            rows.append({"processed_input": feature.name, "weight": weight, "category_weights": []})
        else:
            cats = [{"category": name, "weight": float(v)} for name, v in zip(feature.category_names, part)]
            if isinstance(feature, CategoricalFeature) and feature.dropped is not None:
                cats[feature.dropped]["weight"] = 0.0  # DUMMY_ENCODING: the dropped category's column is always 0
            rows.append({"processed_input": feature.name, "weight": None, "category_weights": cats})
    rows.append({"processed_input": INTERCEPT, "weight": b, "category_weights": []})
    return rows


def _feature_parts(encoder: FeatureEncoder, values: np.ndarray) -> list[tuple[Any, np.ndarray]]:
    """``values`` (one per encoded column) cut into the processed features' blocks."""
    parts, pos = [], 0
    for feature in encoder.processed_features:
        width = len(feature.output_names)
        parts.append((feature, values[pos:pos + width]))
        pos += width
    return parts


# ---- ML.ADVANCED_WEIGHTS ----------------------------------------------------------------------------
def advanced_weights_table(model: TrainedModel, standardize: bool = False) -> pa.Table:
    """ML.ADVANCED_WEIGHTS: processed_input, category, weight, standard_error, p_value; one row
    per numeric input, per category, and __INTERCEPT__ (whose standard error and p-value are
    given only with ``standardize``, as BigQuery ML does)."""
    _check_weights(model, "ML.ADVANCED_WEIGHTS")
    options = model.options
    unmet = [what for what, ok in (
        ("binary (not multiclass) classes", not model.kind.classifies or len(model.classes) == 2),
        ("calculate_p_values=TRUE", bool(options.get("calculate_p_values"))),
        ("category_encoding_method='DUMMY_ENCODING'", options.get("category_encoding_method") == "DUMMY_ENCODING"),
        ("l1_reg=0", not options.get("l1_reg")),
    ) if not ok]
    if unmet:
        kinds = spoken_list([f"binary {t.name}" if t.classifies else t.name
                             for t in where(lambda t: t.supports("ADVANCED_WEIGHTS"))], "or")
        raise ModelError(f"ML.ADVANCED_WEIGHTS needs a {kinds} model trained with "
                         f"calculate_p_values=TRUE, category_encoding_method='DUMMY_ENCODING' and l1_reg=0; "
                         f"{model.name} lacks: {', '.join(unmet)}")
    errors = model.estimator.standard_errors
    if errors is None:
        raise ModelError(f"model {model.name} was stored without standard errors; re-create it with CREATE OR REPLACE MODEL")
    w, b = np.atleast_2d(model.estimator.coef_)[0], float(np.atleast_1d(model.estimator.intercept_)[0])
    rows: list[dict[str, Any]] = []
    for (feature, part), (_, part_errors) in zip(_feature_parts(model.encoder, w), _feature_parts(model.encoder, errors[:-1])):
        if isinstance(feature, NumericFeature):
            weight, error = float(part[0]), float(part_errors[0])
            if feature.standardize and not standardize:
                b -= weight * feature.mean / feature.stddev
                weight, error = weight / feature.stddev, error / feature.stddev
            rows.append(_advanced_row(feature.name, None, weight, error))
        else:
            for category, value, error in zip(feature.category_names, part, part_errors):
                rows.append(_advanced_row(feature.name, category, float(value), float(error)))
    intercept_error = float(errors[-1]) if standardize else float("nan")
    rows.append(_advanced_row(INTERCEPT, None, b, intercept_error))
    schema = pa.schema([("processed_input", pa.string()), ("category", pa.string()), ("weight", pa.float64()),
                        ("standard_error", pa.float64()), ("p_value", pa.float64())])
    return pa.Table.from_pylist(rows, schema=schema)


def _advanced_row(name: str, category: str | None, weight: float, error: float) -> dict[str, Any]:
    if not np.isfinite(error):  # the dropped category, or the intercept in original units
        return {"processed_input": name, "category": category, "weight": weight, "standard_error": None, "p_value": None}
    from scipy.stats import norm  # here, not at import: scipy.stats alone costs 0.4 s of every start

    p_value = float(2 * norm.sf(abs(weight) / error)) if error > 0 else (0.0 if weight else 1.0)
    return {"processed_input": name, "category": category, "weight": weight, "standard_error": error, "p_value": p_value}
