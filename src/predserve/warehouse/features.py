"""Automatic feature preprocessing, as BigQuery ML documents it.

- Numeric columns: NULL -> the training mean; then standardized (mean 0, sample stddev 1)
  for every model except boosted trees (and kmeans with standardize_features=FALSE).
- BOOL, STRING, BYTES, DATE, DATETIME, TIME: one-hot encoded, one feature per distinct value;
  NULL is an extra category; a value unseen in training gets weight 0 (all zeros).
  Boosted trees get label encoding instead (unseen and NULL -> missing).
- TIMESTAMP: the Unix seconds, standardized (a simplification; see docs/sql.md).

The encoder is fitted once on the training rows, pickled with the model, and applied to
every Arrow batch at prediction time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from predserve.errors import ModelError


def expand_structs(data: pa.Table | pa.RecordBatch) -> pa.Table | pa.RecordBatch:
    """STRUCT columns become one column per field, named ``{struct}_{field}`` (BigQuery ML's rule)."""
    if not any(pa.types.is_struct(f.type) for f in data.schema):
        return data
    arrays, names = [], []
    for name, col in zip(data.schema.names, data.columns):
        if not pa.types.is_struct(col.type):
            arrays.append(col)
            names.append(name)
            continue
        for index, member in enumerate(col.type):
            if pa.types.is_struct(member.type):
                raise ModelError(f"STRUCT column {name!r} has a nested STRUCT field {member.name!r}; BigQuery ML does not allow nested STRUCTs")
            arrays.append(pc.struct_field(col, [index]))
            names.append(f"{name}_{member.name}")
    if isinstance(data, pa.Table):
        return pa.table(arrays, names=names)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _as_float(col: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    if pa.types.is_timestamp(col.type):
        col = pc.divide(col.cast(pa.int64()).cast(pa.float64()), _timestamp_divisor(col.type))
    return col.cast(pa.float64())


def _timestamp_divisor(t: pa.TimestampType) -> float:
    return {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[t.unit]


@dataclass
class NumericFeature:
    name: str
    mean: float
    stddev: float
    standardize: bool

    @property
    def output_names(self) -> list[str]:
        return [self.name]

    def encode(self, col: pa.Array) -> np.ndarray:
        col = _as_float(col)
        if col.null_count:
            col = pc.fill_null(col, self.mean)
        values = col.to_numpy(zero_copy_only=False) if isinstance(col, pa.Array) else col.to_numpy()
        if self.standardize:
            values = (values - self.mean) / self.stddev
        return values


@dataclass
class CategoricalFeature:
    name: str
    categories: list  # distinct training values, sorted; None (NULL) last when present
    one_hot: bool
    value_type: pa.DataType = field(default_factory=pa.string)

    @property
    def output_names(self) -> list[str]:
        if not self.one_hot:
            return [self.name]
        return [f"{self.name}_{'NULL' if c is None else c}" for c in self.categories]

    def _indices(self, col: pa.Array) -> np.ndarray:
        """Category index per row; -1 for values unseen in training."""
        known = [c for c in self.categories if c is not None]
        value_set = pa.array(known, type=self.value_type)
        idx = pc.index_in(col.cast(self.value_type), value_set=value_set)
        null_index = len(known) if None in self.categories else -1
        filled = pc.if_else(pc.is_null(col), null_index, pc.fill_null(idx, -1))
        return filled.to_numpy(zero_copy_only=False).astype(np.int64)

    def encode(self, col: pa.Array) -> np.ndarray:
        idx = self._indices(col)
        if not self.one_hot:
            out = idx.astype(np.float64)
            out[idx < 0] = np.nan  # missing for XGBoost
            return out
        matrix = np.zeros((len(idx), len(self.categories)), dtype=np.float64)
        seen = idx >= 0
        matrix[np.nonzero(seen)[0], idx[seen]] = 1.0
        return matrix


@dataclass
class MultiHotFeature:
    """A non-numeric ARRAY column: one feature per distinct element seen in training."""

    name: str
    categories: list  # distinct elements, sorted; None (a NULL array) last when present
    value_type: pa.DataType = field(default_factory=pa.string)

    @property
    def output_names(self) -> list[str]:
        return [f"{self.name}_{'NULL' if c is None else c}" for c in self.categories]

    def encode(self, col: pa.Array | pa.ChunkedArray) -> np.ndarray:
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        matrix = np.zeros((len(col), len(self.categories)), dtype=np.float64)
        known = [c for c in self.categories if c is not None]
        rows = pc.list_parent_indices(col).to_numpy(zero_copy_only=False)
        index = pc.index_in(pc.list_flatten(col).cast(self.value_type), value_set=pa.array(known, type=self.value_type))
        index = pc.fill_null(index, -1).to_numpy(zero_copy_only=False)
        seen = index >= 0  # elements unseen in training get weight 0
        matrix[rows[seen], index[seen]] = 1.0
        if None in self.categories:
            matrix[pc.is_null(col).to_numpy(zero_copy_only=False), len(known)] = 1.0
        return matrix


Feature = NumericFeature | CategoricalFeature | MultiHotFeature


@dataclass
class FeatureEncoder:
    """Turns Arrow batches of the feature columns into the model's float matrix."""

    features: list[Feature]

    @property
    def input_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def output_names(self) -> list[str]:
        return [n for f in self.features for n in f.output_names]

    @classmethod
    def fit(cls, table: pa.Table, columns: list[str], standardize: bool, one_hot: bool) -> "FeatureEncoder":
        features: list[Feature] = []
        for name in columns:
            col = table.column(name)
            t = col.type
            if is_numeric(t) or pa.types.is_timestamp(t):
                values = _as_float(col)
                mean = pc.mean(values).as_py()
                std = pc.stddev(values, ddof=1).as_py()
                if mean is None:
                    raise ModelError(f"feature column {name!r} is NULL in every training row; drop it from the query")
                features.append(NumericFeature(name, float(mean), float(std) if std else 1.0, standardize))
            elif pa.types.is_list(t) or pa.types.is_large_list(t):
                element = t.value_type
                if is_numeric(element) or pa.types.is_nested(element):
                    raise ModelError(
                        f"feature column {name!r} is an ARRAY of {element}; only arrays of strings, booleans or "
                        "dates are supported (they are multi-hot encoded)"
                    )
                elements = pc.unique(pc.list_flatten(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col))
                categories = sorted(v for v in elements.to_pylist() if v is not None)
                if col.null_count:
                    categories.append(None)
                features.append(MultiHotFeature(name, categories, element))
            elif pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_date(t) or pa.types.is_time(t):
                value_type = pa.large_string() if pa.types.is_large_string(t) else t
                distinct = pc.unique(col.drop_null() if isinstance(col, pa.Array) else col.combine_chunks().drop_null())
                categories: list = sorted(distinct.to_pylist())
                if col.null_count:
                    categories.append(None)
                features.append(CategoricalFeature(name, categories, one_hot, value_type))
            else:
                raise ModelError(
                    f"feature column {name!r} has type {t}, which predserve cannot use as a feature yet; "
                    "cast it to a number or a string in the training query"
                )
        return cls(features)

    def encode(self, batch: pa.RecordBatch | pa.Table) -> np.ndarray:
        missing = [n for n in self.input_names if n not in batch.schema.names]
        if missing:
            raise ModelError(
                "the input is missing column(s) the model was trained on: " + ", ".join(missing) +
                ". Select them in the ML.PREDICT/ML.EVALUATE input query."
            )
        # Column-major, so each feature fills a contiguous block; estimators accept either order.
        out = np.empty((batch.num_rows, len(self.output_names)), order="F")
        if batch.num_rows == 0:
            return out
        pos = 0
        for feature in self.features:
            part = feature.encode(batch.column(feature.name))  # (n,) or (n, width)
            width = 1 if part.ndim == 1 else part.shape[1]
            out[:, pos:pos + width] = part.reshape(len(part), width)
            pos += width
        return out
