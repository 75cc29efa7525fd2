"""FARM_FINGERPRINT, BigQuery's hash function, for DuckDB.

BigQuery's FARM_FINGERPRINT(x) is FarmHash's Fingerprint64 of the string's bytes, as a signed
INT64; ML.HASH_BUCKETIZE buckets by it. DuckDB has no FarmHash, so every connection predserve
opens gets it as a vectorized Python function (pyfarmhash, Google's C++ FarmHash), under the
name sqlglot writes for BigQuery's FARM_FINGERPRINT.
"""

from __future__ import annotations

import duckdb
import farmhash
import pyarrow as pa


def farm_fingerprint(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Fingerprint64 of each string, as a signed 64-bit integer (NULL stays NULL)."""
    fingerprints = [None if v is None else farmhash.fingerprint64(v) for v in values.to_pylist()]
    return pa.array(fingerprints, pa.uint64()).cast(pa.int64(), safe=False)


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Make FARM_FINGERPRINT(VARCHAR) available on ``con`` (and on its cursors)."""
    con.create_function("farm_fingerprint", farm_fingerprint, ["VARCHAR"], "BIGINT", type="arrow", side_effects=False)
