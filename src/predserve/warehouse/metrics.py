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
    k = probs.shape[1]
    labels = list(range(k))
    if k == 2:
        cut = 0.5 if threshold is None else threshold
        predicted = (probs[:, 1] > cut).astype(np.int64)
        average = "binary"
        auc = float(skm.roc_auc_score(y, probs[:, 1])) if len(set(y.tolist())) == 2 else None
    else:
        predicted = probs.argmax(axis=1)
        average = "macro"
        try:
            auc = float(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro", labels=labels))
        except ValueError:
            auc = None
    return {
        "precision": float(skm.precision_score(y, predicted, average=average, labels=labels if k > 2 else None, zero_division=0)),
        "recall": float(skm.recall_score(y, predicted, average=average, labels=labels if k > 2 else None, zero_division=0)),
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "f1_score": float(skm.f1_score(y, predicted, average=average, labels=labels if k > 2 else None, zero_division=0)),
        "log_loss": float(skm.log_loss(y, np.clip(probs, 1e-15, 1 - 1e-15), labels=labels)),
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
