"""The stored model format: plain data, so that loading a warehouse file never runs code.

Warehouse files are shared and downloaded like any data file, so a model row is untrusted
input. A model is stored in ``_predserve.models.payload`` as

    b"predserve-model\\n" + a UTF-8 JSON document {"format_version": 1, "model": {...}}

The document holds JSON values only (Python's json writes each float as the shortest text
that reads back as the same float64, so numbers survive bit for bit, NaN included), with
three encodings for what JSON has no type for, each decoded only by the class that expects
it (``from_data`` methods; there is no generic decoding hook):

- numeric arrays (weights, centroids, means): ``{"dtype": "float64", "shape": [2, 3],
  "base64": ...}``, the array's little-endian bytes. Chosen over JSON lists of floats
  because ML.PREDICT loads the model on every call and a large model then decodes with one
  base64 pass instead of a float parse per element; and over ``.npy`` or Arrow IPC because
  there is no header or buffer layout to parse: a dtype from a list of two and a shape whose
  byte count is checked against the text's length before anything is decoded.
- typed values (category vocabularies, class labels) with their Arrow type
  (``{"type": {"name": "timestamp", "unit": "us", "tz": "UTC"}, "values": [...]}``): dates
  and times as integer ticks, bytes as base64, rebuilt by Arrow.
- XGBoost boosters: XGBoost's own JSON model format, checked tree by tree (trees.py)
  before XGBoost reads it.

``format_version`` changes whenever the document's layout does. This predserve reads
version 1; a payload in any other format (including the pickles older predserve versions
wrote, which are recognised and never unpickled) is refused with a ``StoredModelError``
naming the reason, and the catalog tells the user to re-create the model.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

import numpy as np
import pyarrow as pa

FORMAT_VERSION = 1
MAGIC = b"predserve-model\n"
MAX_PAYLOAD_BYTES = 256 * 2**20  # far above any model CREATE MODEL makes here; refused before reading
MAX_ARRAY_DIMENSIONS = 2
ARRAY_DTYPES = {"float64": np.dtype("<f8"), "int64": np.dtype("<i8")}
PICKLE_PROTOCOL_OPCODE = 0x80  # the first byte of every pickle since protocol 2


class StoredModelError(ValueError):
    """A stored model that this predserve cannot read; the message says why."""


# ---- the payload -----------------------------------------------------------------------------
def dump(model: dict[str, Any]) -> bytes:
    """The payload for a model's ``to_data()``. Only JSON types are accepted, so a value that
    could not be read back as it was written fails here, at CREATE MODEL."""
    document = {"format_version": FORMAT_VERSION, "model": model}
    payload = MAGIC + json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise StoredModelError(f"the model is {len(payload) / 2**20:,.0f} MiB stored, over the "
                               f"{MAX_PAYLOAD_BYTES // 2**20} MiB limit; use fewer features, trees or categories")
    return payload


def check_size(size: int | None) -> None:
    """Refuse a payload by its size, before it is read."""
    if size is None:
        raise StoredModelError("its payload is empty")
    if size > MAX_PAYLOAD_BYTES:
        raise StoredModelError(f"its payload is {size:,} bytes, over the {MAX_PAYLOAD_BYTES:,}-byte limit")


def load(payload: bytes) -> dict[str, Any]:
    """The ``model`` part of a payload written by ``dump``; never executes anything."""
    check_size(len(payload))
    if not payload.startswith(MAGIC):
        if payload[:1] == bytes([PICKLE_PROTOCOL_OPCODE]):
            raise StoredModelError("it was saved by an older predserve as a Python pickle, which is no longer "
                                   "loaded because unpickling a file can run any code")
        raise StoredModelError("its payload is not in predserve's model format")
    try:
        document = json.loads(payload[len(MAGIC):].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise StoredModelError(f"its payload is not valid JSON ({exc})") from None
    if not isinstance(document, dict) or "format_version" not in document:
        raise StoredModelError("its payload has no format_version")
    version = document["format_version"]
    if version != FORMAT_VERSION:
        raise StoredModelError(f"it is stored in model format {version!r}; this predserve reads format {FORMAT_VERSION}")
    return dict_field(document, "model")


# ---- checked fields ------------------------------------------------------------------------------
def _field(data: Any, key: str, kinds: tuple[type, ...], what: str) -> Any:
    if not isinstance(data, dict):
        raise StoredModelError(f"expected an object holding {key!r}, found {type(data).__name__}")
    if key not in data:
        raise StoredModelError(f"the field {key!r} is missing")
    value = data[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise StoredModelError(f"the field {key!r} should be {what}, found {type(value).__name__}")
    return value


def str_field(data: Any, key: str) -> str:
    return _field(data, key, (str,), "text")


def optional_str_field(data: Any, key: str) -> str | None:
    return _field(data, key, (str, type(None)), "text or null")


def int_field(data: Any, key: str, low: int = 0, high: int = 2**62) -> int:
    value = _field(data, key, (int,), "an integer")
    if not low <= value <= high:
        raise StoredModelError(f"the field {key!r} is {value}, outside [{low}, {high}]")
    return value


def optional_int_field(data: Any, key: str, low: int = 0, high: int = 2**62) -> int | None:
    return None if _field(data, key, (int, type(None)), "an integer or null") is None else int_field(data, key, low, high)


def float_field(data: Any, key: str) -> float:
    return float(_field(data, key, (int, float), "a number"))


def bool_field(data: Any, key: str) -> bool:
    return _field(data, key, (bool,), "true or false")


def list_field(data: Any, key: str) -> list:
    return _field(data, key, (list,), "a list")


def dict_field(data: Any, key: str) -> dict:
    return _field(data, key, (dict,), "an object")


def records_field(data: Any, key: str) -> list[dict[str, Any]]:
    """A list of JSON objects that make a table (ML.TRAINING_INFO or ML.FEATURE_INFO rows)."""
    rows = list_field(data, key)
    if not all(isinstance(row, dict) for row in rows):
        raise StoredModelError(f"the field {key!r} should hold objects only")
    try:
        pa.Table.from_pylist(rows)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise StoredModelError(f"the field {key!r} does not make a table ({exc})") from None
    return rows


def record_field(data: Any, key: str) -> dict[str, Any]:
    """A JSON object that makes a one-row table (the ML.EVALUATE metrics)."""
    return records_field({key: [dict_field(data, key)]}, key)[0]


# ---- numeric arrays ------------------------------------------------------------------------------
def array_to_data(array: np.ndarray) -> dict[str, Any]:
    array = np.asarray(array)
    dtype = "int64" if array.dtype.kind in "iub" else "float64"
    raw = np.ascontiguousarray(array, dtype=ARRAY_DTYPES[dtype]).tobytes()
    return {"dtype": dtype, "shape": list(array.shape), "base64": base64.b64encode(raw).decode("ascii")}


def array_field(data: Any, key: str, ndim: int) -> np.ndarray:
    """The ``ndim``-dimensional array stored under ``key``; its size is checked against the
    stored text before a byte is decoded."""
    stored = dict_field(data, key)
    dtype_name = str_field(stored, "dtype")
    if dtype_name not in ARRAY_DTYPES:
        raise StoredModelError(f"array {key!r} has dtype {dtype_name!r}; expected one of {sorted(ARRAY_DTYPES)}")
    shape = list_field(stored, "shape")
    if len(shape) != ndim or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise StoredModelError(f"array {key!r} has shape {shape!r}; expected {ndim} non-negative sizes")
    text = str_field(stored, "base64")
    nbytes = math.prod(shape) * ARRAY_DTYPES[dtype_name].itemsize
    if len(text) != 4 * ((nbytes + 2) // 3):  # base64 length, before decoding
        raise StoredModelError(f"array {key!r} claims shape {shape} but holds {len(text)} characters of data")
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise StoredModelError(f"array {key!r} is not valid base64 ({exc})") from None
    if len(raw) != nbytes:
        raise StoredModelError(f"array {key!r} claims shape {shape} but holds {len(raw)} bytes")
    return np.frombuffer(raw, dtype=ARRAY_DTYPES[dtype_name]).astype(ARRAY_DTYPES[dtype_name].newbyteorder("="), copy=True).reshape(shape)


# ---- typed values ----------------------------------------------------------------------------------
_SIMPLE_TYPES: dict[str, pa.DataType] = {
    str(t): t for t in (pa.bool_(), pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(),
                        pa.uint64(), pa.string(), pa.large_string(), pa.binary(), pa.large_binary(), pa.date32(), pa.date64())
}
# a UTC offset (+01:00) or a tz database name (Europe/Paris): never a path
TIME_ZONE = re.compile(r"[+-]\d{2}:\d{2}|[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}")
_TIME_UNITS = {"time32": ("s", "ms"), "time64": ("us", "ns"), "timestamp": ("s", "ms", "us", "ns")}


def type_to_data(t: pa.DataType) -> dict[str, Any]:
    if str(t) in _SIMPLE_TYPES and _SIMPLE_TYPES[str(t)] == t:
        return {"name": str(t)}
    if pa.types.is_time32(t) or pa.types.is_time64(t):
        return {"name": "time32" if pa.types.is_time32(t) else "time64", "unit": t.unit}
    if pa.types.is_timestamp(t):
        return {"name": "timestamp", "unit": t.unit, "tz": t.tz}
    raise StoredModelError(f"values of type {t} cannot be stored in a model")


def type_field(data: Any, key: str) -> pa.DataType:
    stored = dict_field(data, key)
    name = str_field(stored, "name")
    if name in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[name]
    if name not in _TIME_UNITS:
        raise StoredModelError(f"{key!r} names the unknown type {name!r}")
    unit = str_field(stored, "unit")
    if unit not in _TIME_UNITS[name]:
        raise StoredModelError(f"{key!r}: {name} has no unit {unit!r}")
    if name == "timestamp":
        tz = optional_str_field(stored, "tz")
        if tz is not None and not TIME_ZONE.fullmatch(tz):
            raise StoredModelError(f"{key!r} has the time zone {tz[:50]!r}; expected an offset or a zone name")
        return pa.timestamp(unit, tz)
    return pa.time32(unit) if name == "time32" else pa.time64(unit)


def _physical(t: pa.DataType) -> pa.DataType | None:
    """The integer type temporal values are stored as (their ticks), or None."""
    if pa.types.is_date32(t) or pa.types.is_time32(t):
        return pa.int32()
    if pa.types.is_date64(t) or pa.types.is_time64(t) or pa.types.is_timestamp(t):
        return pa.int64()
    return None


def values_to_data(values: list, t: pa.DataType) -> dict[str, Any]:
    """A list of Python values of Arrow type ``t`` (None for NULL), as JSON."""
    array = pa.array(values, type=t)
    physical = _physical(t)
    if physical is not None:
        stored = array.cast(physical).to_pylist()
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
        stored = [None if v is None else base64.b64encode(v).decode("ascii") for v in array.to_pylist()]
    else:
        stored = array.to_pylist()
    return {"type": type_to_data(t), "values": stored}


def values_field(data: Any, key: str) -> tuple[list, pa.DataType]:
    """The (values, Arrow type) stored by ``values_to_data`` under ``key``."""
    stored = dict_field(data, key)
    t = type_field(stored, "type")
    values = list_field(stored, "values")
    physical = _physical(t)
    try:
        if physical is not None:
            array = pa.array(values, type=physical).cast(t)
        elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
            array = pa.array([None if v is None else base64.b64decode(v, validate=True) for v in values], type=t)
        else:
            array = pa.array(values, type=t)
        return array.to_pylist(), t
    except (pa.ArrowException, TypeError, ValueError, binascii.Error) as exc:
        raise StoredModelError(f"{key!r} holds values that are not {t} ({exc})") from None
