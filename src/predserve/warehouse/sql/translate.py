"""The one way BigQuery SQL becomes DuckDB SQL: read with predserve's dialect, rewrite, generate.

Every place that runs BigQuery SQL on DuckDB goes through :func:`to_duckdb`: the warehouse's
statements (engine.py, after the ML functions and preprocessing are replaced), a model's
TRANSFORM expressions (models/transform.py, models/preprocessing.py) and the export's profile
and drift statements (pipeline/profile.py, which adds :func:`fast_fingerprints`). So a
rewrite added here (geography, ARRAY_AGG ... LIMIT) applies to all of them at once.
"""

from __future__ import annotations

import sqlglot
import sqlglot.expressions as exp
from sqlglot.errors import ErrorLevel, UnsupportedError

from predserve.errors import SQLError
from predserve.warehouse.sql import geography
from predserve.warehouse.sql.dialect import Predserve

GEOGRAPHY_MESSAGE = (
    "geography ({what}) is not available in predserve's warehouse: BigQuery's GEOGRAPHY functions need the "
    "embedded engine's spatial extension, which is not published for the engine version predserve uses and cannot "
    "be downloaded offline; only " + ", ".join(geography.SUPPORTED) + " are (points on a sphere). Compute other "
    "spatial features in BigQuery, or store them as FLOAT64 columns (e.g. latitude, longitude)"
)


def read_bigquery(sql: str) -> exp.Expression:
    """One statement or expression of BigQuery SQL, read with predserve's dialect."""
    return sqlglot.parse_one(sql, read=Predserve)


def to_duckdb(tree: exp.Expression) -> str:
    """A BigQuery tree (ML functions already replaced) as DuckDB SQL; what DuckDB cannot do is an SQLError."""
    tree = geography.rewrite(tree)  # points and distances on a sphere; other ST_ functions are refused next
    tree = tree.transform(_array_agg_limit)
    refuse_geography(tree)
    for table in tree.find_all(exp.Table):
        if table.args.get("catalog") is not None:
            table.set("catalog", None)  # the project part: the warehouse file is the project
    try:
        return tree.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as exc:
        raise SQLError(f"this statement cannot run on the local warehouse: {exc}") from None


def fast_fingerprints(node: exp.Expression) -> exp.Expression:
    """``FARM_FINGERPRINT(CAST(x AS STRING))`` as DuckDB's ``hash(x)`` (for ``tree.transform``).

    For orderings that need to be deterministic but not BigQuery's (the export's drift sample):
    DuckDB has FarmHash only as the warehouse's Python function, and its own hash of the value is
    the cheapest deterministic one it has (MD5, the one hash both engines share, costs four
    times as much). Never for values a user sees (ML.HASH_BUCKETIZE keeps FarmHash).
    """
    if not isinstance(node, exp.FarmFingerprint):
        return node
    (value,) = node.expressions
    return exp.Anonymous(this="hash", expressions=[value.this if isinstance(value, exp.Cast) else value])


def _array_agg_limit(node: exp.Expression) -> exp.Expression:
    """BigQuery's ``ARRAY_AGG(x ORDER BY y LIMIT n)`` (the top-N per id of ML.RECOMMEND and
    ML.FORECAST exports) as the ordered aggregate's first n elements: DuckDB has no LIMIT there."""
    if not isinstance(node, exp.ArrayAgg) or not isinstance(node.this, exp.Limit):
        return node
    limit = node.this
    aggregate = exp.ArrayAgg(this=limit.this.copy())
    return exp.func("ARRAY_SLICE", aggregate, exp.Literal.number(1), limit.expression.copy())


def refuse_geography(tree: exp.Expression) -> None:
    for node in tree.walk():
        if isinstance(node, exp.DataType) and node.this in (exp.DataType.Type.GEOGRAPHY, exp.DataType.Type.GEOMETRY):
            raise SQLError(GEOGRAPHY_MESSAGE.format(what="the GEOGRAPHY type"))
        name = geography.function_name(node)
        if name is not None:
            raise SQLError(GEOGRAPHY_MESSAGE.format(what=name))
        if isinstance(node, exp.Parameter):
            raise SQLError(f"query parameters ({node.sql('bigquery')}) are not supported; DECLARE a variable instead")
