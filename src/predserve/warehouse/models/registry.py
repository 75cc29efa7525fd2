"""The model types CREATE MODEL trains, as data: one ``ModelType`` per ``model_type`` name.

Each family of model types is one module in ``families/`` that builds its ``ModelType``
entries and calls ``register`` when it is imported (``families/__init__.py`` imports them in
the order BigQuery ML's reference lists them, which is the order error messages list them
in). Everything that depends on the model type asks its entry: which OPTIONS it accepts
(``options``), what it learns (``task``: a label, class probabilities, clusters), which of
the model-specific ML table functions it supports (``functions``), how it encodes its inputs,
fits, loads, predicts, warm-starts and attributes a prediction to its features. A model type's
name is written in its family's module only.

Adding a family: see "Adding a model family" in docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, NamedTuple, Protocol

import numpy as np

from predserve.errors import ModelError

Task = Literal["regression", "classification", "clustering", "recommendation", "forecasting"]
Info = list[dict[str, Any]]  # ML.TRAINING_INFO rows
HeldOut = tuple[np.ndarray, np.ndarray] | None  # the evaluation rows (features, targets), for eval_loss

# The ML table functions only some model types support; every model type supports the
# others (ML.PREDICT, ML.EVALUATE, ML.TRAINING_INFO, ML.FEATURE_INFO, ML.TRANSFORM).
MODEL_SPECIFIC_FUNCTIONS = frozenset({"WEIGHTS", "ADVANCED_WEIGHTS", "CENTROIDS", "DETECT_ANOMALIES", "FEATURE_IMPORTANCE",
                                      "EXPLAIN_PREDICT", "GLOBAL_EXPLAIN", "RECOMMEND", "FORECAST", "EXPLAIN_FORECAST",
                                      "ARIMA_EVALUATE", "ARIMA_COEFFICIENTS"})


class Estimator(Protocol):
    """What a family fits: weights, trees or centroids, stored as plain data (storage.py)."""

    def to_data(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Option:
    """One CREATE MODEL option: its Python type, default, and the check its value must pass."""

    kind: type | tuple[type, ...]
    default: Any
    check: Callable[[Any], bool] | None = None
    choices: tuple[str, ...] | None = None
    help: str = ""


class Encoding(NamedTuple):
    """How the automatic preprocessing (features.FeatureEncoder) treats this model's inputs."""

    standardize: bool  # numeric columns to mean 0, stddev 1
    one_hot: bool  # categories one-hot (else label encoded: the trees)
    timestamp_parts: bool = False  # TIMESTAMP columns also as day of week, month, ... (linear models)
    dummy: bool = False  # DUMMY_ENCODING: the most frequent category's column stays 0


@dataclass
class Training:
    """What a family's ``fit`` gets: the encoded training rows and their targets."""

    model: str  # the model's name, for messages
    model_type: str
    options: dict[str, Any]
    x: np.ndarray  # the encoded training rows
    y: np.ndarray | None  # class indices (classification), float targets (regression), None (clustering)
    classes: list[Any]  # the training labels (classification), else []
    encoder: Any  # the fitted features.FeatureEncoder
    table: Any  # the training rows as a pyarrow.Table, for columns a family reads itself (kmeans_init_col)
    held_out: HeldOut = None
    initial: Any = None  # a warm start's state (``ModelType.warm_start`` of the previous model)
    instance_weights: np.ndarray | None = None  # INSTANCE_WEIGHT_COL


@dataclass(frozen=True)
class ModelType:
    """One model_type: everything CREATE MODEL and the ML functions need to know about it."""

    name: str  # lower case, as OPTIONS(model_type='...') is compared
    task: Task
    options: Mapping[str, Option]  # every option it accepts, with model_type itself
    fit: Callable[[Training], tuple[Estimator, Info]]
    load: Callable[[dict[str, Any], int, int], Estimator]  # (stored data, encoded features, classes) -> estimator
    # (model, encoded rows, threshold) -> (ML.PREDICT's output columns, their names): the per-row output shape
    predict: Callable[[Any, np.ndarray, float | None], tuple[list[Any], list[str]]]
    encoding: Callable[[dict[str, Any]], Encoding]
    functions: frozenset[str] = frozenset()  # the MODEL_SPECIFIC_FUNCTIONS it supports
    # the option combinations it rejects (and defaults that depend on other options), on the resolved options
    check_options: Callable[[dict[str, Any]], None] | None = None
    warm_start: Callable[[Any], Any] | None = None  # estimator -> the state a warm start continues from
    # (estimator, encoded rows, target class per row or None, approximate) -> (attribution per encoded
    # column, baseline per row), toward the target class's logit (classifiers) or the predicted value
    attributions: Callable[[Any, np.ndarray, np.ndarray | None, bool], tuple[np.ndarray, np.ndarray]] | None = None
    # a family that reads the training query's columns itself, without the automatic encoding or
    # a label (recommendation: users, items, ratings; forecasting: series): (model name, resolved
    # options, the query's rows) -> (estimator, ML.TRAINING_INFO rows, ML.EVALUATE's stored row)
    fit_rows: Callable[[str, dict[str, Any], Any], tuple[Estimator, Info, dict[str, Any]]] | None = None
    # ML.EVALUATE with input rows for such a family: (estimator, options, rows, settings) -> its output table
    evaluate_rows: Callable[[Any, dict[str, Any], Any, dict[str, Any]], Any] | None = None

    def __post_init__(self) -> None:
        unknown = self.functions - MODEL_SPECIFIC_FUNCTIONS
        if unknown:
            raise ValueError(f"model type {self.name}: unknown ML functions {sorted(unknown)}")
        if ("EXPLAIN_PREDICT" in self.functions or "GLOBAL_EXPLAIN" in self.functions) and self.attributions is None:
            raise ValueError(f"model type {self.name}: explaining predictions needs attributions")

    @property
    def supervised(self) -> bool:
        """Trained on a label (input_label_cols), evaluated on held-out rows."""
        return self.task in ("regression", "classification")

    @property
    def classifies(self) -> bool:
        """Predicts a class and its probabilities (ML.CONFUSION_MATRIX, ML.ROC_CURVE, thresholds)."""
        return self.task == "classification"

    def supports(self, function: str) -> bool:
        """Whether ML.<function> (one of MODEL_SPECIFIC_FUNCTIONS) applies to this model type."""
        return function in self.functions


def fits_rows_only(training: Training) -> tuple[Estimator, Info]:
    """``ModelType.fit`` of a family that has ``fit_rows`` instead (training.py never calls it)."""
    raise AssertionError(f"{training.model_type} fits from the query's rows (ModelType.fit_rows)")


_TYPES: dict[str, ModelType] = {}


def register(*types: ModelType) -> None:
    """Add a family's model types, all or none; a name registered twice is a programming error."""
    names = [t.name for t in types]
    twice = sorted({name for name in names if name in _TYPES or names.count(name) > 1})
    if twice:
        raise ValueError(f"model types registered twice: {', '.join(twice)}")
    _TYPES.update((t.name, t) for t in types)


def model_types() -> tuple[str, ...]:
    """Every model_type name, in registration order (the order messages list them in)."""
    return tuple(_TYPES)


def lookup(name: str) -> ModelType:
    """The registered model type ``name`` (lower case); ModelError naming the supported ones."""
    try:
        return _TYPES[name]
    except KeyError:
        raise ModelError(f"unknown model_type {name!r}; supported: " + ", ".join(_TYPES)) from None


def is_registered(name: str) -> bool:
    return name in _TYPES


def where(predicate: Callable[[ModelType], bool]) -> list[ModelType]:
    """The model types ``predicate`` holds for, in registration order (for messages)."""
    return [t for t in _TYPES.values() if predicate(t)]


def spoken_list(names: list[str], conjunction: str = "and") -> str:
    """``a, b and c``: names as a sentence lists them."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {conjunction} {names[-1]}"
