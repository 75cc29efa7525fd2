"""What CREATE MODEL keeps for ML.GLOBAL_EXPLAIN, and how encoded columns group into features.

``GlobalExplanation``: the mean absolute attributions over the evaluation rows (the training
rows without a split), computed at CREATE MODEL when ``enable_global_explain`` is TRUE
(training.py) and stored with the model: per feature for the predicted classes, and per class
toward that class's logit. ml/explain.py reads it and explains single predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from predserve.errors import ModelError
from predserve.warehouse.models.features import FeatureEncoder
from predserve.warehouse.models.registry import ModelType
from predserve.warehouse.models.storage import StoredModelError, array_field, array_to_data, list_field


def check_explainable(kind: ModelType, model: str, function: str) -> None:
    """ModelError unless the model type attributes its predictions to features."""
    if kind.attributions is None:
        raise ModelError(f"{function} explains supervised models (linear, logistic, boosted tree, random forest); "
                         f"{model} is {kind.name}")


def feature_names(encoder: FeatureEncoder) -> list[str]:
    """The input features attributions are reported for, in the encoder's order."""
    return [f.name for f in encoder.features]


def feature_starts(encoder: FeatureEncoder) -> np.ndarray:
    """The first encoded column of each input feature (features are contiguous blocks)."""
    widths = [len(f.output_names) for f in encoder.features]
    return np.cumsum([0] + widths[:-1]).astype(np.int64)


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
