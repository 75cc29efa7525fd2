"""Trained models: fitting (scikit-learn / XGBoost underneath), batch prediction, metrics.

A ``TrainedModel`` is what CREATE MODEL produces: the options, the fitted preprocessing
(``transform``: the TRANSFORM clause; ``encoder``: the automatic encoding), the fitted
``estimator`` (``LinearModel`` weights, ``BoostedTrees`` around an XGBoost Booster, or
``KMeansModel`` centroids) and what ML.TRAINING_INFO, ML.FEATURE_INFO and ML.EVALUATE report,
with the evaluation details ML.CONFUSION_MATRIX / ML.ROC_CURVE report without input rows and
the global explanation ML.GLOBAL_EXPLAIN reports (when ``enable_global_explain``).
Each part turns itself into plain data and back (``to_data``/``from_data``); the catalog
stores that data in the warehouse (storage.py describes the format).
``predict_batch`` works on one Arrow record batch at a time, so ML.PREDICT streams.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlglot.expressions as exp

from predserve.errors import ModelError
from predserve.identifiers import quote_identifier
from predserve.warehouse import explain, metrics
from predserve.warehouse.features import FeatureEncoder, expand_structs, is_numeric
from predserve.warehouse.gradient_descent import LinearModel
from predserve.warehouse.kmeans import KMeansModel
from predserve.warehouse.split import split_rows
from predserve.warehouse.metrics import StoredEvaluation
from predserve.warehouse.storage import (StoredModelError, dict_field, float_field, int_field, optional_str_field,
                                         record_field, records_field, str_field, values_field, values_to_data)
from predserve.warehouse.transform import Transform
from predserve.warehouse.trees import BoostedTrees
from predserve.warehouse.weights import standard_errors

MAX_CLASSES = 50
CLASSIFIERS = ("logistic_reg", "boosted_tree_classifier", "random_forest_classifier")
REGRESSORS = ("linear_reg", "boosted_tree_regressor", "random_forest_regressor")
MODEL_TYPES = (*REGRESSORS, *CLASSIFIERS, "kmeans")
LINEAR_MODELS = ("linear_reg", "logistic_reg")
TREE_MODELS = ("boosted_tree_classifier", "boosted_tree_regressor", "random_forest_classifier", "random_forest_regressor")
Estimator = LinearModel | BoostedTrees | KMeansModel


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
    global_explanation: explain.GlobalExplanation | None = None  # enable_global_explain=TRUE: ML.GLOBAL_EXPLAIN

    # ---- storage -----------------------------------------------------------------------
    def to_data(self) -> dict[str, Any]:
        """Everything the model holds, as plain data (storage.py's encodings for arrays, typed
        values and the XGBoost model)."""
        assert self.estimator is not None
        return {
            "name": self.name, "model_type": self.model_type, "options": self.options, "label": self.label,
            "created_at": self.created_at, "training_rows": self.training_rows,
            "classes": values_to_data(self.classes, self.label_type) if self.model_type in CLASSIFIERS else None,
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
        if model_type not in MODEL_TYPES:
            raise StoredModelError(f"unknown model_type {model_type!r}")
        classes: list[Any] = []
        label_type = None
        if model_type in CLASSIFIERS:
            classes, label_type = values_field(data, "classes")
            if not 2 <= len(classes) <= MAX_CLASSES:
                raise StoredModelError(f"a classifier with {len(classes)} classes")
        label = optional_str_field(data, "label")
        if (label is None) != (model_type == "kmeans"):
            raise StoredModelError(f"a {model_type} model with label {label!r}")
        encoder = FeatureEncoder.from_data(dict_field(data, "encoder"))
        transform = dict_field(data, "transform") if data.get("transform") is not None else None
        stored_evaluation = dict_field(data, "stored_evaluation") if data.get("stored_evaluation") is not None else None
        global_explanation = dict_field(data, "global_explanation") if data.get("global_explanation") is not None else None
        return cls(
            name=name, model_type=model_type, options=dict_field(data, "options"), label=label, encoder=encoder,
            estimator=_estimator_from_data(model_type, dict_field(data, "estimator"), encoder, len(classes)),
            created_at=float_field(data, "created_at"), classes=classes, label_type=label_type,
            training_info=records_field(data, "training_info"), feature_info=records_field(data, "feature_info"),
            evaluation=record_field(data, "evaluation"), training_rows=int_field(data, "training_rows"),
            transform=Transform.from_data(transform) if transform is not None else None,
            stored_evaluation=StoredEvaluation.from_data(stored_evaluation, len(classes)) if stored_evaluation else None,
            global_explanation=explain.GlobalExplanation.from_data(global_explanation, len(classes))
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
        return with_input_columns(*self._prediction_columns(x, threshold), batch)

    def _prediction_columns(self, x: np.ndarray, threshold: float | None) -> tuple[list[pa.Array], list[str]]:
        if self.model_type in REGRESSORS:
            values = self.estimator.predict(x) if len(x) else np.zeros(0)
            return [pa.array(np.asarray(values, dtype=np.float64))], [self.output_prefix]
        if self.model_type in CLASSIFIERS:
            probs = self.estimator.predict_proba(x) if len(x) else np.zeros((0, len(self.classes)))
            return self._classifier_columns(np.asarray(probs, dtype=np.float64), threshold)
        return self._kmeans_columns(x)

    def _classifier_columns(self, probs: np.ndarray, threshold: float | None) -> tuple[list[pa.Array], list[str]]:
        k = len(self.classes)
        if k == 2:
            cut = 0.5 if threshold is None else threshold
            chosen = (probs[:, 1] > cut).astype(np.int64)
        else:
            if threshold is not None:
                raise ModelError("STRUCT(threshold) only applies to binary classification models")
            chosen = probs.argmax(axis=1)
        labels = pa.array(self.classes, type=self.label_type)
        predicted = labels.take(pa.array(chosen))
        n = len(probs)
        offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
        entries = pa.StructArray.from_arrays(
            [labels.take(pa.array(np.tile(np.arange(k), n))), pa.array(probs.ravel())],
            names=["label", "prob"],
        )
        return [predicted, pa.ListArray.from_arrays(offsets, entries)], [self.output_prefix, f"{self.output_prefix}_probs"]

    def _kmeans_columns(self, x: np.ndarray) -> tuple[list[pa.Array], list[str]]:
        k = self.estimator.n_clusters
        distances = self.estimator.transform(x) if len(x) else np.zeros((0, k))
        order = np.argsort(distances, axis=1)
        n = len(distances)
        offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
        entries = pa.StructArray.from_arrays(
            [pa.array((order + 1).ravel()), pa.array(np.take_along_axis(distances, order, axis=1).ravel())],
            names=["CENTROID_ID", "DISTANCE"],
        )
        centroid = pa.array(order[:, 0] + 1 if n else np.zeros(0, dtype=np.int64))
        return [centroid, pa.ListArray.from_arrays(offsets, entries)], ["CENTROID_ID", "NEAREST_CENTROIDS_DISTANCE"]

    # ---- evaluation --------------------------------------------------------------------
    def evaluate(self, table: pa.Table, threshold: float | None = None) -> dict[str, Any]:
        """Metrics on ``table`` (which must hold the label column for supervised models)."""
        if self.transform is not None and self.label is not None and self.label not in self.transform.output_names:
            raise ModelError(f"the TRANSFORM of model {self.name} does not output the label {self.label!r}")
        table = self._features(table, with_label=True)
        return self._evaluate_encoded(self.encoder.encode(table), table, threshold)

    def _evaluate_encoded(self, x: np.ndarray, table: pa.Table, threshold: float | None = None) -> dict[str, Any]:
        if self.model_type == "kmeans":
            return metrics.clustering(x, self.estimator)
        if self.label not in table.schema.names:
            raise ModelError(f"ML.EVALUATE input needs the label column {self.label!r} of model {self.name}")
        y = table.column(self.label)
        if y.null_count:
            table = table.filter(pc.is_valid(y))
            x = self.encoder.encode(table)
            y = table.column(self.label)
        if self.model_type in REGRESSORS:
            return metrics.regression(y.to_numpy().astype(np.float64), self.estimator.predict(x))
        index = _label_indices(y, self.classes, self.label_type)
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


def _estimator_from_data(model_type: str, data: dict[str, Any], encoder: FeatureEncoder, num_classes: int) -> Estimator:
    width = len(encoder.output_names)
    if model_type == "kmeans":
        return KMeansModel.from_data(data, width)
    if model_type in TREE_MODELS:
        return BoostedTrees.from_data(data, num_classes, width)
    return LinearModel.from_data(data, "linear" if model_type == "linear_reg" else "logistic", width, num_classes)


def _label_indices(y: pa.ChunkedArray | pa.Array, classes: list[Any], label_type: pa.DataType | None) -> np.ndarray:
    idx = pc.index_in(y.cast(label_type) if label_type else y, value_set=pa.array(classes, type=label_type))
    out = pc.fill_null(idx, -1).to_numpy(zero_copy_only=False)
    if (out < 0).any():
        unknown = pc.unique(pc.filter(y, pc.is_null(idx))).to_pylist()[:5]
        raise ModelError(f"label values {unknown} were not seen in training; the model knows {classes}")
    return out.astype(np.int64)


# ---- training ------------------------------------------------------------------------------
def train(name: str, options: dict[str, Any], table: pa.Table, transform: list[exp.Expression] | None = None,
          previous: TrainedModel | None = None) -> TrainedModel:
    """Fit a model on the training query's rows; ``transform`` is the TRANSFORM clause, if any.
    ``previous``: for warm_start, the model to continue training (its preprocessing is kept).

    TRANSFORM statistics are fitted on the training rows only (not the evaluation split);
    the fitted transform then turns the whole input into the model's columns.
    """
    model_type = options["model_type"]
    started = time.time()
    if table.num_rows == 0:
        raise ModelError(f"CREATE MODEL {name}: the training query returned no rows")
    # The split is chosen on the raw rows; TRANSFORM and STRUCT expansion keep row order.
    train_idx, eval_idx = (np.arange(table.num_rows), None) if model_type == "kmeans" else split_rows(table, options)
    raw_train = table if eval_idx is None else table.take(pa.array(train_idx))  # the query's training rows
    fitted_transform = previous.transform if previous else None  # a warm start keeps the first run's preprocessing
    if transform and not previous:
        fitted_transform = Transform.fit(transform, raw_train)
    if fitted_transform is not None:
        table = fitted_transform.apply(table)
    table = expand_structs(table)
    label = _label_column(name, options, table)
    exclude = {label, options.get("data_split_col"), options.get("kmeans_init_col"), options.get("instance_weight_col")} - {None}
    feature_cols = [c for c in table.schema.names if c not in exclude]
    if not feature_cols:
        raise ModelError(f"CREATE MODEL {name}: the training query has no feature columns besides the label")
    train_table = table if eval_idx is None else table.take(pa.array(train_idx))
    encoder = _fit_encoder(name, options, train_table, feature_cols, label, fitted_transform, previous)
    # The evaluation rows (already transformed), encoded once: for eval_loss and ML.EVALUATE.
    eval_table = table.take(pa.array(eval_idx)) if eval_idx is not None and len(eval_idx) else None
    model = TrainedModel(
        name=name, model_type=model_type, options=options, label=label, encoder=encoder,
        estimator=None, created_at=started, training_rows=len(train_idx), transform=fitted_transform,
    )
    if model_type in CLASSIFIERS:
        model.label_type = train_table.column(label).type
        model.classes = sorted(pc.unique(table.column(label)).to_pylist())
        if previous and model.classes != previous.classes:
            raise ModelError(f"warm_start: model {name} was trained on labels {previous.classes}; this query has {model.classes}")
    x = encoder.encode(train_table)
    x_eval = encoder.encode(eval_table) if eval_table is not None else None
    _fit_estimator(model, x, train_table, x_eval, eval_table, previous)
    _number_the_run(model, previous, started)
    if fitted_transform is None:
        model.feature_info = feature_statistics(train_table, feature_cols)
    else:  # BigQuery ML describes the query's columns, before TRANSFORM
        model.feature_info = feature_statistics(raw_train, [c for c in raw_train.schema.names if c not in exclude])
    # Without a split, BigQuery ML evaluates (and explains) on the training rows, already encoded.
    x_evaluated, evaluated = (x_eval, eval_table) if eval_table is not None else (x, train_table)
    if model.model_type in CLASSIFIERS:  # the metrics, the confusion counts and the ROC curve from one prediction
        y = _label_indices(evaluated.column(label), model.classes, model.label_type)
        probs = model.estimator.predict_proba(x_evaluated)
        model.evaluation = metrics.classification(y, probs)
        model.stored_evaluation = StoredEvaluation.of(y, probs)
    else:
        model.evaluation = model._evaluate_encoded(x_evaluated, evaluated)
    if options.get("enable_global_explain"):
        model.global_explanation = explain.global_explanation(model, x_evaluated)
    return model


def _fit_encoder(name: str, options: dict[str, Any], train_table: pa.Table, feature_cols: list[str], label: str | None,
                 fitted_transform: Transform | None, previous: TrainedModel | None) -> FeatureEncoder:
    """The automatic preprocessing the model type gets; a warm start reuses the first run's."""
    if previous:
        if feature_cols != previous.encoder.input_names:
            raise ModelError(f"warm_start: model {name} was trained on columns {previous.encoder.input_names}; "
                             f"this query gives {feature_cols}. A warm start needs the same training schema.")
        return previous.encoder
    model_type = options["model_type"]
    trees = model_type in TREE_MODELS
    linear = model_type in LINEAR_MODELS
    encoding = options.get("category_encoding_method")
    return FeatureEncoder.fit(
        train_table.select(feature_cols), feature_cols,
        standardize=not trees and (model_type != "kmeans" or options["standardize_features"]),
        one_hot=not trees or encoding == "ONE_HOT_ENCODING",
        timestamp_parts=linear, dummy=linear and encoding == "DUMMY_ENCODING",
        dropped=fitted_transform.dropped if fitted_transform else None,
        target=_target_for_encoding(name, model_type, train_table, label) if encoding == "TARGET_ENCODING" else None,
    )


def _fit_estimator(model: TrainedModel, x: np.ndarray, train_table: pa.Table, x_eval: np.ndarray | None,
                   eval_table: pa.Table | None, previous: TrainedModel | None) -> None:
    """Train the model type's estimator; set ``model.estimator`` and ``model.training_info``."""
    from predserve.warehouse import estimators, kmeans

    options, label = model.options, model.label
    initial = _warm_start_state(previous)
    weights = _instance_weights(options.get("instance_weight_col"), train_table)
    if model.model_type in CLASSIFIERS:
        def targets(t: pa.Table) -> np.ndarray:
            return _label_indices(t.column(label), model.classes, model.label_type)

        held_out = (x_eval, targets(eval_table)) if eval_table is not None else None
        y = targets(train_table)
        model.estimator, model.training_info = estimators.fit_classifier(
            model.model_type, options, x, y, model.classes, held_out, initial, weights
        )
    elif model.model_type in REGRESSORS:
        def values(t: pa.Table) -> np.ndarray:
            return t.column(label).cast(pa.float64()).to_numpy()

        held_out = (x_eval, values(eval_table)) if eval_table is not None else None
        y = values(train_table)
        model.estimator, model.training_info = estimators.fit_regressor(
            model.model_type, options, x, y, held_out, initial, weights
        )
    else:
        init_col = options.get("kmeans_init_col")
        init_rows = None
        if init_col and initial is None:  # a warm start begins from the stored centroids instead
            if init_col not in train_table.schema.names or not pa.types.is_boolean(train_table.column(init_col).type):
                raise ModelError(f"kmeans_init_col {init_col!r} must name a BOOL column of the training query")
            init_rows = pc.fill_null(train_table.column(init_col), False).to_numpy(zero_copy_only=False)
        model.estimator, model.training_info = kmeans.fit(options, x, init_rows, initial)
        return
    if options.get("calculate_p_values"):
        class_weights = estimators.row_class_weights(options, model.classes, y) if model.model_type == "logistic_reg" else None
        model.estimator.standard_errors = standard_errors(model, x, y, class_weights)


def _number_the_run(model: TrainedModel, previous: TrainedModel | None, started: float) -> None:
    """Complete the ML.TRAINING_INFO rows; a warm start's rows follow the earlier runs'."""
    run = previous.training_info[-1].get("training_run", 0) + 1 if previous else 0
    for row in model.training_info:
        if model.model_type != "kmeans":  # BigQuery ML has no eval_loss column for kmeans
            row.setdefault("eval_loss", None)
        row.setdefault("duration_ms", int((time.time() - started) * 1000))
        row["training_run"] = run
    if previous:
        model.training_info = previous.training_info + model.training_info


def _target_for_encoding(name: str, model_type: str, table: pa.Table, label: str) -> np.ndarray:
    """TARGET_ENCODING's per-row target: the label (regression) or 1 for the positive class."""
    y = table.column(label)
    if model_type in REGRESSORS:
        return y.cast(pa.float64()).to_numpy()
    classes = sorted(pc.unique(y).to_pylist())
    if len(classes) != 2:
        raise ModelError(f"CREATE MODEL {name}: category_encoding_method='TARGET_ENCODING' needs a regression or binary "
                         f"label here; {label!r} has {len(classes)} classes")
    return pc.equal(y, pa.scalar(classes[1], type=y.type)).to_numpy(zero_copy_only=False).astype(np.float64)


def _instance_weights(column: str | None, table: pa.Table) -> np.ndarray | None:
    """INSTANCE_WEIGHT_COL: a numeric, non-NULL, non-negative weight per training row."""
    if not column:
        return None
    if column not in table.schema.names or not is_numeric(table.column(column).type):
        raise ModelError(f"instance_weight_col {column!r} must name a numeric column of the training query")
    weights = table.column(column)
    if weights.null_count or (pc.min(weights).as_py() or 0) < 0:
        raise ModelError(f"instance_weight_col {column!r} must be zero or more in every row (it has NULLs or negatives)")
    return weights.cast(pa.float64()).to_numpy()


def _warm_start_state(previous: TrainedModel | None) -> Any:
    """What a warm start continues from: linear weights (coef, intercept) or kmeans centroids."""
    if previous is None:
        return None
    if previous.model_type == "kmeans":
        return previous.estimator.cluster_centers_
    if previous.model_type in LINEAR_MODELS:
        return np.atleast_2d(previous.estimator.coef_), np.atleast_1d(previous.estimator.intercept_)
    raise ModelError(f"warm_start is not supported for {previous.model_type} models")


def _label_column(name: str, options: dict[str, Any], table: pa.Table) -> str | None:
    model_type = options["model_type"]
    if model_type == "kmeans":
        if options.get("input_label_cols"):
            raise ModelError("kmeans models are unsupervised: remove input_label_cols")
        return None
    cols = options.get("input_label_cols") or ["label"]
    if len(cols) != 1:
        raise ModelError(f"input_label_cols must name exactly one column, got {cols}")
    label = cols[0]
    if label not in table.schema.names:
        raise ModelError(
            f"CREATE MODEL {name}: label column {label!r} is not in the training query "
            f"(columns: {', '.join(table.schema.names)}). Set OPTIONS(input_label_cols=['...'])."
        )
    y = table.column(label)
    if y.null_count:
        raise ModelError(
            f"CREATE MODEL {name}: label column {label!r} is NULL in {y.null_count} rows; "
            f"filter them out (WHERE {label} IS NOT NULL)"
        )
    if model_type in REGRESSORS and not is_numeric(y.type):
        raise ModelError(
            f"CREATE MODEL {name}: {model_type} needs a numeric label, but {label!r} is {y.type}; "
            "use logistic_reg, boosted_tree_classifier or random_forest_classifier for categories"
        )
    if model_type in CLASSIFIERS:
        if pa.types.is_floating(y.type):
            raise ModelError(f"CREATE MODEL {name}: classification label {label!r} must be INT64, BOOL or STRING, not {y.type}")
        distinct = len(pc.unique(y))
        if distinct > MAX_CLASSES:
            raise ModelError(f"CREATE MODEL {name}: label {label!r} has {distinct} distinct values; at most {MAX_CLASSES} classes are supported")
        if distinct < 2:
            raise ModelError(f"CREATE MODEL {name}: label {label!r} has only one distinct value; a classifier needs at least two")
    return label


def feature_statistics(table: pa.Table, columns: list[str]) -> list[dict[str, Any]]:
    """ML.FEATURE_INFO rows: one per input feature column, computed in one DuckDB query."""
    import duckdb

    fields = ["min", "max", "mean", "median", "stddev", "category_count", "null_count"]
    selects = []
    for name in columns:
        q = quote_identifier(name)
        t = table.column(name).type
        if is_numeric(t):
            stats = [f"min({q})::DOUBLE", f"max({q})::DOUBLE", f"avg({q})::DOUBLE", f"median({q})::DOUBLE",
                     f"stddev_samp({q})::DOUBLE", "NULL::BIGINT"]
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            # multi-hot arrays: the categories are the distinct elements; numeric arrays have none
            count = "NULL::BIGINT" if is_numeric(t.value_type) else f"length(list_distinct(flatten(list({q}))))::BIGINT"
            stats = ["NULL::DOUBLE"] * 5 + [count]
        else:
            stats = ["NULL::DOUBLE"] * 5 + [f"count(DISTINCT {q})"]
        selects.extend([*stats, f"count(*) - count({q})"])
    con = duckdb.connect()
    con.register("features", table)
    values = con.sql(f"SELECT {', '.join(selects)} FROM features").fetchall()[0]
    con.close()
    width = len(fields)
    return [{"input": name, **dict(zip(fields, values[i * width:(i + 1) * width])), "dimension": None}
            for i, name in enumerate(columns)]
