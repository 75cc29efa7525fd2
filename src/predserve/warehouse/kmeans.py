"""k-means as BigQuery ML documents it: Lloyd iterations, one pass over the rows each.

- ``num_clusters`` defaults to log10(rows), rounded, within [2, 100] (BigQuery's documented default).
- ``kmeans_init_method``: RANDOM picks ``num_clusters`` distinct rows (seeded, so repeatable);
  KMEANS++ uses scikit-learn's k-means++ seeding; CUSTOM takes the rows the caller marks.
- ``distance_type``: EUCLIDEAN ``|x - c|``, or COSINE ``sqrt(1 - x.c / (|x| |c|))``.
- Stops after ``max_iterations`` (default 20), or, with ``early_stop``, after the first
  iteration whose relative loss improvement is below ``min_rel_progress``. The loss is the
  mean squared distance to the nearest centroid, as ML.EVALUATE reports it; every iteration
  is an ML.TRAINING_INFO row.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from predserve.errors import ModelError
from predserve.warehouse.storage import StoredModelError, array_field, array_to_data, str_field

SEED = 0


def default_num_clusters(rows: int) -> int:
    return int(min(100, max(2, math.floor(math.log10(max(rows, 1)) + 0.5))))


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


DISTANCE_TYPES = ("EUCLIDEAN", "COSINE")


@dataclass
class KMeansModel:
    """The centroids, one row per cluster, in the encoded feature space."""

    cluster_centers_: np.ndarray
    distance_type: str = "EUCLIDEAN"

    def to_data(self) -> dict[str, Any]:
        return {"centroids": array_to_data(self.cluster_centers_), "distance_type": self.distance_type}

    @classmethod
    def from_data(cls, data: dict[str, Any], num_features: int) -> "KMeansModel":
        centroids = array_field(data, "centroids", 2).astype(np.float64)
        distance_type = str_field(data, "distance_type")
        if distance_type not in DISTANCE_TYPES or centroids.shape[1] != num_features or len(centroids) < 1:
            raise StoredModelError(f"the {distance_type!r} centroids have shape {centroids.shape}; "
                                   f"the model needs a known distance type and {num_features} features")
        return cls(centroids, distance_type)

    @property
    def n_clusters(self) -> int:
        return len(self.cluster_centers_)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Distance from every row to every centroid, (rows, clusters)."""
        c = self.cluster_centers_
        if self.distance_type == "COSINE":
            return np.sqrt(np.clip(1.0 - _unit(x) @ _unit(c).T, 0.0, None))
        squared = (x * x).sum(axis=1)[:, None] - 2.0 * x @ c.T + (c * c).sum(axis=1)[None, :]
        return np.sqrt(np.clip(squared, 0.0, None))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.transform(x).argmin(axis=1)


def _initial_centroids(options: dict[str, Any], x: np.ndarray, init_rows: np.ndarray | None) -> np.ndarray:
    method = options["kmeans_init_method"]
    if method == "CUSTOM":
        if init_rows is None:
            raise ModelError("kmeans_init_method='CUSTOM' needs kmeans_init_col: a BOOL column, TRUE for the initial centroids")
        k = int(init_rows.sum())
        if options["num_clusters"] and options["num_clusters"] != k:
            raise ModelError(f"num_clusters={options['num_clusters']} but kmeans_init_col marks {k} rows as initial centroids")
        if k < 2:
            raise ModelError(f"kmeans_init_col marks {k} rows as initial centroids; it needs at least 2")
        return x[init_rows].copy()
    if options.get("kmeans_init_col"):
        raise ModelError("kmeans_init_col only applies with kmeans_init_method='CUSTOM'")
    k = options["num_clusters"] or default_num_clusters(len(x))
    if k > len(x):
        raise ModelError(f"num_clusters={k} is more than the {len(x)} training rows")
    if method == "KMEANS++":
        from sklearn.cluster import kmeans_plusplus  # imported when used: loading a model should not import it

        return kmeans_plusplus(x, k, random_state=SEED)[0]
    return x[np.random.default_rng(SEED).choice(len(x), size=k, replace=False)].copy()


def fit(options: dict[str, Any], x: np.ndarray, init_rows: np.ndarray | None = None,
        initial: np.ndarray | None = None) -> tuple[KMeansModel, list[dict[str, Any]]]:
    """``init_rows``: for kmeans_init_method='CUSTOM', the rows whose kmeans_init_col is TRUE.
    ``initial``: for a warm start, the centroids to continue from."""
    centroids = initial.copy() if initial is not None else _initial_centroids(options, x, init_rows)
    model = KMeansModel(centroids, options["distance_type"])
    points = _unit(x) if model.distance_type == "COSINE" else x
    info: list[dict[str, Any]] = []
    nearest, distance = _nearest(model, x)
    previous = float(np.mean(distance ** 2))
    started = time.time()
    for iteration in range(options["max_iterations"]):
        centers = model.cluster_centers_.copy()
        counts = np.bincount(nearest, minlength=model.n_clusters)
        sums = np.column_stack([np.bincount(nearest, weights=points[:, j], minlength=model.n_clusters)
                                for j in range(points.shape[1])])
        filled = counts > 0  # an empty cluster keeps its centroid
        centers[filled] = sums[filled] / counts[filled, None]
        model.cluster_centers_ = centers
        nearest, distance = _nearest(model, x)
        loss = float(np.mean(distance ** 2))
        info.append({"iteration": iteration, "loss": loss, "learning_rate": None,
                     "duration_ms": int((time.time() - started) * 1000), "cluster_info": _cluster_info(nearest, distance, model.n_clusters)})
        started = time.time()
        if options["early_stop"] and previous - loss < options["min_rel_progress"] * previous:
            break
        previous = loss
    return model, info


def _nearest(model: KMeansModel, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's nearest centroid (0-based) and its distance to it."""
    distances = model.transform(x)
    nearest = distances.argmin(axis=1)
    return nearest, distances[np.arange(len(x)), nearest]


def _cluster_info(nearest: np.ndarray, distance: np.ndarray, k: int) -> list[dict[str, Any]]:
    """ML.TRAINING_INFO's cluster_info: per centroid, its size and radius (the root mean
    squared distance of its rows; BigQuery does not define the radius further)."""
    sizes = np.bincount(nearest, minlength=k)
    squared = np.bincount(nearest, weights=distance ** 2, minlength=k)
    return [{"centroid_id": c + 1, "cluster_radius": float(np.sqrt(squared[c] / sizes[c])) if sizes[c] else 0.0,
             "cluster_size": int(sizes[c])} for c in range(k)]
