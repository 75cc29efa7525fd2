"""Which source a column name refers to, and its type, following BigQuery's scoping.

Two BigQuery rules need to know what a bare name refers to before DuckDB sees the query:

- a script variable is used only where no column of that name is in scope ("if a variable
  and a column share a name, the column takes precedence");
- ``FROM UNNEST(array_of_structs)`` yields one column per STRUCT field (BigQuery), where
  DuckDB yields one STRUCT column, so such an UNNEST is marked for sqlglot to explode.

A column is looked up in the sources (tables, CTEs, subqueries, UNNESTs) of its SELECT and
then of the enclosing ones (correlated references). Tables' columns and types come from the
warehouse itself; CTEs' and subqueries' from their select lists, traced to their sources.
"""

from __future__ import annotations

from typing import Iterator

import duckdb
import sqlglot.expressions as exp

from predserve.warehouse.sql.dialect import ML_NODES
from predserve.warehouse.sql.names import duckdb_table

Columns = dict[str, str | None]  # lower-case column name -> DuckDB type (None: unknown)


class Scopes:
    """Column lookups for one statement, against the warehouse's tables (cached)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self._tables: dict[str, Columns | None] = {}

    # ---- public ----------------------------------------------------------------------------
    def resolve(self, column: exp.Column) -> tuple[bool, str | None]:
        """(whether ``column`` names a column in scope, its DuckDB type if known)."""
        for select in _enclosing_selects(column):
            for source in _sources(select):
                if _within(column, source):
                    continue  # an UNNEST's own argument is not one of its columns
                if column.table and column.table.lower() != _alias(source).lower():
                    continue
                columns = self.source_columns(source)
                if columns is not None and column.name.lower() in columns:
                    return True, columns[column.name.lower()]
                if not column.table and columns is None and not isinstance(source, exp.Unnest):
                    return True, None  # a source we cannot see into: assume it has the column
        return False, None

    def explode_struct_unnests(self, tree: exp.Expression) -> None:
        """Mark ``FROM UNNEST(col)`` of an ARRAY<STRUCT> column (or, unaliased, of a column whose type
        is unknown here) for sqlglot to explode (BigQuery's semantics); literal arrays are marked by
        sqlglot's parser already."""
        for unnest in tree.find_all(exp.Unnest):
            argument = unnest.expressions[0] if unnest.expressions else None
            if unnest.args.get("explode_array") or not isinstance(argument, exp.Column):
                continue
            if not isinstance(unnest.parent, (exp.From, exp.Join)):
                continue
            found, duck_type = self.resolve(argument)
            if not found:
                continue
            if duck_type is None and not unnest.args.get("alias"):
                # An unaliased UNNEST of an array whose type is not known before DuckDB runs it (a CTE's
                # ARRAY_AGG(STRUCT(...)), as the k-means tutorial pivots ML.CENTROIDS): exploding one
                # level deep yields the STRUCT's fields as columns, and a scalar array's values as they are.
                unnest.set("explode_array", True)
            elif duck_type and duck_type.startswith("STRUCT(") and duck_type.endswith("[]"):
                unnest.set("explode_array", True)

    def source_columns(self, source: exp.Expression) -> Columns | None:
        if isinstance(source, exp.Table):
            if isinstance(source.this, ML_NODES):
                return None
            cte = _visible_cte(source)
            if cte is not None:
                return self.query_columns(cte.this)
            return self.table_columns(source)
        if isinstance(source, exp.Subquery):
            return self.query_columns(source.this)
        if isinstance(source, exp.Unnest):
            alias = source.args.get("alias")
            names = [c.name for c in alias.columns] if isinstance(alias, exp.TableAlias) and alias.columns else []
            if not names and isinstance(alias, exp.TableAlias) and alias.name:
                names = [alias.name]
            return {n.lower(): None for n in names}
        return None

    def table_columns(self, table: exp.Table) -> Columns | None:
        name = duckdb_table(table)
        if name not in self._tables:
            try:
                relation = self.con.sql(f"SELECT * FROM {name} LIMIT 0")
                self._tables[name] = {c.lower(): str(t) for c, t in zip(relation.columns, relation.types)}
            except duckdb.Error:
                self._tables[name] = None
        return self._tables[name]

    def query_columns(self, query: exp.Expression) -> Columns | None:
        if isinstance(query, exp.SetOperation):
            return self.query_columns(query.left)
        if isinstance(query, exp.Subquery):
            return self.query_columns(query.this)
        if not isinstance(query, exp.Select):
            return None
        columns: Columns = {}
        for projection in query.expressions:
            if isinstance(projection, exp.Star) or (isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)):
                for source in _sources(query):
                    found = self.source_columns(source)
                    if found is None:
                        return None
                    columns.update(found)
                continue
            inner = projection.this if isinstance(projection, exp.Alias) else projection
            duck_type = self.resolve(inner)[1] if isinstance(inner, exp.Column) else None
            columns[projection.alias_or_name.lower()] = duck_type
        return columns


# ---- tree helpers --------------------------------------------------------------------------
def _enclosing_selects(node: exp.Expression) -> Iterator[exp.Select]:
    """The SELECTs whose scope ``node`` is in, innermost first; an ML function's arguments are
    a scope boundary (its input query runs on its own)."""
    child, parent = node, node.parent
    in_unnest = False  # UNNEST(x) in FROM sees the sources beside it (a correlated join)
    while parent is not None:
        if isinstance(parent, ML_NODES):
            return
        in_unnest = in_unnest or isinstance(parent, exp.Unnest)
        if isinstance(parent, exp.Select):
            in_sources = child.arg_key in ("from_", "joins")
            if (not in_sources or in_unnest) and child.arg_key != "with_":
                yield parent
            in_unnest = False
        child, parent = parent, parent.parent


def _within(node: exp.Expression, ancestor: exp.Expression) -> bool:
    while node is not None:
        if node is ancestor:
            return True
        node = node.parent
    return False


def _sources(select: exp.Select) -> list[exp.Expression]:
    sources = []
    if select.args.get("from_") is not None:
        sources.append(select.args["from_"].this)
    sources.extend(join.this for join in select.args.get("joins") or [])
    return sources


def _alias(source: exp.Expression) -> str:
    alias = source.args.get("alias")
    if alias is not None and alias.name:
        return alias.name
    return source.name if isinstance(source, exp.Table) else ""


def _visible_cte(table: exp.Table) -> exp.CTE | None:
    """The CTE a one-part table name refers to, from the innermost WITH that defines it."""
    if table.args.get("db") is not None:
        return None
    for ctes in visible_ctes(table):
        for cte in ctes:
            if cte.alias.lower() == table.name.lower():
                return cte
    return None


def visible_ctes(node: exp.Expression) -> Iterator[list[exp.CTE]]:
    """The CTEs visible at ``node``, innermost WITH first. Inside a CTE, only the CTEs before it
    in its own WITH are visible (non-recursive WITH)."""
    child, parent = node, node.parent
    while parent is not None:
        if isinstance(parent, exp.With):
            index = parent.expressions.index(child) if child in parent.expressions else len(parent.expressions)
            yield list(parent.expressions[:index])
        elif isinstance(parent, exp.Query) and parent.args.get("with_") is not None and child.arg_key != "with_":
            yield list(parent.args["with_"].expressions)
        child, parent = parent, parent.parent
