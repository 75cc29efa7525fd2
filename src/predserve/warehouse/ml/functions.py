"""The ML table functions' handlers: one function per node type of dialect.ML_TABLE_FUNCTIONS.

A handler gets an ``MLCall`` (the model, the checked STRUCT settings, the input rows on
demand) and returns what DuckDB reads as a table: a ``pyarrow.Table``, or for ML.PREDICT a
``RecordBatchReader`` that scores one batch at a time, so prediction streams.

Adding an ML table function: a row in dialect.ML_TABLE_FUNCTIONS (its syntax), a handler
here and its row in HANDLERS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlglot.expressions as exp

from predserve.errors import ModelError, PredserveError, SQLError
from predserve.warehouse.ml import explain
from predserve.warehouse.ml.weights import advanced_weights_table, weights_table
from predserve.warehouse.models import metrics
from predserve.warehouse.models.families import arima_plus, matrix_factorization
from predserve.warehouse.models.families.kmeans import centroids_table
from predserve.warehouse.models.registry import spoken_list, where
from predserve.warehouse.models.trained import TrainedModel, with_input_columns
from predserve.warehouse.sql.dialect import ML_TABLE_FUNCTIONS
from predserve.warehouse.sql.messages import engine_message

Relation = pa.Table | pa.RecordBatchReader

# STRUCT settings BigQuery has for features predserve does not offer: named, not "unknown".
UNSUPPORTED_SETTINGS = {
    "trial_id": "hyperparameter tuning",
    "keep_original_columns": "PCA and autoencoder models (predserve's ML.PREDICT always passes the input columns through)",
    "integrated_gradients_num_steps": "DNN models", "max_output_tokens": "remote (LLM) models",
}
DEFAULT_TOP_K_FEATURES = 5


@dataclass
class MLCall:
    function: str  # PREDICT, EVALUATE, ...
    model: TrainedModel
    settings: dict[str, Any]
    rows: Callable[[], pa.RecordBatchReader] | None  # the input rows, read when called
    failures: list[PredserveError] = field(default_factory=list)  # raised while DuckDB pulls batches
    thresholds: list[float] | None = None  # ML.ROC_CURVE's GENERATE_ARRAY(...)

    @property
    def label(self) -> str:
        return f"ML.{self.function}(MODEL {self.model.name})"


# ---- settings ----------------------------------------------------------------------------------
def read_settings(function: str, struct: exp.Expression | None,
                  evaluate: Callable[[list[exp.Expression]], list[Any]]) -> dict[str, Any]:
    """The STRUCT(value AS name, ...) argument, checked against the function's signature."""
    if struct is None:
        return {}
    allowed = ML_TABLE_FUNCTIONS[function].settings
    if not isinstance(struct, exp.Struct):
        raise SQLError(f"ML.{function}: the settings must be STRUCT(value AS name, ...), got {struct.sql('bigquery')}")
    names, values = [], []
    for item in struct.expressions:
        if not isinstance(item, exp.PropertyEQ):
            raise SQLError(f"ML.{function}: STRUCT field {item.sql('bigquery')} needs a name, e.g. STRUCT(0.5 AS threshold)")
        name = item.this.name.lower()
        if name in UNSUPPORTED_SETTINGS and name not in allowed:
            raise SQLError(f"ML.{function}: {name} belongs to BigQuery ML's {UNSUPPORTED_SETTINGS[name]}, which predserve does not offer")
        if name not in allowed:
            accepted = ", ".join(allowed) or "no settings"
            raise SQLError(f"ML.{function} has no setting {name!r}; it accepts {accepted}")
        if name in names:
            raise SQLError(f"ML.{function}: setting {name} is given twice")
        names.append(name)
        values.append(item.expression)
    settings = {}
    for name, value in zip(names, evaluate(values)):
        kind = allowed[name]
        if kind is float and isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            expected = {float: "a number", int: "an integer", bool: "TRUE or FALSE"}[kind]
            raise SQLError(f"ML.{function}: setting {name} must be {expected}, got {value!r}")
        settings[name] = value
    return settings


def _threshold(call: MLCall) -> float | None:
    """STRUCT(t AS threshold): binary classification models only, as BigQuery ML allows."""
    threshold = call.settings.get("threshold")
    if threshold is None:
        return None
    model = call.model
    if not model.kind.classifies or len(model.classes) != 2:
        kind = model.model_type if not model.kind.classifies else f"{model.model_type} with {len(model.classes)} classes"
        raise ModelError(f"{call.label}: STRUCT(... AS threshold) applies to binary classification models only; "
                         f"{model.name} is {kind}")
    if not 0.0 <= threshold <= 1.0:
        raise ModelError(f"{call.label}: threshold must be between 0 and 1, got {threshold}")
    return threshold


def _supporting(function: str) -> str:
    """The model types ML.<function> applies to, as a message lists them."""
    return spoken_list([t.name for t in where(lambda t: t.supports(function))], "or")


# ---- handlers -----------------------------------------------------------------------------------
def _streamed(call: MLCall, score: Callable[[pa.RecordBatch], pa.RecordBatch]) -> pa.RecordBatchReader:
    """The input rows scored batch by batch as DuckDB pulls them; errors are kept in
    ``call.failures``, since DuckDB reports them in its own words."""
    assert call.rows is not None
    source = call.rows()
    _check_input_types(call, source.schema)
    try:
        schema = score(pa.RecordBatch.from_pylist([], schema=source.schema)).schema
    except pa.ArrowException as exc:
        raise ModelError(f"{call.label}: the input rows cannot be scored: {engine_message(exc)}") from None

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in source:
            try:
                yield score(batch)
            except PredserveError as exc:
                call.failures.append(exc)
                raise
            except pa.ArrowException as exc:
                call.failures.append(ModelError(f"{call.label}: the input rows cannot be scored: {engine_message(exc)}"))
                raise

    return pa.RecordBatchReader.from_batches(schema, batches())


def predict(call: MLCall) -> pa.RecordBatchReader:
    threshold = _threshold(call)
    return _streamed(call, lambda batch: call.model.predict_batch(batch, threshold))


def explain_predict(call: MLCall) -> pa.RecordBatchReader:
    threshold = _threshold(call)
    top_k = call.settings.get("top_k_features", DEFAULT_TOP_K_FEATURES)
    if top_k < 1:
        raise ModelError(f"{call.label}: top_k_features must be at least 1, got {top_k}")
    approx = bool(call.settings.get("approx_feature_contrib", False))
    return _streamed(call, lambda batch: explain.explain_batch(call.model, batch, threshold, top_k, approx))


def detect_anomalies(call: MLCall) -> Relation:
    """k-means: is_anomaly, normalized_distance, centroid_id, then the input columns. ARIMA_PLUS:
    the training points, or the input's, against the model (arima_plus.py)."""
    model = call.model
    if not model.kind.supports("DETECT_ANOMALIES"):
        raise ModelError(f"{call.label}: predserve detects anomalies with {_supporting('DETECT_ANOMALIES')} models; "
                         f"{model.name} is {model.model_type} "
                         "(BigQuery ML also uses PCA and autoencoder models, which predserve does not train)")
    if model.kind.task == "forecasting":
        if "contamination" in call.settings:
            raise ModelError(f"{call.label}: an ARIMA_PLUS model takes STRUCT(p AS anomaly_prob_threshold), not contamination")
        return arima_plus.detect_anomalies_table(model.estimator, model.options, call.settings,
                                                 _input_table(call) if call.rows is not None else None)
    if "anomaly_prob_threshold" in call.settings:
        raise ModelError(f"{call.label}: anomaly_prob_threshold applies to ARIMA_PLUS models; a {model.model_type} "
                         "model takes STRUCT(value AS contamination)")
    if call.rows is None:
        raise ModelError(f"{call.label}: a {model.model_type} model needs the rows to judge, "
                         "ML.DETECT_ANOMALIES(MODEL m, STRUCT(0.02 AS contamination), TABLE t)")
    contamination = call.settings.get("contamination")
    if contamination is None:
        raise ModelError(f"{call.label}: a {model.model_type} model needs STRUCT(value AS contamination), the share of anomalies in the "
                         "training data, e.g. ML.DETECT_ANOMALIES(MODEL m, STRUCT(0.02 AS contamination), TABLE t)")
    if not 0.0 <= contamination <= 0.5:
        raise ModelError(f"{call.label}: contamination must be between 0 and 0.5, got {contamination}")
    model.estimator.normalized_distances(np.zeros((0, len(model.encoder.output_names))))  # refuses a model stored without them
    cutoff = model.estimator.anomaly_cutoff(contamination)
    return _streamed(call, lambda batch: anomalies_batch(model, batch, cutoff))


def anomalies_batch(model: TrainedModel, batch: pa.RecordBatch, cutoff: float) -> pa.RecordBatch:
    """is_anomaly (normalized distance above ``cutoff``), normalized_distance, centroid_id, then the input columns."""
    distance, nearest = model.estimator.normalized_distances(model.encoder.encode(model._features(batch)))
    columns = [pa.array(distance > cutoff, pa.bool_()), pa.array(distance, pa.float64()), pa.array(nearest + 1, pa.int64())]
    return with_input_columns(columns, ["is_anomaly", "normalized_distance", "centroid_id"], batch)


def evaluate(call: MLCall) -> pa.Table:
    kind = call.model.kind
    series_settings = {"perform_aggregation", "horizon", "confidence_level"} & set(call.settings)
    if series_settings and kind.task != "forecasting":
        raise ModelError(f"{call.label}: {', '.join(sorted(series_settings))} apply to ARIMA_PLUS models")
    if kind.evaluate_rows is not None:
        if "threshold" in call.settings:
            raise ModelError(f"{call.label}: a threshold applies to binary classification models only")
        if call.rows is None:
            return arima_plus.arima_evaluate_table(call.model.estimator, {}) if kind.task == "forecasting" \
                else call.model.evaluation_table()
        return kind.evaluate_rows(call.model.estimator, call.model.options, _input_table(call), call.settings)
    threshold = _threshold(call)
    if call.rows is None:
        if threshold is not None:
            raise ModelError(f"{call.label}: a threshold needs the evaluation rows, ML.EVALUATE(MODEL {call.model.name}, "
                             "TABLE t | (query), STRUCT(... AS threshold)); the stored evaluation uses 0.5")
        return call.model.evaluation_table()
    table = call.rows().read_all()
    _check_input_types(call, table.schema)
    return pa.Table.from_pylist([call.model.evaluate(table, threshold)])


def _classifier_for(call: MLCall, binary: bool = False) -> None:
    model = call.model
    if not model.kind.classifies or (binary and len(model.classes) != 2):
        kind = "binary classification" if binary else "classification"
        actual = model.model_type if not model.kind.classifies else f"{model.model_type} with {len(model.classes)} classes"
        raise ModelError(f"{call.label} evaluates {kind} models; {model.name} is {actual}")


def _evaluation_rows(call: MLCall) -> tuple[np.ndarray, np.ndarray, pa.ChunkedArray]:
    """The input rows' (true class index, class probabilities, label column), NULL labels left out."""
    model = call.model
    raw = call.rows().read_all()
    _check_input_types(call, raw.schema)
    if model.transform is not None and model.label not in model.transform.output_names:
        raise ModelError(f"{call.label}: the TRANSFORM of model {model.name} does not output the label {model.label!r}")
    table = model._features(raw, with_label=True)
    if model.label not in table.schema.names:
        raise ModelError(f"{call.label}: the input needs the label column {model.label!r}")
    table = table.filter(pc.is_valid(table.column(model.label)))
    probs = model.estimator.predict_proba(model.encoder.encode(table)) if table.num_rows else np.zeros((0, len(model.classes)))
    labels = table.column(model.label)
    return model.label_indices(labels, strict=False), np.asarray(probs, dtype=np.float64), labels


def confusion_matrix(call: MLCall) -> pa.Table:
    """expected_label, then one column of counts per class, named after the class."""
    _classifier_for(call)
    model = call.model
    threshold = _threshold(call)
    if call.rows is None:
        if threshold is not None:
            raise ModelError(f"{call.label}: a threshold needs the evaluation rows, ML.CONFUSION_MATRIX(MODEL {model.name}, "
                             "TABLE t | (query), STRUCT(... AS threshold))")
        counts = _stored_evaluation(call).confusion
        present = counts.sum(axis=1) > 0
        expected = pa.array(model.classes, type=model.label_type).filter(pa.array(present))
        counts = counts[present]
    else:
        y, probs, labels = _evaluation_rows(call)
        predicted = metrics.predicted_classes(probs, threshold)
        expected = pc.unique(labels).sort()
        row = pc.index_in(labels, value_set=expected).to_numpy(zero_copy_only=False)
        k = len(model.classes)
        counts = np.bincount(row * k + predicted, minlength=len(expected) * k).reshape(len(expected), k)
    columns = {"expected_label": expected}
    for name, column in zip(_column_names(model.classes), counts.T):
        columns[name] = pa.array(column, pa.int64())
    return pa.table(columns)


def _stored_evaluation(call: MLCall) -> metrics.StoredEvaluation:
    """What CREATE MODEL kept of the evaluation rows, for a call without input rows."""
    if call.model.stored_evaluation is None:
        raise ModelError(f"{call.label}: model {call.model.name} was stored before ML.{call.function} existed; pass the "
                         "evaluation rows, or re-create it with CREATE OR REPLACE MODEL")
    return call.model.stored_evaluation


def _column_names(labels: list[Any]) -> list[str]:
    """Class labels as BigQuery column names: invalid characters become _, a leading digit gets
    a _ before it (labels 0 and 1 give _0 and _1), repeats get _1, _2, ... after them."""
    names: list[str] = []
    for label in labels:
        name = re.sub(r"[^A-Za-z0-9_]", "_", str(label).lower() if isinstance(label, bool) else str(label))
        if not name or name[0].isdigit():
            name = "_" + name
        base, suffix = name, 1
        while name.lower() in {n.lower() for n in [*names, "expected_label"]}:
            name, suffix = f"{base}_{suffix}", suffix + 1
        names.append(name)
    return names


def roc_curve(call: MLCall) -> pa.Table:
    """threshold, recall, false_positive_rate, true_positives, false_positives, true_negatives, false_negatives."""
    _classifier_for(call, binary=True)
    model = call.model
    if call.rows is None:
        if call.thresholds is not None:
            raise ModelError(f"{call.label}: thresholds need the evaluation rows, ML.ROC_CURVE(MODEL {model.name}, "
                             "TABLE t | (query), GENERATE_ARRAY(...))")
        rows = _stored_evaluation(call).roc
    else:
        y, probs, _ = _evaluation_rows(call)
        known = y >= 0
        y, positive = y[known], probs[known, 1]
        thresholds = np.asarray(call.thresholds, dtype=np.float64) if call.thresholds is not None else None
        rows = metrics.roc_curve((y == 1).astype(np.int64), positive, thresholds)
    schema = pa.schema([("threshold", pa.float64()), ("recall", pa.float64()), ("false_positive_rate", pa.float64()),
                        ("true_positives", pa.int64()), ("false_positives", pa.int64()), ("true_negatives", pa.int64()),
                        ("false_negatives", pa.int64())])
    return pa.Table.from_pylist(rows, schema=schema)


def training_info(call: MLCall) -> pa.Table:
    return pa.Table.from_pylist([{"training_run": 0, **row} for row in call.model.training_info])  # older models lack training_run


def feature_info(call: MLCall) -> pa.Table:
    return pa.Table.from_pylist(call.model.feature_info)


def weights(call: MLCall) -> pa.Table:
    if call.model.kind.task == "recommendation":
        return matrix_factorization.weights_table(call.model.estimator, call.model.options)
    return weights_table(call.model, standardize=bool(call.settings.get("standardize", False)))


def advanced_weights(call: MLCall) -> pa.Table:
    return advanced_weights_table(call.model, standardize=bool(call.settings.get("standardize", False)))


def centroids(call: MLCall) -> pa.Table:
    if not call.model.kind.supports("CENTROIDS"):
        raise ModelError(f"{call.label} describes {_supporting('CENTROIDS')} models; {call.model.name} is {call.model.model_type}")
    return centroids_table(call.model.encoder, call.model.estimator, bool(call.settings.get("standardize", False)))


def feature_importance(call: MLCall) -> pa.Table:
    return explain.feature_importance_table(call.model)


def global_explain(call: MLCall) -> pa.Table:
    return explain.global_explain_table(call.model, bool(call.settings.get("class_level_explain", False)))


def _input_table(call: MLCall) -> pa.Table:
    assert call.rows is not None
    return call.rows().read_all()


def _requires(call: MLCall, function: str) -> None:
    if not call.model.kind.supports(function):
        raise ModelError(f"{call.label} applies to {_supporting(function)} models; {call.model.name} is {call.model.model_type}")


def recommend(call: MLCall) -> Relation:
    """Every user-item pair, or the input's users, items or pairs (matrix_factorization.py)."""
    _requires(call, "RECOMMEND")
    model = call.model
    if call.rows is None:
        return matrix_factorization.recommend_all(model.estimator, model.options)
    return matrix_factorization.recommend_rows(model.estimator, model.options, _input_table(call))


def forecast(call: MLCall) -> pa.Table:
    _requires(call, "FORECAST")
    return arima_plus.forecast_table(call.model.estimator, call.settings)


def explain_forecast(call: MLCall) -> pa.Table:
    _requires(call, "EXPLAIN_FORECAST")
    return arima_plus.explain_forecast_table(call.model.estimator, call.model.options, call.settings)


def arima_evaluate(call: MLCall) -> pa.Table:
    _requires(call, "ARIMA_EVALUATE")
    return arima_plus.arima_evaluate_table(call.model.estimator, call.settings)


def arima_coefficients(call: MLCall) -> pa.Table:
    _requires(call, "ARIMA_COEFFICIENTS")
    return arima_plus.arima_coefficients_table(call.model.estimator)


def transform(call: MLCall) -> pa.Table:
    """The TRANSFORM clause's columns for the input rows (with its fitted statistics), then the
    input columns it does not output."""
    model = call.model
    if model.transform is None:
        raise ModelError(f"{call.label}: model {model.name} was created without a TRANSFORM clause")
    table = call.rows().read_all()
    _check_input_types(call, table.schema)
    out = model.transform.apply_available(table)
    for name in table.schema.names:
        if name not in out.schema.names:
            out = out.append_column(name, table.column(name))
    return out


HANDLERS: dict[str, Callable[[MLCall], Relation]] = {
    "PREDICT": predict,
    "EVALUATE": evaluate,
    "TRAINING_INFO": training_info,
    "FEATURE_INFO": feature_info,
    "WEIGHTS": weights,
    "ADVANCED_WEIGHTS": advanced_weights,
    "CONFUSION_MATRIX": confusion_matrix,
    "ROC_CURVE": roc_curve,
    "CENTROIDS": centroids,
    "DETECT_ANOMALIES": detect_anomalies,
    "FEATURE_IMPORTANCE": feature_importance,
    "EXPLAIN_PREDICT": explain_predict,
    "GLOBAL_EXPLAIN": global_explain,
    "TRANSFORM": transform,
    "RECOMMEND": recommend,
    "FORECAST": forecast,
    "EXPLAIN_FORECAST": explain_forecast,
    "ARIMA_EVALUATE": arima_evaluate,
    "ARIMA_COEFFICIENTS": arima_coefficients,
}
assert set(HANDLERS) == set(ML_TABLE_FUNCTIONS), "every ML table function needs a handler"


def _check_input_types(call: MLCall, schema: pa.Schema) -> None:
    """A column the model was trained on as a number must be a number here: BigQuery does not
    coerce STRING to FLOAT64 (ML.FEATURE_INFO has numeric statistics for exactly those)."""
    for row in call.model.feature_info:
        name = row.get("input")
        if name not in schema.names or row.get("min") is None and row.get("mean") is None:
            continue
        column_type = schema.field(name).type
        if pa.types.is_string(column_type) or pa.types.is_large_string(column_type) or pa.types.is_binary(column_type) \
                or pa.types.is_boolean(column_type):
            kind = "BOOL" if pa.types.is_boolean(column_type) else "STRING" if not pa.types.is_binary(column_type) else "BYTES"
            raise ModelError(f"{call.label}: column {name} is {kind} here, but the model was trained on numbers; "
                             f"CAST({name} AS FLOAT64) in the input query")
