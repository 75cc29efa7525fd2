"""``predserve load``: a CSV or Parquet file into a warehouse table."""

from __future__ import annotations

from pathlib import Path

import duckdb

from predserve.errors import SQLError
from predserve.identifiers import quote_identifier
from predserve.warehouse.engine import Warehouse
from predserve.warehouse.sql.dialect import parse_table_name
from predserve.warehouse.sql.names import name_parts


def load_file(warehouse: str, table: str, file: str, replace: bool = False) -> int:
    path = Path(file)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        reader = "read_parquet"
    elif suffix in (".csv", ".tsv", ".txt"):
        reader = "read_csv_auto"
    else:
        raise SQLError(f"cannot tell the format of {file}: name it *.csv or *.parquet")
    parts = name_parts(parse_table_name(table))  # [dataset,] table: the project is dropped
    quoted = ".".join(quote_identifier(p) for p in parts)
    with Warehouse(warehouse) as wh:
        try:
            if len(parts) == 2:
                wh.con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(parts[0])}")
            verb = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE"
            wh.con.execute(f"{verb} {quoted} AS SELECT * FROM {reader}(?)", [str(path)])
            return int(wh.con.execute(f"SELECT count(*) FROM {quoted}").fetchall()[0][0])
        except duckdb.CatalogException as exc:
            if "already exists" in str(exc):
                raise SQLError(f"table {table} already exists in {warehouse}; pass --replace to overwrite it") from None
            raise SQLError(f"cannot load {file} into {table}: {exc}") from None
        except duckdb.Error as exc:
            raise SQLError(f"cannot load {file} into {table}: {exc}") from None
