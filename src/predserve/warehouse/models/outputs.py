"""ML.PREDICT's output shapes: the columns a model puts before the input columns, per row.

A family's ``ModelType.predict`` is one of these (or its own, for a new shape): a regressor's
``predicted_<label>``; a classifier's ``predicted_<label>`` and ``predicted_<label>_probs``
(ARRAY<STRUCT<label, prob>>, every class); a clustering model's ``CENTROID_ID`` and
``NEAREST_CENTROIDS_DISTANCE`` (ARRAY<STRUCT<CENTROID_ID, DISTANCE>>, nearest first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from predserve.errors import ModelError

if TYPE_CHECKING:
    from predserve.warehouse.models.trained import TrainedModel

Columns = tuple[list[pa.Array], list[str]]


def regression(model: "TrainedModel", x: np.ndarray, threshold: float | None) -> Columns:
    values = model.estimator.predict(x) if len(x) else np.zeros(0)
    return [pa.array(np.asarray(values, dtype=np.float64))], [model.output_prefix]


def classification(model: "TrainedModel", x: np.ndarray, threshold: float | None) -> Columns:
    probs = model.estimator.predict_proba(x) if len(x) else np.zeros((0, len(model.classes)))
    probs = np.asarray(probs, dtype=np.float64)
    k = len(model.classes)
    if k == 2:
        cut = 0.5 if threshold is None else threshold
        chosen = (probs[:, 1] > cut).astype(np.int64)
    else:
        if threshold is not None:
            raise ModelError("STRUCT(threshold) only applies to binary classification models")
        chosen = probs.argmax(axis=1)
    labels = pa.array(model.classes, type=model.label_type)
    predicted = labels.take(pa.array(chosen))
    n = len(probs)
    offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
    entries = pa.StructArray.from_arrays(
        [labels.take(pa.array(np.tile(np.arange(k), n))), pa.array(probs.ravel())],
        names=["label", "prob"],
    )
    return [predicted, pa.ListArray.from_arrays(offsets, entries)], [model.output_prefix, f"{model.output_prefix}_probs"]


def clustering(model: "TrainedModel", x: np.ndarray, threshold: float | None) -> Columns:
    k = model.estimator.n_clusters
    distances = model.estimator.transform(x) if len(x) else np.zeros((0, k))
    order = np.argsort(distances, axis=1)
    n = len(distances)
    offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
    entries = pa.StructArray.from_arrays(
        [pa.array((order + 1).ravel()), pa.array(np.take_along_axis(distances, order, axis=1).ravel())],
        names=["CENTROID_ID", "DISTANCE"],
    )
    centroid = pa.array(order[:, 0] + 1 if n else np.zeros(0, dtype=np.int64))
    return [centroid, pa.ListArray.from_arrays(offsets, entries)], ["CENTROID_ID", "NEAREST_CENTROIDS_DISTANCE"]
