"""Trained models: storage, batch prediction, evaluation (training.py fits them).

A ``TrainedModel`` is what CREATE MODEL produces: the options, the fitted preprocessing
(``transform``: the TRANSFORM clause; ``encoder``: the automatic encoding), the fitted
``estimator`` (its family's: ``LinearModel`` weights, ``BoostedTrees`` around an XGBoost
Booster, or ``KMeansModel`` centroids) and what ML.TRAINING_INFO, ML.FEATURE_INFO and ML.EVALUATE report,
with the evaluation details ML.CONFUSION_MATRIX / ML.ROC_CURVE report without input rows and
the global explanation ML.GLOBAL_EXPLAIN reports (when ``enable_global_explain``).
Each part turns itself into plain data and back (``to_data``/``from_data``); the catalog
stores that data in the warehouse (storage.py describes the format).
``predict_batch`` works on one Arrow record batch at a time, so ML.PREDICT streams.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from predserve.errors import ModelError
from predserve.warehouse.models import metrics
from predserve.warehouse.models.explanation import GlobalExplanation, feature_starts
from predserve.warehouse.models.features import FeatureEncoder, expand_structs
from predserve.warehouse.models.metrics import StoredEvaluation
from predserve.warehouse.models.registry import Estimator, ModelType, is_registered, lookup
from predserve.warehouse.models.storage import (
    StoredModelError,
    dict_field,
    float_field,
    int_field,
    optional_str_field,
    record_field,
    records_field,
    str_field,
    values_field,
    values_to_data,
)
from predserve.warehouse.models.transform import Transform

MAX_CLASSES = 50


@dataclass
class TrainedModel:
    name: str
    model_type: str
    options: dict[str, Any]
    label: str | None
    encoder: FeatureEncoder
    estimator: Estimator | None  # None only while train() builds the model
    created_at: float
    classes: list[Any] = field(default_factory=list)
    label_type: pa.DataType | None = None
    training_info: list[dict[str, Any]] = field(default_factory=list)
    feature_info: list[dict[str, Any]] = field(default_factory=list)
    evaluation: dict[str, Any] = field(default_factory=dict)
    training_rows: int = 0
    transform: Transform | None = None  # the fitted TRANSFORM clause, if the model has one
    stored_evaluation: StoredEvaluation | None = None  # classifiers: ML.CONFUSION_MATRIX / ML.ROC_CURVE without input
    global_explanation: GlobalExplanation | None = None  # enable_global_explain=TRUE: ML.GLOBAL_EXPLAIN

    @property
    def kind(self) -> ModelType:
        """The model type's registry entry: what this model can do."""
        return lookup(self.model_type)

    # ---- storage -----------------------------------------------------------------------
    def to_data(self) -> dict[str, Any]:
        """Everything the model holds, as plain data (storage.py's encodings for arrays, typed
        values and the XGBoost model)."""
        assert self.estimator is not None
        return {
            "name": self.name, "model_type": self.model_type, "options": self.options, "label": self.label,
            "created_at": self.created_at, "training_rows": self.training_rows,
            "classes": values_to_data(self.classes, self.label_type) if self.kind.classifies else None,
            "encoder": self.encoder.to_data(), "estimator": self.estimator.to_data(),
            "transform": self.transform.to_data() if self.transform is not None else None,
            "training_info": self.training_info, "feature_info": self.feature_info, "evaluation": self.evaluation,
            "stored_evaluation": self.stored_evaluation.to_data() if self.stored_evaluation is not None else None,
            "global_explanation": self.global_explanation.to_data() if self.global_explanation is not None else None,
        }

    @classmethod
    def from_data(cls, name: str, data: dict[str, Any]) -> "TrainedModel":
        """The model ``to_data`` described; StoredModelError for anything else. The evaluation
        details and the global explanation are optional: models stored before they existed lack them."""
        model_type = str_field(data, "model_type")
        if not is_registered(model_type):
            raise StoredModelError(f"unknown model_type {model_type!r}")
        kind = lookup(model_type)
        classes: list[Any] = []
        label_type = None
        if kind.classifies:
            classes, label_type = values_field(data, "classes")
            if not 2 <= len(classes) <= MAX_CLASSES:
                raise StoredModelError(f"a classifier with {len(classes)} classes")
        label = optional_str_field(data, "label")
        if (label is None) == kind.supervised:
            raise StoredModelError(f"a {model_type} model with label {label!r}")
        encoder = FeatureEncoder.from_data(dict_field(data, "encoder"))
        transform = dict_field(data, "transform") if data.get("transform") is not None else None
        stored_evaluation = dict_field(data, "stored_evaluation") if data.get("stored_evaluation") is not None else None
        global_explanation = dict_field(data, "global_explanation") if data.get("global_explanation") is not None else None
        return cls(
            name=name, model_type=model_type, options=dict_field(data, "options"), label=label, encoder=encoder,
            estimator=kind.load(dict_field(data, "estimator"), len(encoder.output_names), len(classes)),
            created_at=float_field(data, "created_at"), classes=classes, label_type=label_type,
            training_info=records_field(data, "training_info"), feature_info=records_field(data, "feature_info"),
            evaluation=record_field(data, "evaluation"), training_rows=int_field(data, "training_rows"),
            transform=Transform.from_data(transform) if transform is not None else None,
            stored_evaluation=StoredEvaluation.from_data(stored_evaluation, len(classes)) if stored_evaluation else None,
            global_explanation=GlobalExplanation.from_data(global_explanation, len(classes))
            if global_explanation else None,
        )

    def _features(self, data: pa.RecordBatch | pa.Table, with_label: bool = False) -> pa.RecordBatch | pa.Table:
        """The model's input columns: the TRANSFORM output when there is one, else ``data``;
        STRUCT columns expanded into one column per field."""
        if self.transform is not None:
            skip = set() if with_label or self.label is None else {self.label}
            data = self.transform.apply(data, skip=skip)
        return expand_structs(data)

    # ---- prediction --------------------------------------------------------------------
    @property
    def output_prefix(self) -> str:
        return f"predicted_{self.label}"

    def predict_batch(self, batch: pa.RecordBatch, threshold: float | None = None) -> pa.RecordBatch:
        """Score one batch: prediction columns first, then every input column, as BigQuery ML does."""
        x = self.encoder.encode(self._features(batch))
        return with_input_columns(*self.kind.predict(self, x, threshold), batch)

    def contributions(self, x: np.ndarray, target: np.ndarray | None, approx: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(attributions (rows, input features), baseline (rows,)) toward each row's ``target``
        class (None for regression): the family's attributions per encoded column, summed per
        input feature (a category's one-hot columns, a TIMESTAMP's parts)."""
        n = len(x)
        if not n:
            return np.zeros((0, len(self.encoder.features))), np.zeros(0)
        assert self.kind.attributions is not None
        columns, baseline = self.kind.attributions(self.estimator, x, target, approx)
        grouped = np.add.reduceat(columns, feature_starts(self.encoder), axis=1)
        if target is not None and len(self.classes) == 2:  # the negative class's log-odds are the positive's, negated
            sign = np.where(target == 0, -1.0, 1.0)
            grouped, baseline = grouped * sign[:, None], baseline * sign
        return grouped, baseline

    # ---- evaluation --------------------------------------------------------------------
    def evaluate(self, table: pa.Table, threshold: float | None = None) -> dict[str, Any]:
        """Metrics on ``table`` (which must hold the label column for supervised models)."""
        if self.transform is not None and self.label is not None and self.label not in self.transform.output_names:
            raise ModelError(f"the TRANSFORM of model {self.name} does not output the label {self.label!r}")
        table = self._features(table, with_label=True)
        return self._evaluate_encoded(self.encoder.encode(table), table, threshold)

    def _evaluate_encoded(self, x: np.ndarray, table: pa.Table, threshold: float | None = None) -> dict[str, Any]:
        if not self.kind.supervised:
            return metrics.clustering(x, self.estimator)
        if self.label not in table.schema.names:
            raise ModelError(f"ML.EVALUATE input needs the label column {self.label!r} of model {self.name}")
        y = table.column(self.label)
        if y.null_count:
            table = table.filter(pc.is_valid(y))
            x = self.encoder.encode(table)
            y = table.column(self.label)
        if not self.kind.classifies:
            return metrics.regression(y.to_numpy().astype(np.float64), self.estimator.predict(x))
        index = self.label_indices(y)
        probs = self.estimator.predict_proba(x)
        return metrics.classification(index, probs, threshold)

    def label_indices(self, labels: pa.ChunkedArray | pa.Array, strict: bool = True) -> np.ndarray:
        """Each label's class index; a label not seen in training is an error, or -1 when not ``strict``."""
        if strict:
            return _label_indices(labels, self.classes, self.label_type)
        idx = pc.index_in(labels.cast(self.label_type) if self.label_type else labels,
                          value_set=pa.array(self.classes, type=self.label_type))
        return pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int64)

    def evaluation_table(self) -> pa.Table:
        return pa.Table.from_pylist([self.evaluation])


def with_input_columns(columns: list[pa.Array], names: list[str], batch: pa.RecordBatch) -> pa.RecordBatch:
    """An ML function's output columns, then the input batch's columns (those not already
    named), as BigQuery ML passes the input through."""
    columns, names = list(columns), list(names)
    for name in batch.schema.names:
        if name not in names:
            columns.append(batch.column(name))
            names.append(name)
    return pa.RecordBatch.from_arrays(columns, names=names)


def _label_indices(y: pa.ChunkedArray | pa.Array, classes: list[Any], label_type: pa.DataType | None) -> np.ndarray:
    idx = pc.index_in(y.cast(label_type) if label_type else y, value_set=pa.array(classes, type=label_type))
    out = pc.fill_null(idx, -1).to_numpy(zero_copy_only=False)
    if (out < 0).any():
        unknown = pc.unique(pc.filter(y, pc.is_null(idx))).to_pylist()[:5]
        raise ModelError(f"label values {unknown} were not seen in training; the model knows {classes}")
    return out.astype(np.int64)


