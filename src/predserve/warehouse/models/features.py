"""Automatic feature preprocessing, as BigQuery ML documents it.

- Numeric columns: NULL -> the training mean; then standardized (mean 0, sample stddev 1)
  for every model except boosted trees (and kmeans with standardize_features=FALSE).
- BOOL, STRING, BYTES, DATE, DATETIME, TIME: one-hot encoded, one feature per distinct value;
  NULL is an extra category; a value unseen in training gets weight 0 (all zeros).
  DUMMY_ENCODING drops the most frequent category (its column stays, always 0, so its
  weight is 0.0). Boosted trees get label encoding instead (unseen and NULL -> missing).
- TIMESTAMP (an Arrow timestamp with a time zone; DuckDB's TIMESTAMPTZ): for linear and
  logistic regression, the standardized Unix seconds plus one-hot day of month, day of week,
  month, hour, minute, week of year (weeks start on Sunday) and year, named
  ``_TS_DOM_<col>`` etc. as BigQuery ML documents. Other model types get the Unix seconds.
- Non-numeric ARRAY: multi-hot encoded. Numeric ARRAY: no transformation, one feature per
  element position (every array must have the training length).

The encoder is fitted once on the training rows, stored with the model as plain data (each
feature's ``to_data``/``from_data``; see storage.py), and applied to every Arrow batch at
prediction time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from predserve.errors import ModelError
from predserve.warehouse.models.storage import (
    StoredModelError,
    array_field,
    array_to_data,
    bool_field,
    dict_field,
    float_field,
    list_field,
    optional_int_field,
    str_field,
    values_field,
    values_to_data,
)

MAX_MATRIX_BYTES = 4 * 2**30  # the float64 training matrix


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
    KIND: ClassVar[str] = "numeric"
    name: str
    mean: float
    stddev: float
    standardize: bool

    def to_data(self) -> dict[str, Any]:
        return {"kind": self.KIND, "name": self.name, "mean": self.mean, "stddev": self.stddev, "standardize": self.standardize}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "NumericFeature":
        return cls(str_field(data, "name"), float_field(data, "mean"), float_field(data, "stddev"), bool_field(data, "standardize"))

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


def _category_names(categories: list) -> list[str]:
    return ["NULL" if c is None else str(c) for c in categories]


@dataclass
class CategoricalFeature:
    KIND: ClassVar[str] = "categorical"
    name: str
    categories: list  # distinct training values, sorted; None (NULL) last when present
    one_hot: bool
    value_type: pa.DataType = field(default_factory=pa.string)
    dropped: int | None = None  # DUMMY_ENCODING: the index of the category encoded as all zeros

    def to_data(self) -> dict[str, Any]:
        return {"kind": self.KIND, "name": self.name, "categories": values_to_data(self.categories, self.value_type),
                "one_hot": self.one_hot, "dropped": self.dropped}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "CategoricalFeature":
        categories, value_type = values_field(data, "categories")
        dropped = optional_int_field(data, "dropped", 0, len(categories) - 1)
        return cls(str_field(data, "name"), categories, bool_field(data, "one_hot"), value_type, dropped)

    @property
    def category_names(self) -> list[str]:
        return _category_names(self.categories)

    @property
    def output_names(self) -> list[str]:
        if not self.one_hot:
            return [self.name]
        return [f"{self.name}_{c}" for c in self.category_names]

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
        seen = (idx >= 0) & (idx != (-1 if self.dropped is None else self.dropped))
        matrix[np.nonzero(seen)[0], idx[seen]] = 1.0
        return matrix


@dataclass
class TargetEncodedFeature:
    """TARGET_ENCODING (boosted trees): a category becomes the mean target of its training
    rows (the mean label for regression, the share of the positive class for binary
    classification); NULL is a category when seen in training; unseen values get the
    overall training mean."""

    KIND: ClassVar[str] = "target"
    name: str
    categories: CategoricalFeature  # the vocabulary, for the category index of each row
    means: list[float]
    default: float

    def to_data(self) -> dict[str, Any]:
        return {"kind": self.KIND, "name": self.name, "categories": self.categories.to_data(),
                "means": array_to_data(np.asarray(self.means, dtype=np.float64)), "default": self.default}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "TargetEncodedFeature":
        vocabulary = CategoricalFeature.from_data(dict_field(data, "categories"))
        means = array_field(data, "means", 1).tolist()
        if len(means) != len(vocabulary.categories):
            raise StoredModelError(f"feature {vocabulary.name!r} has {len(means)} target means for {len(vocabulary.categories)} categories")
        return cls(str_field(data, "name"), vocabulary, means, float_field(data, "default"))

    @property
    def output_names(self) -> list[str]:
        return [self.name]

    def encode(self, col: pa.Array) -> np.ndarray:
        idx = self.categories._indices(col)
        return np.where(idx >= 0, np.asarray(self.means + [self.default])[idx], self.default)

    @classmethod
    def fit(cls, name: str, col: pa.Array | pa.ChunkedArray, value_type: pa.DataType, target: np.ndarray) -> "TargetEncodedFeature":
        vocabulary = _fit_categorical(name, col, False, value_type, dummy=False)
        idx = vocabulary._indices(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
        sums = np.bincount(idx, weights=target, minlength=len(vocabulary.categories))
        counts = np.bincount(idx, minlength=len(vocabulary.categories))
        return cls(name, vocabulary, (sums / np.maximum(counts, 1)).tolist(), float(target.mean()))


@dataclass
class MultiHotFeature:
    """A non-numeric ARRAY column: one feature per distinct element seen in training."""

    KIND: ClassVar[str] = "multi_hot"
    name: str
    categories: list  # distinct elements, sorted; None (a NULL array) last when present
    value_type: pa.DataType = field(default_factory=pa.string)

    def to_data(self) -> dict[str, Any]:
        return {"kind": self.KIND, "name": self.name, "categories": values_to_data(self.categories, self.value_type)}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "MultiHotFeature":
        categories, value_type = values_field(data, "categories")
        return cls(str_field(data, "name"), categories, value_type)

    @property
    def category_names(self) -> list[str]:
        return _category_names(self.categories)

    @property
    def output_names(self) -> list[str]:
        return [f"{self.name}_{c}" for c in self.category_names]

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


@dataclass
class NumericArrayFeature:
    """A numeric ARRAY column: no transformation, one feature per element position.

    BigQuery ML passes numeric arrays through as they are; every array must have the length
    seen in training. A NULL array becomes the training mean of each position.
    """

    KIND: ClassVar[str] = "numeric_array"
    name: str
    means: list[float]

    def to_data(self) -> dict[str, Any]:
        return {"kind": self.KIND, "name": self.name, "means": array_to_data(np.asarray(self.means, dtype=np.float64))}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "NumericArrayFeature":
        means = array_field(data, "means", 1).tolist()
        if not means:
            raise StoredModelError("a numeric ARRAY feature has no element means")
        return cls(str_field(data, "name"), means)

    @property
    def category_names(self) -> list[str]:
        return [str(i) for i in range(len(self.means))]

    @property
    def output_names(self) -> list[str]:
        return [f"{self.name}_{i}" for i in range(len(self.means))]

    def encode(self, col: pa.Array | pa.ChunkedArray) -> np.ndarray:
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        width = len(self.means)
        lengths = pc.fill_null(pc.list_value_length(col), width).to_numpy(zero_copy_only=False)
        if (lengths != width).any():
            bad = int(lengths[lengths != width][0])
            raise ModelError(f"ARRAY feature {self.name!r} has an array of {bad} elements; the model was trained on arrays of {width}")
        matrix = np.tile(np.asarray(self.means, dtype=np.float64), (len(col), 1))
        valid = pc.is_valid(col).to_numpy(zero_copy_only=False)
        values = pc.list_flatten(col).cast(pa.float64())
        if values.null_count:
            raise ModelError(f"ARRAY feature {self.name!r} has NULL elements; BigQuery ML does not allow NULLs inside arrays")
        matrix[valid] = values.to_numpy(zero_copy_only=False).reshape(-1, width)
        return matrix

    @classmethod
    def fit(cls, name: str, col: pa.Array) -> "NumericArrayFeature":
        lengths = pc.unique(pc.list_value_length(col).drop_null()).to_pylist()
        if not lengths or lengths == [0]:
            raise ModelError(f"ARRAY feature {name!r} is NULL or empty in every training row; drop it from the query")
        if len(lengths) != 1:
            raise ModelError(f"ARRAY feature {name!r} has arrays of different lengths {sorted(lengths)[:5]}; "
                             "numeric arrays are used as they are, so every row needs the same length")
        flat = pc.list_flatten(col.drop_null()).cast(pa.float64()).to_numpy(zero_copy_only=False)
        if np.isnan(flat).any() or pc.list_flatten(col).null_count:
            raise ModelError(f"ARRAY feature {name!r} has NULL elements; BigQuery ML does not allow NULLs inside arrays")
        return cls(name, flat.reshape(-1, lengths[0]).mean(axis=0).tolist())


# BigQuery ML's TIMESTAMP components: (processed_input prefix, extractor of UTC timestamps).
def _week_of_year(ts: pa.Array) -> pa.Array:
    """BigQuery's EXTRACT(WEEK): weeks begin on Sunday; days before the first Sunday are week 0."""
    days_before = pc.subtract(pc.day_of_year(ts), 1)
    sunday_based = pc.day_of_week(ts, count_from_zero=True, week_start=7)
    return pc.divide(pc.add(pc.subtract(days_before, sunday_based), 7), 7)


TIMESTAMP_PARTS: dict[str, Any] = {
    "_TS_DOM_": pc.day,
    "_TS_DOW_": lambda ts: pc.day_of_week(ts, count_from_zero=False, week_start=7),  # 1 = Sunday, as BigQuery
    "_TS_MOY_": pc.month,
    "_TS_HOD_": pc.hour,
    "_TS_MOH_": pc.minute,
    "_TS_WOY_": _week_of_year,
    "_TS_YEAR_": pc.year,
}


def _utc(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A zoned timestamp as naive UTC, so calendar parts are UTC's, as BigQuery's are."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return col.cast(pa.timestamp(col.type.unit))


@dataclass
class TimestampFeature:
    """A TIMESTAMP column for linear models: Unix seconds plus one-hot calendar parts."""

    KIND: ClassVar[str] = "timestamp"
    name: str
    unix: NumericFeature
    parts: list[CategoricalFeature]  # named _TS_DOM_<name>, ... in TIMESTAMP_PARTS order

    def to_data(self) -> dict[str, Any]:
        return {"kind": self.KIND, "name": self.name, "unix": self.unix.to_data(), "parts": [p.to_data() for p in self.parts]}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "TimestampFeature":
        parts = [CategoricalFeature.from_data(p) for p in list_field(data, "parts")]
        if len(parts) != len(TIMESTAMP_PARTS):
            raise StoredModelError(f"a TIMESTAMP feature has {len(parts)} calendar parts; expected {len(TIMESTAMP_PARTS)}")
        return cls(str_field(data, "name"), NumericFeature.from_data(dict_field(data, "unix")), parts)

    @property
    def output_names(self) -> list[str]:
        return [n for f in (self.unix, *self.parts) for n in f.output_names]

    def encode(self, col: pa.Array | pa.ChunkedArray) -> np.ndarray:
        utc = _utc(col)
        blocks = [self.unix.encode(utc)[:, None]]
        for part, extract in zip(self.parts, TIMESTAMP_PARTS.values()):
            blocks.append(part.encode(extract(utc)))
        return np.hstack(blocks)

    @classmethod
    def fit(cls, name: str, col: pa.Array | pa.ChunkedArray, standardize: bool, dummy: bool) -> "TimestampFeature":
        utc = _utc(col)
        unix = _fit_numeric(name, utc, standardize)
        parts = [_fit_categorical(prefix + name, extract(utc), True, pa.int64(), dummy)
                 for prefix, extract in TIMESTAMP_PARTS.items()]
        return cls(name, unix, parts)


Feature = NumericFeature | CategoricalFeature | TargetEncodedFeature | MultiHotFeature | NumericArrayFeature | TimestampFeature
FEATURE_KINDS: dict[str, type] = {kind.KIND: kind for kind in (NumericFeature, CategoricalFeature, TargetEncodedFeature,
                                                                MultiHotFeature, NumericArrayFeature, TimestampFeature)}


def _fit_numeric(name: str, col: pa.Array | pa.ChunkedArray, standardize: bool) -> NumericFeature:
    values = _as_float(col)
    mean = pc.mean(values).as_py()
    std = pc.stddev(values, ddof=1).as_py()
    if mean is None:
        raise ModelError(f"feature column {name!r} is NULL in every training row; drop it from the query")
    return NumericFeature(name, float(mean), float(std) if std else 1.0, standardize)


def _fit_categorical(name: str, col: pa.Array | pa.ChunkedArray, one_hot: bool, value_type: pa.DataType,
                     dummy: bool, drop: Any = None) -> CategoricalFeature:
    """``dummy``: drop the most frequent category; ``drop``: drop this one (TRANSFORM's choice)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    categories: list = sorted(pc.unique(col.drop_null()).to_pylist())
    if col.null_count:
        categories.append(None)
    dropped = categories.index(drop) if one_hot and drop in categories else None
    if dummy and one_hot and dropped is None:
        # The most frequent category; ties go to the first in sort order (BigQuery picks at random).
        counts = pc.value_counts(col)
        values, freq = counts.field("values").to_pylist(), counts.field("counts").to_numpy()
        top = max(freq)
        dropped = min(categories.index(v) for v, f in zip(values, freq) if f == top)
    return CategoricalFeature(name, categories, one_hot, value_type, dropped)


@dataclass
class FeatureEncoder:
    """Turns Arrow batches of the feature columns into the model's float matrix."""

    features: list[Feature]

    def to_data(self) -> dict[str, Any]:
        return {"features": [f.to_data() for f in self.features]}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "FeatureEncoder":
        features = []
        for stored in list_field(data, "features"):
            kind = str_field(stored, "kind")
            if kind not in FEATURE_KINDS:
                raise StoredModelError(f"unknown feature kind {kind!r}; expected one of {sorted(FEATURE_KINDS)}")
            features.append(FEATURE_KINDS[kind].from_data(stored))
        return cls(features)

    @property
    def input_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def output_names(self) -> list[str]:
        return [n for f in self.features for n in f.output_names]

    @property
    def processed_features(self) -> list[Feature]:
        """The features as ML.WEIGHTS lists them: a TIMESTAMP's Unix seconds and calendar parts apart."""
        out: list[Feature] = []
        for f in self.features:
            out.extend([f.unix, *f.parts] if isinstance(f, TimestampFeature) else [f])
        return out

    @classmethod
    def fit(cls, table: pa.Table, columns: list[str], standardize: bool, one_hot: bool,
            timestamp_parts: bool = False, dummy: bool = False, dropped: dict[str, Any] | None = None,
            target: np.ndarray | None = None) -> "FeatureEncoder":
        """``one_hot`` False: label encoding (boosted trees). ``timestamp_parts``: expand
        TIMESTAMPs into calendar parts (linear models). ``dummy``: DUMMY_ENCODING.
        ``dropped``: column -> the category to encode as all zeros (from TRANSFORM).
        ``target``: TARGET_ENCODING of categories, with this per-row target."""
        features: list[Feature] = []
        for name in columns:
            col = table.column(name)
            t = col.type
            if pa.types.is_timestamp(t) and t.tz is not None and timestamp_parts:
                features.append(TimestampFeature.fit(name, col, standardize, dummy))
            elif is_numeric(t) or (pa.types.is_timestamp(t) and t.tz is not None):
                features.append(_fit_numeric(name, col, standardize))
            elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
                flat_col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
                element = t.value_type
                if is_numeric(element):
                    features.append(NumericArrayFeature.fit(name, flat_col))
                    continue
                if pa.types.is_nested(element):
                    raise ModelError(f"feature column {name!r} is an ARRAY of {element}; arrays of STRUCTs or arrays are not supported")
                categories = sorted(v for v in pc.unique(pc.list_flatten(flat_col)).to_pylist() if v is not None)
                if col.null_count:
                    categories.append(None)
                features.append(MultiHotFeature(name, categories, element))
            elif (pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
                  or pa.types.is_date(t) or pa.types.is_time(t) or pa.types.is_timestamp(t)):
                if target is not None:
                    features.append(TargetEncodedFeature.fit(name, col, t, target))
                else:
                    features.append(_fit_categorical(name, col, one_hot, t, dummy, (dropped or {}).get(name)))
            else:
                raise ModelError(
                    f"feature column {name!r} has type {t}, which predserve cannot use as a feature yet; "
                    "cast it to a number or a string in the training query"
                )
        encoder = cls(features)
        encoder._check_size(table.num_rows)
        return encoder

    def _check_size(self, rows: int) -> None:
        """One-hot encoding gives a column per distinct value: refuse what cannot fit in memory."""
        width = len(self.output_names)
        if rows * width * 8 > MAX_MATRIX_BYTES:
            widest = max(self.features, key=lambda f: len(f.output_names))
            raise ModelError(
                f"the encoded training data would be {rows:,} rows x {width:,} columns ({rows * width * 8 / 2**30:.1f} GiB); "
                f"column {widest.name!r} alone gives {len(widest.output_names):,} (one per distinct value). Drop or bucket "
                "high-cardinality columns such as ids, and turn DATETIMEs into parts (EXTRACT) or TIMESTAMPs."
            )

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
