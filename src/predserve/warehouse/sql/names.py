"""Names: one way to resolve a table or model name written in BigQuery's forms (identifiers
are quoted by ``predserve.identifiers``).

BigQuery names are ``name``, ``dataset.name`` or ``project.dataset.name`` (often backticked
as one: ```my-project.bqml_tutorial.penguins_model```). In the warehouse a dataset is a DuckDB
schema, and the project part is ignored for tables and models alike: the warehouse file is
the project. DuckDB's default schema ``main`` is the same as no dataset.
"""

from __future__ import annotations

import sqlglot.expressions as exp

from predserve.errors import SQLError
from predserve.identifiers import quote_identifier

DEFAULT_DATASET = "main"


def name_parts(table: exp.Table) -> list[str]:
    """[dataset, name] or [name] of a table or model reference; the project is dropped."""
    if isinstance(table.this, exp.Dot):
        raise SQLError(f"{table.sql('bigquery')}: a name has at most three parts, project.dataset.name")
    dataset = table.args.get("db")
    parts = [dataset.name] if dataset is not None and dataset.name.lower() != DEFAULT_DATASET else []
    return parts + [table.name]


def model_name(table: exp.Table) -> str:
    """The catalog's name for a model reference: ``dataset.name`` or ``name``."""
    return ".".join(name_parts(table))


def duckdb_table(table: exp.Table) -> str:
    """A table reference as DuckDB SQL: quoted schema and table, no project."""
    return ".".join(quote_identifier(p) for p in name_parts(table))
