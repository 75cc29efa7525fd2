"""KMEANS: k-means as BigQuery ML documents it, Lloyd iterations, one pass over the rows each.

- ``num_clusters`` defaults to log10(rows), rounded, within [2, 100] (BigQuery's documented default).
- ``kmeans_init_method``: RANDOM picks ``num_clusters`` distinct rows (seeded, so repeatable);
  KMEANS++ uses scikit-learn's k-means++ seeding; CUSTOM takes the rows the caller marks.
- ``distance_type``: EUCLIDEAN ``|x - c|``, or COSINE ``sqrt(1 - x.c / (|x| |c|))``.
- Stops after ``max_iterations`` (default 20), or, with ``early_stop``, after the first
  iteration whose relative loss improvement is below ``min_rel_progress``. The loss is the
  mean squared distance to the nearest centroid, as ML.EVALUATE reports it; every iteration
  is an ML.TRAINING_INFO row.

ML.DETECT_ANOMALIES uses the normalized distance BigQuery ML defines: a row's distance to a
centroid divided by that cluster's radius (the root mean square distance of the cluster's
training rows to it), the smallest over the centroids. ``contamination`` (the share of the
training rows taken as anomalous) sets the cutoff: the (1 - contamination) quantile of the
training rows' normalized distances, which CREATE MODEL keeps at 0.05% steps
(``ANOMALY_QUANTILES``); a row above the cutoff is an anomaly. ML.CENTROIDS reports the
centroids in the inputs' units (or standardized).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from predserve.errors import ModelError
from predserve.warehouse.models import outputs
from predserve.warehouse.models.features import FeatureEncoder, NumericFeature
from predserve.warehouse.models.options import COMMON, non_negative, positive
from predserve.warehouse.models.registry import Encoding, Info, ModelType, Option, Training, register
from predserve.warehouse.models.storage import StoredModelError, array_field, array_to_data, str_field

KMEANS = "kmeans"

SEED = 0
ANOMALY_QUANTILES = 1001  # the 50th to 100th percentiles of the training rows' normalized distances, 0.05% apart


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
    # for ML.DETECT_ANOMALIES (absent from models stored before it existed): each cluster's
    # radius and the upper half of the training rows' normalized distances (ANOMALY_QUANTILES)
    cluster_radius: np.ndarray | None = None
    anomaly_quantiles: np.ndarray | None = None

    def to_data(self) -> dict[str, Any]:
        data = {"centroids": array_to_data(self.cluster_centers_), "distance_type": self.distance_type}
        if self.cluster_radius is not None and self.anomaly_quantiles is not None:
            data.update(cluster_radius=array_to_data(self.cluster_radius), anomaly_quantiles=array_to_data(self.anomaly_quantiles))
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any], num_features: int) -> "KMeansModel":
        centroids = array_field(data, "centroids", 2).astype(np.float64)
        distance_type = str_field(data, "distance_type")
        if distance_type not in DISTANCE_TYPES or centroids.shape[1] != num_features or len(centroids) < 1:
            raise StoredModelError(f"the {distance_type!r} centroids have shape {centroids.shape}; "
                                   f"the model needs a known distance type and {num_features} features")
        model = cls(centroids, distance_type)
        if "cluster_radius" in data:
            model.cluster_radius = array_field(data, "cluster_radius", 1).astype(np.float64)
            model.anomaly_quantiles = array_field(data, "anomaly_quantiles", 1).astype(np.float64)
            if model.cluster_radius.shape != (len(centroids),) or model.anomaly_quantiles.shape != (ANOMALY_QUANTILES,):
                raise StoredModelError("the stored cluster radii or anomaly quantiles do not match the centroids")
        return model

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

    def normalized_distances(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row's smallest normalized distance and the (0-based) centroid it is to."""
        if self.cluster_radius is None:
            raise ModelError("this kmeans model was stored before ML.DETECT_ANOMALIES existed; re-create it with CREATE OR REPLACE MODEL")
        distances = self.transform(x)
        radius = self.cluster_radius[None, :]
        # a cluster of one point (radius 0) makes any other row infinitely far, its own point 0
        normalized = np.divide(distances, radius, out=np.where(distances > 0, np.inf, 0.0), where=radius > 0)
        nearest = normalized.argmin(axis=1) if len(x) else np.zeros(0, dtype=np.int64)
        return normalized[np.arange(len(x)), nearest], nearest

    def anomaly_cutoff(self, contamination: float) -> float:
        """The normalized distance above which a row is an anomaly, for ``contamination`` in [0, 0.5]."""
        step = (0.5 - contamination) * 2 * (ANOMALY_QUANTILES - 1)  # quantile 1 - contamination: steps above the median
        index = int(round(step)) if abs(step - round(step)) < 1e-6 else int(np.ceil(step))
        return float(self.anomaly_quantiles[index])

    def fit_anomaly_statistics(self, x: np.ndarray) -> None:
        """Cluster radii and the normalized distances' upper quantiles, from the training rows."""
        distances = self.transform(x)
        nearest = distances.argmin(axis=1)
        squared = np.bincount(nearest, weights=distances[np.arange(len(x)), nearest] ** 2, minlength=self.n_clusters)
        sizes = np.bincount(nearest, minlength=self.n_clusters)
        self.cluster_radius = np.sqrt(np.divide(squared, sizes, out=np.zeros(self.n_clusters), where=sizes > 0))
        normalized, _ = self.normalized_distances(x)
        self.anomaly_quantiles = np.quantile(normalized, np.linspace(0.5, 1.0, ANOMALY_QUANTILES), method="inverted_cdf")


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
    model.fit_anomaly_statistics(x)
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


# ---- ML.CENTROIDS -------------------------------------------------------------------------------------
CATEGORY_VALUES = pa.list_(pa.struct([("category", pa.string()), ("value", pa.string())]))


def centroids_table(encoder: FeatureEncoder, model: KMeansModel, standardize: bool) -> pa.Table:
    """ML.CENTROIDS: one row per centroid and feature: centroid_id, feature, numerical_value
    (numeric features, in the inputs' units unless ``standardize``), categorical_value (each
    category's share among the centroid's rows, categories with none left out) and
    geography_value (always NULL: GEOGRAPHY features do not exist here)."""
    rows: list[dict[str, Any]] = []
    for centroid_id, centroid in enumerate(model.cluster_centers_, 1):
        pos = 0
        for feature in encoder.features:
            width = len(feature.output_names)
            part = centroid[pos:pos + width]
            pos += width
            if isinstance(feature, NumericFeature):
                value = float(part[0])
                if feature.standardize and not standardize:
                    value = value * feature.stddev + feature.mean
                elif standardize and not feature.standardize:
                    value = (value - feature.mean) / feature.stddev
                rows.append({"centroid_id": centroid_id, "feature": feature.name, "numerical_value": value, "categorical_value": []})
            else:
                names = getattr(feature, "category_names", feature.output_names)
                shares = [{"category": name, "value": repr(float(v))} for name, v in zip(names, part) if v != 0]
                rows.append({"centroid_id": centroid_id, "feature": feature.name, "numerical_value": None, "categorical_value": shares})
    for row in rows:
        row["geography_value"] = None
    schema = pa.schema([("centroid_id", pa.int64()), ("feature", pa.string()), ("numerical_value", pa.float64()),
                        ("categorical_value", CATEGORY_VALUES), ("geography_value", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema)


# ---- the model type -----------------------------------------------------------------------------------
OPTIONS: dict[str, Option] = {
    "num_clusters": Option(int, None, lambda v: 2 <= v <= 100, help="between 2 and 100"),
    "kmeans_init_method": Option(str, "RANDOM", choices=("RANDOM", "KMEANS++", "CUSTOM")),
    "kmeans_init_col": Option(str, None),
    "distance_type": Option(str, "EUCLIDEAN", choices=DISTANCE_TYPES),
    "standardize_features": Option(bool, True),
    "max_iterations": Option(int, 20, positive, help="a positive integer"),
    "early_stop": Option(bool, True),
    "min_rel_progress": Option(float, 0.01, non_negative, help="zero or more"),
    "warm_start": Option(bool, False),
    "model_type": COMMON["model_type"],
}


def _fit(t: Training) -> tuple[KMeansModel, Info]:
    init_col = t.options.get("kmeans_init_col")
    init_rows = None
    if init_col and t.initial is None:  # a warm start begins from the stored centroids instead
        if init_col not in t.table.schema.names or not pa.types.is_boolean(t.table.column(init_col).type):
            raise ModelError(f"kmeans_init_col {init_col!r} must name a BOOL column of the training query")
        init_rows = pc.fill_null(t.table.column(init_col), False).to_numpy(zero_copy_only=False)
    return fit(t.options, t.x, init_rows, t.initial)


register(ModelType(
    KMEANS, "clustering", OPTIONS, fit=_fit, predict=outputs.clustering,
    load=lambda data, width, classes: KMeansModel.from_data(data, width),
    encoding=lambda options: Encoding(standardize=options["standardize_features"], one_hot=True),
    warm_start=lambda estimator: estimator.cluster_centers_,
    functions=frozenset({"CENTROIDS", "DETECT_ANOMALIES"}),
))
