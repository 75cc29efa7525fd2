"""ML.EVALUATE, ML.CONFUSION_MATRIX and ML.ROC_CURVE, named and defined as BigQuery ML documents them.

Regression: mean_absolute_error, mean_squared_error, mean_squared_log_error,
median_absolute_error, r2_score, explained_variance.
Classification: precision, recall, accuracy, f1_score, log_loss, roc_auc; binary at the given
threshold (default 0.5) with the second (greater) label as positive; multiclass macro-averaged.
Clustering: davies_bouldin_index, mean_squared_distance.

A row is predicted positive when the positive class's probability is above the threshold, as
ML.PREDICT decides; multiclass rows get the most probable class. Without input rows, ML.EVALUATE,
ML.CONFUSION_MATRIX and ML.ROC_CURVE report the evaluation split (or the training rows), so
CREATE MODEL keeps what they need: the metrics, the confusion counts at the default threshold
and the ROC curve at its default thresholds (``StoredEvaluation``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from predserve.warehouse.models.storage import StoredModelError, array_field, array_to_data, records_field

ROC_PERCENTILES = 101  # the default thresholds: the distinct 0th, 1st, ..., 100th percentiles of the probabilities


def regression(y: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    from sklearn import metrics as skm  # here, not at import: exports and the API load the warehouse without scikit-learn

    msle = None
    if (y > -1).all() and (predicted > -1).all():
        msle = float(skm.mean_squared_log_error(y, predicted))
    return {
        "mean_absolute_error": float(skm.mean_absolute_error(y, predicted)),
        "mean_squared_error": float(skm.mean_squared_error(y, predicted)),
        "mean_squared_log_error": msle,
        "median_absolute_error": float(skm.median_absolute_error(y, predicted)),
        "r2_score": float(skm.r2_score(y, predicted)),
        "explained_variance": float(skm.explained_variance_score(y, predicted)),
    }


def classification(y: np.ndarray, probs: np.ndarray, threshold: float | None = None) -> dict[str, Any]:
    """Counts from one confusion matrix (numpy); ROC AUC from scikit-learn."""
    from sklearn import metrics as skm  # here, not at import: exports and the API load the warehouse without scikit-learn

    n, k = probs.shape
    confusion = confusion_counts(y, probs, threshold)
    tp = np.diag(confusion).astype(np.float64)
    predicted_count, actual_count = confusion.sum(axis=0), confusion.sum(axis=1)
    precision_each = np.divide(tp, predicted_count, out=np.zeros(k), where=predicted_count > 0)
    recall_each = np.divide(tp, actual_count, out=np.zeros(k), where=actual_count > 0)
    f1_each = np.divide(2 * tp, predicted_count + actual_count, out=np.zeros(k), where=(predicted_count + actual_count) > 0)
    if k == 2:  # binary: the positive class is the second (greater) label
        precision, recall, f1 = precision_each[1], recall_each[1], f1_each[1]
        auc = float(skm.roc_auc_score(y, probs[:, 1])) if 0 < actual_count[1] < n else None
    else:  # multiclass: macro averages
        precision, recall, f1 = precision_each.mean(), recall_each.mean(), f1_each.mean()
        try:
            auc = float(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro", labels=list(range(k))))
        except ValueError:
            auc = None
    chosen = np.clip(probs[np.arange(n), y], 1e-15, 1.0)
    return {
        "precision": float(precision),
        "recall": float(recall),
        "accuracy": float(tp.sum() / n),
        "f1_score": float(f1),
        "log_loss": float(-np.mean(np.log(chosen))),
        "roc_auc": auc,
    }


def clustering(x: np.ndarray, estimator: Any) -> dict[str, Any]:
    from sklearn import metrics as skm  # here, not at import: exports and the API load the warehouse without scikit-learn

    assignments = estimator.predict(x)
    distances = estimator.transform(x)
    nearest = distances[np.arange(len(x)), assignments]
    dbi = None
    if len(set(assignments.tolist())) > 1:
        dbi = float(skm.davies_bouldin_score(x, assignments))
    return {"davies_bouldin_index": dbi, "mean_squared_distance": float(np.mean(nearest**2))}


def predicted_classes(probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """The class index each row is predicted as: positive above the threshold (binary), else the most probable."""
    if probs.shape[1] == 2:
        return (probs[:, 1] > (0.5 if threshold is None else threshold)).astype(np.int64)
    return probs.argmax(axis=1)


def confusion_counts(y: np.ndarray, probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """(classes, classes) counts: rows are the true class, columns the predicted one."""
    k = probs.shape[1]
    return np.bincount(y * k + predicted_classes(probs, threshold), minlength=k * k).reshape(k, k)


def default_thresholds(sorted_positive: np.ndarray) -> np.ndarray:
    """ML.ROC_CURVE's thresholds when none are given: the distinct percentiles 0 to 100 of the
    predicted probabilities (discrete: values of the data), from the sorted probabilities."""
    n = len(sorted_positive)
    if not n:
        return np.zeros(0)
    index = np.clip(np.ceil(np.linspace(0.0, 1.0, ROC_PERCENTILES) * n).astype(np.int64) - 1, 0, n - 1)
    return np.unique(sorted_positive[index])


def roc_curve(y: np.ndarray, positive: np.ndarray, thresholds: np.ndarray | None = None) -> list[dict[str, Any]]:
    """ML.ROC_CURVE rows: per threshold (the default ones when None), recall,
    false_positive_rate and the four counts (``y`` is 1 for the positive class, ``positive``
    its probability; a row is predicted positive above the threshold)."""
    order = np.argsort(positive, kind="stable")
    sorted_probs, sorted_truth = positive[order], y[order]
    if thresholds is None:
        thresholds = default_thresholds(sorted_probs)
    positives_at_or_below = np.concatenate([[0], np.cumsum(sorted_truth)])  # among the i lowest probabilities
    total_positive, total = int(y.sum()), len(y)
    rows = []
    for threshold in thresholds:
        below = int(np.searchsorted(sorted_probs, threshold, side="right"))  # predicted negative: prob <= threshold
        fn = int(positives_at_or_below[below])
        tn = below - fn
        tp, fp = total_positive - fn, total - below - (total_positive - fn)
        rows.append({"threshold": float(threshold), "recall": tp / (tp + fn) if tp + fn else None,
                     "false_positive_rate": fp / (fp + tn) if fp + tn else None,
                     "true_positives": tp, "false_positives": fp, "true_negatives": tn, "false_negatives": fn})
    return rows


@dataclass
class StoredEvaluation:
    """What ML.CONFUSION_MATRIX and ML.ROC_CURVE report without input rows, kept at CREATE MODEL."""

    confusion: np.ndarray  # (classes, classes) counts at the default threshold
    roc: list[dict[str, Any]]  # ML.ROC_CURVE rows at the default thresholds (binary models; else empty)

    @classmethod
    def of(cls, y: np.ndarray, probs: np.ndarray) -> "StoredEvaluation":
        roc = roc_curve(y, probs[:, 1]) if probs.shape[1] == 2 else []
        return cls(confusion_counts(y, probs), roc)

    def to_data(self) -> dict[str, Any]:
        return {"confusion": array_to_data(self.confusion), "roc": self.roc}

    @classmethod
    def from_data(cls, data: dict[str, Any], num_classes: int) -> "StoredEvaluation":
        confusion = array_field(data, "confusion", 2)
        if confusion.shape != (num_classes, num_classes) or (confusion < 0).any():
            raise StoredModelError(f"the stored confusion counts have shape {confusion.shape}; the model has {num_classes} classes")
        return cls(confusion.astype(np.int64), records_field(data, "roc"))
