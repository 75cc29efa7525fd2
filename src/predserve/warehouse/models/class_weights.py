"""auto_class_weights and class_weights: per-row training weights for classifiers (logistic
regression's gradient descent and XGBoost's sample weights read the same)."""

from __future__ import annotations

from typing import Any

import numpy as np

from predserve.errors import ModelError


def class_weights(options: dict[str, Any], classes: list[Any]) -> dict[int, float] | str | None:
    """'balanced' (auto_class_weights), a weight per class index (class_weights), or None."""
    if options.get("auto_class_weights") and options.get("class_weights"):
        raise ModelError("set auto_class_weights or class_weights, not both")
    if options.get("auto_class_weights"):
        return "balanced"
    given = options.get("class_weights")
    if not given:
        return None
    weights = {}
    for entry in given:
        # STRUCT('label', weight): a tuple from the statement, a list once stored (warm start)
        fields = tuple(entry.values()) if isinstance(entry, dict) else tuple(entry) if isinstance(entry, list) else entry
        if not isinstance(fields, tuple) or len(fields) != 2 or not isinstance(fields[1], (int, float)):
            raise ModelError(f"class_weights must be an array of STRUCT('label', weight), got {given!r}")
        label, weight = fields
        matches = [i for i, c in enumerate(classes) if str(c) == str(label)]
        if not matches:
            raise ModelError(f"class_weights names label {label!r}, which is not in the training labels {classes}")
        weights[matches[0]] = float(weight)
    if len(weights) != len(classes):
        missing = [c for i, c in enumerate(classes) if i not in weights]
        raise ModelError(f"class_weights needs a weight for every label; missing: {missing}")
    return weights


def sample_weights(class_weight: dict[int, float] | str | None, y: np.ndarray, num_classes: int) -> np.ndarray | None:
    """Per-row weights from auto_class_weights ('balanced': n / (rows of the class * classes)) or class_weights."""
    if class_weight == "balanced":
        counts = np.bincount(y, minlength=num_classes)
        return (len(y) / (num_classes * np.maximum(counts, 1)))[y]
    if class_weight:
        return np.array([class_weight.get(i, 1.0) for i in range(num_classes)])[y]
    return None


def row_class_weights(options: dict[str, Any], classes: list[Any], y: np.ndarray) -> np.ndarray | None:
    """Each training row's weight from auto_class_weights or class_weights (None: unweighted)."""
    return sample_weights(class_weights(options, classes), y, len(classes))
