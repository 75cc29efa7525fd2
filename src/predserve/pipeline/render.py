"""Rendering: each prediction row becomes, once and at export time, the exact JSON body the
API returns for it. The API then serves the stored bytes without decoding or re-encoding.

Body: ``{"model": M, "id": "<key as text>", "snapshot": N, "prediction": {<other columns>}}``.
Rendering is vectorized: an in-process DuckDB turns a whole Arrow batch into JSON with
``to_json`` (doubles round-trip exactly). NaN and +/-Inf, which JSON cannot carry, become
null; timestamps become ISO-8601 strings.
"""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa

from predserve.errors import ExportError


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _value_sql(name: str, t: pa.DataType) -> str:
    col = _quote(name)
    if pa.types.is_floating(t):
        return f"CASE WHEN isfinite({col}) THEN {col} END"
    if pa.types.is_timestamp(t):
        fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if t.tz else "%Y-%m-%dT%H:%M:%S.%f"
        cast = f"{col}::TIMESTAMPTZ AT TIME ZONE 'UTC'" if t.tz else col
        return f"strftime({cast}, '{fmt}')"
    if pa.types.is_date(t):
        return f"strftime({col}, '%Y-%m-%d')"
    return col


class BodyRenderer:
    """Builds the rendering SQL once per schema and applies it to Arrow tables."""

    def __init__(self, model: str, snapshot: int, key: str) -> None:
        self.model, self.snapshot, self.key = model, snapshot, key
        self._con: duckdb.DuckDBPyConnection | None = None
        self._sql_by_schema: dict[pa.Schema, str] = {}

    def _sql(self, schema: pa.Schema) -> str:
        if self.key not in schema.names:
            raise ExportError(f"key column {self.key!r} is not in the export query's columns: {', '.join(schema.names)}")
        fields = [f for f in schema if f.name != self.key]
        struct = ", ".join(f"{_quote(f.name)} := {_value_sql(f.name, f.type)}" for f in fields)
        head = ('{"model":' + json.dumps(self.model) + ',"id":').replace("'", "''")
        key_text = f"CAST({_quote(self.key)} AS VARCHAR)"
        return (
            f"SELECT encode({key_text}) AS id, "
            f"encode('{head}' || to_json({key_text}) || ',\"snapshot\":{self.snapshot},\"prediction\":' "
            f"|| to_json(struct_pack({struct})) || '}}') AS body "
            f"FROM batch WHERE {_quote(self.key)} IS NOT NULL"
        )

    def render(self, table: pa.Table | pa.RecordBatch) -> tuple[list[bytes], list[bytes]]:
        """Return (ids, bodies) for every row with a non-NULL key."""
        if self._con is None:
            self._con = duckdb.connect()
        sql = self._sql_by_schema.get(table.schema)
        if sql is None:
            sql = self._sql_by_schema[table.schema] = self._sql(table.schema)
        self._con.register("batch", table)
        try:
            out = self._con.sql(sql).to_arrow_table()
        finally:
            self._con.unregister("batch")
        return out.column("id").to_pylist(), out.column("body").to_pylist()
