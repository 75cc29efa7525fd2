"""The ML table functions' handlers: one function per node type of dialect.ML_TABLE_FUNCTIONS.

A handler gets an ``MLCall`` (the model, the checked STRUCT settings, the input rows on
demand) and returns what DuckDB reads as a table: a ``pyarrow.Table``, or for ML.PREDICT a
``RecordBatchReader`` that scores one batch at a time, so prediction streams.

Adding an ML table function: a node class and a row in dialect.ML_TABLE_FUNCTIONS (its
syntax), a handler here and its row in HANDLERS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterator

import pyarrow as pa
import sqlglot.expressions as exp

from predserve.errors import ModelError, PredserveError, SQLError
from predserve.warehouse.dialect import ML_TABLE_FUNCTIONS, Evaluate, FeatureInfo, TrainingInfo, Weights
from predserve.warehouse.messages import engine_message
from predserve.warehouse.models import CLASSIFIERS, TrainedModel, weights_table

Relation = pa.Table | pa.RecordBatchReader

# STRUCT settings BigQuery has for features predserve does not offer: named, not "unknown".
UNSUPPORTED_SETTINGS = {
    "trial_id": "hyperparameter tuning",
    "keep_original_columns": "PCA and autoencoder models (predserve's ML.PREDICT always passes the input columns through)",
    "horizon": "time series models", "confidence_level": "time series models",
    "perform_aggregation": "time series models",
}


@dataclass
class MLCall:
    function: str  # PREDICT, EVALUATE, ...
    model: TrainedModel
    settings: dict[str, Any]
    rows: Callable[[], pa.RecordBatchReader] | None  # the input rows, read when called
    failures: list[PredserveError] = field(default_factory=list)  # raised while DuckDB pulls batches

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
            expected = "a number" if kind is float else "TRUE or FALSE"
            raise SQLError(f"ML.{function}: setting {name} must be {expected}, got {value!r}")
        settings[name] = value
    return settings


def _threshold(call: MLCall) -> float | None:
    """STRUCT(t AS threshold): binary classification models only, as BigQuery ML allows."""
    threshold = call.settings.get("threshold")
    if threshold is None:
        return None
    model = call.model
    if model.model_type not in CLASSIFIERS or len(model.classes) != 2:
        kind = model.model_type if model.model_type not in CLASSIFIERS else f"{model.model_type} with {len(model.classes)} classes"
        raise ModelError(f"{call.label}: STRUCT(... AS threshold) applies to binary classification models only; "
                         f"{model.name} is {kind}")
    if not 0.0 <= threshold <= 1.0:
        raise ModelError(f"{call.label}: threshold must be between 0 and 1, got {threshold}")
    return threshold


# ---- handlers -----------------------------------------------------------------------------------
def predict(call: MLCall) -> pa.RecordBatchReader:
    assert call.rows is not None
    threshold = _threshold(call)
    source = call.rows()
    _check_input_types(call, source.schema)
    model = call.model
    try:
        schema = model.predict_batch(pa.RecordBatch.from_pylist([], schema=source.schema), threshold).schema
    except pa.ArrowException as exc:
        raise ModelError(f"{call.label}: the input rows cannot be scored: {engine_message(exc)}") from None

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in source:
            try:
                yield model.predict_batch(batch, threshold)
            except PredserveError as exc:
                call.failures.append(exc)
                raise
            except pa.ArrowException as exc:
                call.failures.append(ModelError(f"{call.label}: the input rows cannot be scored: {engine_message(exc)}"))
                raise

    return pa.RecordBatchReader.from_batches(schema, batches())


def evaluate(call: MLCall) -> pa.Table:
    threshold = _threshold(call)
    if call.rows is None:
        if threshold is not None:
            raise ModelError(f"{call.label}: a threshold needs the evaluation rows, ML.EVALUATE(MODEL {call.model.name}, "
                             "TABLE t | (query), STRUCT(... AS threshold)); the stored evaluation uses 0.5")
        return call.model.evaluation_table()
    table = call.rows().read_all()
    _check_input_types(call, table.schema)
    return pa.Table.from_pylist([call.model.evaluate(table, threshold)])


def training_info(call: MLCall) -> pa.Table:
    return pa.Table.from_pylist([{"training_run": 0, **row} for row in call.model.training_info])  # older models lack training_run


def feature_info(call: MLCall) -> pa.Table:
    return pa.Table.from_pylist(call.model.feature_info)


def weights(call: MLCall) -> pa.Table:
    return weights_table(call.model, standardize=bool(call.settings.get("standardize", False)))


HANDLERS: dict[type[exp.Expression], Callable[[MLCall], Relation]] = {
    exp.Predict: predict,
    Evaluate: evaluate,
    TrainingInfo: training_info,
    FeatureInfo: feature_info,
    Weights: weights,
}
assert set(HANDLERS) == {s.node for s in ML_TABLE_FUNCTIONS.values()}, "every ML table function needs a handler"


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
