"""The subset of BigQuery's GEOGRAPHY functions that points on a sphere need, as SQL rewrites.

DuckDB's spatial extension is not published for the DuckDB version predserve uses (and cannot
be downloaded offline), but BigQuery ML's tutorials only need points and the distance between
them: the k-means tutorial computes ``ST_DISTANCE(ST_GEOGPOINT(lon, lat), ST_GEOGPOINT(-0.1, 51.5))``.
So a point is a ``STRUCT<longitude FLOAT64, latitude FLOAT64>`` and each supported function is
rewritten, in the BigQuery tree before it is generated for DuckDB, into plain SQL:

- ``ST_GEOGPOINT(longitude, latitude)``: the point (latitude outside [-90, 90] is an error, as in
  BigQuery; longitude outside [-180, 180] is wrapped into it);
- ``ST_X(point)`` / ``ST_Y(point)``: its longitude / latitude;
- ``ST_DISTANCE(a, b)``: the great-circle distance in metres on a sphere of the Earth's mean
  radius (haversine); ``use_spheroid`` is refused;
- ``ST_DWITHIN(a, b, metres)``: ``ST_DISTANCE(a, b) <= metres``.

Every other ``ST_`` function and the GEOGRAPHY type stay refused with a message (engine.py).
"""

from __future__ import annotations

import sqlglot.expressions as exp

from predserve.errors import SQLError

EARTH_RADIUS_METRES = 6371008.8  # the Earth's mean radius (IUGG), the sphere S2-based systems measure on
SUPPORTED = ("ST_GEOGPOINT", "ST_X", "ST_Y", "ST_DISTANCE", "ST_DWITHIN")


def function_name(node: exp.Expression) -> str | None:
    """The upper-case name of an ``ST_`` function call, or None for anything else."""
    if not isinstance(node, exp.Func):
        return None
    name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).upper()
    return name if name.startswith("ST_") else None


def rewrite(tree: exp.Expression) -> exp.Expression:
    """``tree`` with the supported ``ST_`` functions replaced by plain SQL, innermost first (so an
    outer call's arguments are already rewritten when it is)."""
    calls = [node for node in tree.walk(bfs=False) if function_name(node) in SUPPORTED]
    for node in reversed(calls):  # depth-first pre-order reversed: every call after the calls inside it
        replacement = _rewrite_node(node)
        if node is tree:
            return replacement
        node.replace(replacement)
    return tree


def _arguments(node: exp.Func, name: str, count: int) -> list[exp.Expression]:
    if isinstance(node, exp.Anonymous):
        args = list(node.expressions)
    else:
        args = [node.this, node.expression] + list(node.expressions or [])
        args = [a for a in args if a is not None]
        extra = [v for k, v in node.args.items() if k not in ("this", "expression", "expressions") and v is not None]
        args += extra
    if len(args) != count:
        hint = " (use_spheroid is not supported: distances are on a sphere)" if name == "ST_DISTANCE" else ""
        raise SQLError(f"{name} takes {count} arguments in predserve's warehouse, got {len(args)}{hint}")
    return [a.copy() for a in args]


def _rewrite_node(node: exp.Expression) -> exp.Expression:
    name = function_name(node)
    if name not in SUPPORTED:
        return node
    assert isinstance(node, exp.Func)
    if name == "ST_GEOGPOINT":
        longitude, latitude = _arguments(node, name, 2)
        return _point(longitude, latitude)
    if name in ("ST_X", "ST_Y"):
        (point,) = _arguments(node, name, 1)
        return exp.Dot(this=exp.paren(point, copy=False), expression=exp.to_identifier("longitude" if name == "ST_X" else "latitude"))
    if name == "ST_DISTANCE":
        a, b = _arguments(node, name, 2)
        return _distance(a, b)
    a, b, metres = _arguments(node, name, 3)
    return exp.paren(exp.LTE(this=_distance(a, b), expression=metres), copy=False)


def _point(longitude: exp.Expression, latitude: exp.Expression) -> exp.Expression:
    lon, lat = (f"CAST(({e.sql('bigquery')}) AS FLOAT64)" for e in (longitude, latitude))
    sql = (f"STRUCT(MOD(MOD({lon} + 180, 360) + 360, 360) - 180 AS longitude, "
           f"IF({lat} BETWEEN -90 AND 90 OR {lat} IS NULL, {lat}, "
           f"ERROR('ST_GEOGPOINT: latitude must be in [-90, 90]')) AS latitude)")
    return exp.maybe_parse(sql, dialect="bigquery")


def _distance(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    pa, pb = (f"({e.sql('bigquery')})" for e in (a, b))
    half_dlat = f"(ACOS(-1) / 180 * ({pb}.latitude - {pa}.latitude) / 2)"
    half_dlon = f"(ACOS(-1) / 180 * ({pb}.longitude - {pa}.longitude) / 2)"
    haversine = (f"POW(SIN({half_dlat}), 2) + COS(ACOS(-1) / 180 * {pa}.latitude) * "
                 f"COS(ACOS(-1) / 180 * {pb}.latitude) * POW(SIN({half_dlon}), 2)")
    sql = f"(2 * {EARTH_RADIUS_METRES} * ASIN(LEAST(1.0, SQRT({haversine}))))"
    return exp.maybe_parse(sql, dialect="bigquery")
