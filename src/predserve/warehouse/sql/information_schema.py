"""BigQuery's INFORMATION_SCHEMA views, answered from the warehouse file, and DESCRIBE.

A BigQuery user lists a dataset's tables and a table's columns with
``SELECT * FROM dataset.INFORMATION_SCHEMA.COLUMNS WHERE table_name = 't'``. The engine
replaces each such view in a query by a relation built here from DuckDB's own
information_schema, with BigQuery's column names and type names (STRING, INT64, ARRAY<...>).

- ``dataset.INFORMATION_SCHEMA.X`` covers one dataset (a DuckDB schema); with no dataset, the
  default one (``main``); with a region (``region-us``), every dataset but predserve's own
  ``_predserve``, as a project-wide view does in BigQuery.
- SCHEMATA, TABLES and COLUMNS are answered, with the columns listed below; every other
  view is an error that names the ones there are.
"""

from __future__ import annotations

import re

import duckdb
import pyarrow as pa
import sqlglot.expressions as exp
from sqlglot.errors import ParseError

from predserve.errors import SQLError

INTERNAL_DATASETS = ("_predserve",)
COLUMNS = {  # view -> its columns, in BigQuery's order (the subset of BigQuery's that DuckDB knows)
    "SCHEMATA": ("catalog_name", "schema_name"),
    "TABLES": ("table_catalog", "table_schema", "table_name", "table_type", "is_insertable_into"),
    "COLUMNS": ("table_catalog", "table_schema", "table_name", "column_name", "ordinal_position", "is_nullable",
                "data_type"),
}
_QUERIES = {
    "SCHEMATA": "SELECT catalog_name, schema_name FROM information_schema.schemata",
    "TABLES": "SELECT table_catalog, table_schema, table_name, table_type, is_insertable_into FROM information_schema.tables",
    "COLUMNS": "SELECT table_catalog, table_schema, table_name, column_name, ordinal_position, is_nullable, data_type "
               "FROM information_schema.columns",
}
_ORDER = {"SCHEMATA": "schema_name", "TABLES": "table_schema, table_name",
          "COLUMNS": "table_schema, table_name, ordinal_position"}
# What sqlglot's BigQuery generator leaves in DuckDB's terms, said in BigQuery's.
_LEFTOVER_TYPES = {"UINT": "INT64", "USMALLINT": "INT64", "UTINYINT": "INT64", "UBIGINT": "INT64", "INT128": "INT64",
                   "UINT128": "INT64", "TIMESTAMP_NS": "DATETIME", "TIMESTAMP_MS": "DATETIME", "TIMESTAMP_S": "DATETIME",
                   "TIMETZ": "TIME", "BIT": "BYTES"}
_LEFTOVER = re.compile(r"\b(" + "|".join(_LEFTOVER_TYPES) + r")\b")


def bigquery_type(duck_type: str) -> str:
    """A DuckDB type as BigQuery writes it: VARCHAR -> STRING, STRUCT(x INTEGER)[] -> ARRAY<STRUCT<x INT64>>."""
    if duck_type.startswith("ENUM("):
        return "STRING"
    try:
        text = exp.DataType.build(duck_type, dialect="duckdb").sql("bigquery")
    except (ParseError, ValueError):
        return duck_type
    return _LEFTOVER.sub(lambda m: _LEFTOVER_TYPES[m.group(1)], text)


def view_name(table: exp.Table) -> str | None:
    """SCHEMATA, TABLES, COLUMNS, ... when ``table`` is an INFORMATION_SCHEMA view, else None."""
    prefix, _, view = table.name.partition(".")
    return view.upper() if prefix.upper() == "INFORMATION_SCHEMA" and view else None


def rows(con: duckdb.DuckDBPyConnection, table: exp.Table) -> pa.Table:
    """The rows of one INFORMATION_SCHEMA view, as the query named it."""
    view = view_name(table)
    assert view is not None
    if view not in COLUMNS:
        raise SQLError(f"INFORMATION_SCHEMA.{view} is not available in the local warehouse: it has "
                       + ", ".join(f"INFORMATION_SCHEMA.{v}" for v in COLUMNS)
                       + " (and DESCRIBE table lists one table's columns)")
    qualifier = table.db
    datasets = [name for (name,) in con.execute(
        "SELECT schema_name FROM information_schema.schemata WHERE catalog_name = current_database() "
        "ORDER BY schema_name").fetchall()]
    if view == "SCHEMATA" or qualifier.lower().startswith("region-"):
        wanted = [d for d in datasets if d not in INTERNAL_DATASETS]
    else:
        dataset = qualifier or "main"
        match = next((d for d in datasets if d.lower() == dataset.lower()), None)
        if match is None:
            raise SQLError(f"dataset {dataset} does not exist (datasets: {', '.join(datasets)}); "
                           "CREATE SCHEMA creates one")
        wanted = [match]
    schema_column = "schema_name" if view == "SCHEMATA" else "table_schema"
    catalog_column = "catalog_name" if view == "SCHEMATA" else "table_catalog"
    result = con.sql(
        f"{_QUERIES[view]} WHERE {catalog_column} = current_database() AND list_contains(?, {schema_column}) "
        f"AND NOT starts_with({'schema_name' if view == 'SCHEMATA' else 'table_name'}, '__predserve') "
        f"ORDER BY {_ORDER[view]}", params=[wanted]).to_arrow_table()
    if view == "COLUMNS":
        types = [bigquery_type(t) for t in result.column("data_type").to_pylist()]
        result = result.set_column(result.schema.get_field_index("data_type"), "data_type", pa.array(types, pa.string()))
    return result


def describe(described: pa.Table) -> pa.Table:
    """DuckDB's DESCRIBE result as BigQuery's COLUMNS view has it: column_name, data_type, is_nullable."""
    return pa.table({
        "column_name": described.column("column_name"),
        "data_type": pa.array([bigquery_type(t) for t in described.column("column_type").to_pylist()], pa.string()),
        "is_nullable": described.column("null"),
    })
