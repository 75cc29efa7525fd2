"""ML.EVALUATE metrics, named and defined as BigQuery ML documents them.

Regression: mean_absolute_error, mean_squared_error, mean_squared_log_error,
median_absolute_error, r2_score, explained_variance.
Classification: precision, recall, accuracy, f1_score, log_loss, roc_auc; binary at the given
threshold (default 0.5) with the second (greater) label as positive; multiclass macro-averaged.
Clustering: davies_bouldin_index, mean_squared_distance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm


def regression(y: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
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
    n, k = probs.shape
    if k == 2:
        cut = 0.5 if threshold is None else threshold
        predicted = (probs[:, 1] > cut).astype(np.int64)
    else:
        predicted = probs.argmax(axis=1)
    confusion = np.bincount(y * k + predicted, minlength=k * k).reshape(k, k)  # rows: truth, columns: predicted
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
    assignments = estimator.predict(x)
    distances = estimator.transform(x)
    nearest = distances[np.arange(len(x)), assignments]
    dbi = None
    if len(set(assignments.tolist())) > 1:
        dbi = float(skm.davies_bouldin_score(x, assignments))
    return {"davies_bouldin_index": dbi, "mean_squared_distance": float(np.mean(nearest**2))}
