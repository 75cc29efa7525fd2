"""One way to quote an identifier in the SQL predserve generates, for DuckDB and for BigQuery.

Column, table and key names come from users' tables: every one that is spliced into generated
SQL goes through ``quote_identifier``, which leaves the escaping to sqlglot's dialects (DuckDB
doubles ``"``; BigQuery backslash-escapes inside backticks). A light module: the export and
serving stages use it without importing the warehouse.
"""

from __future__ import annotations

from typing import Literal

import sqlglot.expressions as exp

Dialect = Literal["duckdb", "bigquery"]


def quote_identifier(name: str, dialect: Dialect = "duckdb") -> str:
    """``name`` as a quoted identifier of ``dialect``, safe in SQL whatever characters it holds."""
    return exp.to_identifier(name, quoted=True).sql(dialect=dialect)
