"""Rendering: each prediction row becomes, once and at export time, the exact JSON body the
API returns for it. The API then serves the stored bytes without decoding or re-encoding.

Body: ``{"model": M, "id": "<key as text>", "snapshot": N, "prediction": {<other columns>}}``.
Rendering is vectorized: an in-process DuckDB turns a whole Arrow batch into JSON with
``to_json`` (doubles round-trip exactly). NaN and +/-Inf, which JSON cannot carry, become
null; timestamps become ISO-8601 strings and dates YYYY-MM-DD, inside ARRAY and STRUCT values
too. NUMERIC (decimal128) is a JSON number with its scale's digits; BIGNUMERIC (decimal256),
which no JSON parser reads exactly as a number, is a string of its exact digits.
"""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa

from predserve.errors import ExportError
from predserve.identifiers import quote_identifier
from predserve.keys import key_columns, key_sql


def _needs_rewrite(t: pa.DataType) -> bool:
    """Whether a value of this type, at any depth, must be rewritten before ``to_json``."""
    if pa.types.is_floating(t) or pa.types.is_timestamp(t) or pa.types.is_date(t):
        return True
    if pa.types.is_struct(t):
        return any(_needs_rewrite(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _needs_rewrite(t.value_type)
    return False


def _value_sql(expr: str, t: pa.DataType, depth: int = 0) -> str:
    """SQL that turns ``expr`` into what the body shows: finite numbers or null, ISO-8601 times,
    at the top level and inside ARRAY and STRUCT values alike."""
    if pa.types.is_floating(t):
        return f"CASE WHEN isfinite({expr}) THEN {expr} END"
    if pa.types.is_timestamp(t):
        fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if t.tz else "%Y-%m-%dT%H:%M:%S.%f"
        cast = f"{expr}::TIMESTAMPTZ AT TIME ZONE 'UTC'" if t.tz else expr
        return f"strftime({cast}, '{fmt}')"
    if pa.types.is_date(t):
        return f"strftime({expr}, '%Y-%m-%d')"
    if not _needs_rewrite(t):
        return expr
    if pa.types.is_struct(t):
        fields = [t.field(i) for i in range(t.num_fields)]
        packed = ", ".join(f"{quote_identifier(f.name)} := {_value_sql(f'{expr}.{quote_identifier(f.name)}', f.type, depth)}" for f in fields)
        return f"CASE WHEN {expr} IS NOT NULL THEN struct_pack({packed}) END"
    element = f"x{depth}"
    return f"list_transform({expr}, lambda {element}: {_value_sql(element, t.value_type, depth + 1)})"


def _without_decimal256(t: pa.DataType) -> pa.DataType:
    """BIGNUMERIC (decimal256) has no DuckDB type: it becomes text holding its exact digits."""
    if isinstance(t, pa.Decimal256Type):
        return pa.string()
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_without_decimal256(f.type)) for f in (t.field(i) for i in range(t.num_fields))])
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(_without_decimal256(t.value_type)))
    if pa.types.is_large_list(t):
        return pa.large_list(t.value_field.with_type(_without_decimal256(t.value_type)))
    return t


def duckdb_compatible(table: pa.Table | pa.RecordBatch) -> pa.Table | pa.RecordBatch:
    """The table with every type DuckDB can read (decimal256 -> exact text); unchanged if it already is."""
    target = pa.schema([f.with_type(_without_decimal256(f.type)) for f in table.schema])
    if target.equals(table.schema, check_metadata=False):
        return table
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    return table.cast(target)


def id_sql(key: tuple[str, ...]) -> str:
    """DuckDB SQL for a row's id as text (a composite key: its values joined, keys.py)."""
    return f"CAST({key_sql(key)} AS VARCHAR)"


class BodyRenderer:
    """Builds the rendering SQL once per schema and applies it to Arrow tables."""

    def __init__(self, model: str, snapshot: int, key: str | tuple[str, ...]) -> None:
        self.model, self.snapshot, self.key = model, snapshot, key_columns(key)
        self._con: duckdb.DuckDBPyConnection | None = None
        self._sql_by_schema: dict[pa.Schema, str] = {}

    def _sql(self, schema: pa.Schema) -> str:
        for column in self.key:
            if column not in schema.names:
                raise ExportError(f"key column {column!r} is not in the export query's columns: {', '.join(schema.names)}")
        fields = [f for f in schema if f.name not in self.key]
        struct = ", ".join(f"{quote_identifier(f.name)} := {_value_sql(quote_identifier(f.name), f.type)}" for f in fields)
        head = ('{"model":' + json.dumps(self.model) + ',"id":').replace("'", "''")
        key_text = id_sql(self.key)
        return (
            f"SELECT encode({key_text}) AS id, "
            f"encode('{head}' || to_json({key_text}) || ',\"snapshot\":{self.snapshot},\"prediction\":' "
            f"|| to_json(struct_pack({struct})) || '}}') AS body "
            f"FROM batch WHERE {key_text} IS NOT NULL"
        )

    def render(self, table: pa.Table | pa.RecordBatch) -> tuple[list[bytes], list[bytes]]:
        """Return (ids, bodies) for every row with a non-NULL key."""
        if self._con is None:
            self._con = duckdb.connect()
        table = duckdb_compatible(table)
        sql = self._sql_by_schema.get(table.schema)
        if sql is None:
            sql = self._sql_by_schema[table.schema] = self._sql(table.schema)
        self._con.register("batch", table)
        try:
            out = self._con.sql(sql).to_arrow_table()
        finally:
            self._con.unregister("batch")
        return out.column("id").to_pylist(), out.column("body").to_pylist()
