"""CREATE MODEL: fit a model on the training query's rows.

The steps every model type shares (the evaluation split, TRANSFORM, the label, the automatic
encoding, ML.FEATURE_INFO, the evaluation and the global explanation) are here; what differs
by model type comes from its registry entry (registry.py): the options, the encoding, the
fit itself, the warm start.
"""

from __future__ import annotations

import time
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlglot.expressions as exp

from predserve.errors import ModelError
from predserve.identifiers import quote_identifier
from predserve.warehouse.models import metrics
from predserve.warehouse.models.explanation import GlobalExplanation, check_explainable, feature_names
from predserve.warehouse.models.features import FeatureEncoder, expand_structs, is_numeric
from predserve.warehouse.models.metrics import StoredEvaluation
from predserve.warehouse.models.registry import ModelType, Training, lookup, spoken_list, where
from predserve.warehouse.models.split import split_rows
from predserve.warehouse.models.trained import MAX_CLASSES, TrainedModel
from predserve.warehouse.models.transform import Transform


def train(name: str, options: dict[str, Any], table: pa.Table, transform: list[exp.Expression] | None = None,
          previous: TrainedModel | None = None) -> TrainedModel:
    """Fit a model on the training query's rows; ``transform`` is the TRANSFORM clause, if any.
    ``previous``: for warm_start, the model to continue training (its preprocessing is kept).

    TRANSFORM statistics are fitted on the training rows only (not the evaluation split);
    the fitted transform then turns the whole input into the model's columns.
    """
    model_type = options["model_type"]
    kind = lookup(model_type)
    started = time.time()
    if table.num_rows == 0:
        raise ModelError(f"CREATE MODEL {name}: the training query returned no rows")
    if kind.fit_rows is not None:
        return _train_on_rows(name, kind, options, table, transform, previous, started)
    # The split is chosen on the raw rows; TRANSFORM and STRUCT expansion keep row order.
    train_idx, eval_idx = split_rows(table, options) if kind.supervised else (np.arange(table.num_rows), None)
    raw_train = table if eval_idx is None else table.take(pa.array(train_idx))  # the query's training rows
    fitted_transform = previous.transform if previous else None  # a warm start keeps the first run's preprocessing
    if transform and not previous:
        fitted_transform = Transform.fit(transform, raw_train)
    if fitted_transform is not None:
        table = fitted_transform.apply(table)
    table = expand_structs(table)
    label = _label_column(name, kind, options, table)
    exclude = {label, options.get("data_split_col"), options.get("kmeans_init_col"), options.get("instance_weight_col")} - {None}
    feature_cols = [c for c in table.schema.names if c not in exclude]
    if not feature_cols:
        raise ModelError(f"CREATE MODEL {name}: the training query has no feature columns besides the label")
    train_table = table if eval_idx is None else table.take(pa.array(train_idx))
    encoder = _fit_encoder(name, kind, options, train_table, feature_cols, label, fitted_transform, previous)
    # The evaluation rows (already transformed), encoded once: for eval_loss and ML.EVALUATE.
    eval_table = table.take(pa.array(eval_idx)) if eval_idx is not None and len(eval_idx) else None
    model = TrainedModel(
        name=name, model_type=model_type, options=options, label=label, encoder=encoder,
        estimator=None, created_at=started, training_rows=len(train_idx), transform=fitted_transform,
    )
    if kind.classifies:
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
    if kind.classifies:  # the metrics, the confusion counts and the ROC curve from one prediction
        y = model.label_indices(evaluated.column(label))
        probs = model.estimator.predict_proba(x_evaluated)
        model.evaluation = metrics.classification(y, probs)
        model.stored_evaluation = StoredEvaluation.of(y, probs)
    else:
        model.evaluation = model._evaluate_encoded(x_evaluated, evaluated)
    if options.get("enable_global_explain"):
        model.global_explanation = global_explanation(model, x_evaluated)
    return model


def _train_on_rows(name: str, kind: ModelType, options: dict[str, Any], table: pa.Table,
                   transform: list[exp.Expression] | None, previous: TrainedModel | None, started: float) -> TrainedModel:
    """A family that reads its columns itself (ModelType.fit_rows): no split, encoding or label."""
    if transform:
        raise ModelError(f"CREATE MODEL {name}: a TRANSFORM clause is not supported for {kind.name} models; "
                         "compute the columns in the training query")
    if previous is not None:
        raise ModelError(f"CREATE MODEL {name}: warm_start is not supported for {kind.name} models")
    assert kind.fit_rows is not None
    estimator, info, evaluation = kind.fit_rows(name, options, table)
    model = TrainedModel(name=name, model_type=kind.name, options=options, label=None, encoder=FeatureEncoder([]),
                         estimator=estimator, created_at=started, training_rows=table.num_rows,
                         training_info=info, evaluation=evaluation)
    _number_the_run(model, None, started)
    model.feature_info = feature_statistics(table, table.schema.names)
    return model


def _fit_encoder(name: str, kind: ModelType, options: dict[str, Any], train_table: pa.Table, feature_cols: list[str],
                 label: str | None, fitted_transform: Transform | None, previous: TrainedModel | None) -> FeatureEncoder:
    """The automatic preprocessing the model type gets; a warm start reuses the first run's."""
    if previous:
        if feature_cols != previous.encoder.input_names:
            raise ModelError(f"warm_start: model {name} was trained on columns {previous.encoder.input_names}; "
                             f"this query gives {feature_cols}. A warm start needs the same training schema.")
        return previous.encoder
    encoding = kind.encoding(options)
    target_encoding = options.get("category_encoding_method") == "TARGET_ENCODING"
    return FeatureEncoder.fit(
        train_table.select(feature_cols), feature_cols,
        standardize=encoding.standardize, one_hot=encoding.one_hot, timestamp_parts=encoding.timestamp_parts,
        dummy=encoding.dummy, dropped=fitted_transform.dropped if fitted_transform else None,
        target=_target_for_encoding(name, kind, train_table, label) if target_encoding else None,
    )


def _fit_estimator(model: TrainedModel, x: np.ndarray, train_table: pa.Table, x_eval: np.ndarray | None,
                   eval_table: pa.Table | None, previous: TrainedModel | None) -> None:
    """Train the model type's estimator; set ``model.estimator`` and ``model.training_info``."""
    kind, label = model.kind, model.label

    def targets(t: pa.Table) -> np.ndarray:
        if kind.classifies:
            return model.label_indices(t.column(label))
        return t.column(label).cast(pa.float64()).to_numpy()

    supervised = kind.supervised
    training = Training(
        model=model.name, model_type=model.model_type, options=model.options, x=x,
        y=targets(train_table) if supervised else None, classes=model.classes, encoder=model.encoder, table=train_table,
        held_out=(x_eval, targets(eval_table)) if supervised and eval_table is not None else None,
        initial=_warm_start_state(previous), instance_weights=_instance_weights(model.options.get("instance_weight_col"), train_table),
    )
    model.estimator, model.training_info = kind.fit(training)


def _number_the_run(model: TrainedModel, previous: TrainedModel | None, started: float) -> None:
    """Complete the ML.TRAINING_INFO rows; a warm start's rows follow the earlier runs'."""
    run = previous.training_info[-1].get("training_run", 0) + 1 if previous else 0
    for row in model.training_info:
        if model.kind.supervised:  # BigQuery ML has no eval_loss column for unsupervised models
            row.setdefault("eval_loss", None)
        row.setdefault("duration_ms", int((time.time() - started) * 1000))
        row["training_run"] = run
    if previous:
        model.training_info = previous.training_info + model.training_info


def _target_for_encoding(name: str, kind: ModelType, table: pa.Table, label: str) -> np.ndarray:
    """TARGET_ENCODING's per-row target: the label (regression) or 1 for the positive class."""
    y = table.column(label)
    if not kind.classifies:
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
    """What a warm start continues from: the family's state (linear weights, kmeans centroids)."""
    if previous is None:
        return None
    if previous.kind.warm_start is None:
        raise ModelError(f"warm_start is not supported for {previous.model_type} models")
    return previous.kind.warm_start(previous.estimator)


def _label_column(name: str, kind: ModelType, options: dict[str, Any], table: pa.Table) -> str | None:
    model_type = kind.name
    if not kind.supervised:
        if options.get("input_label_cols"):
            raise ModelError(f"{model_type} models are unsupervised: remove input_label_cols")
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
    if kind.task == "regression" and not is_numeric(y.type):
        classifiers = spoken_list([t.name for t in where(lambda t: t.classifies)], "or")
        raise ModelError(
            f"CREATE MODEL {name}: {model_type} needs a numeric label, but {label!r} is {y.type}; "
            f"use {classifiers} for categories"
        )
    if kind.classifies:
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


def global_explanation(model: TrainedModel, x: np.ndarray) -> GlobalExplanation:
    """The explanation ML.GLOBAL_EXPLAIN reports, from the evaluation rows ``x`` (encoded)."""
    check_explainable(model.kind, model.name, "enable_global_explain")
    approx = bool(model.options.get("approx_global_feature_contrib"))
    names = feature_names(model.encoder)
    if not model.kind.classifies:
        attributions, _ = model.contributions(x, None, approx)
        return GlobalExplanation(names, np.abs(attributions).mean(axis=0), None)
    target = metrics.predicted_classes(np.asarray(model.estimator.predict_proba(x), dtype=np.float64))
    overall = np.abs(model.contributions(x, target, approx)[0]).mean(axis=0)
    by_class = np.vstack([np.abs(model.contributions(x, np.full(len(x), c), approx)[0]).mean(axis=0)
                          for c in range(len(model.classes))])
    return GlobalExplanation(names, overall, by_class)
