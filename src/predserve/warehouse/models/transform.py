"""The TRANSFORM clause of CREATE MODEL: preprocessing fitted at training time, then applied
again, automatically, to every ML.PREDICT / ML.EVALUATE input.

Each TRANSFORM expression is a SQL expression over the training query's columns, possibly
calling BigQuery ML's preprocessing functions. Fitting computes each function's statistics
on the training rows (one DuckDB aggregate per function) and replaces the call with plain
SQL holding those numbers as constants, e.g. ``ML.STANDARD_SCALER(x) OVER()`` becomes
``((x) - 41.5) / COALESCE(NULLIF(12.3, 0), 1)``. A function without statistics (ML.BUCKETIZE,
ML.NGRAMS, ML.HASH_BUCKETIZE, ...) stays as the call, and is composed by preprocessing.py's
recipe whenever the model is loaded. The fitted expressions are stored with the model as
BigQuery SQL text; applying them is one DuckDB query over each Arrow batch.

A stored model is untrusted input (storage.py), and its TRANSFORM is SQL that will run: so
every fitted expression, at CREATE MODEL and again whenever a stored model is loaded, is
re-parsed and checked by ``compile_expression``: a scalar expression over the input row only
(columns, literals, operators, CASE, CAST and the scalar functions sqlglot knows), never a
query, a table or table function, an aggregate or window, a parameter, or a function sqlglot
cannot identify. It then runs on a DuckDB connection with external access disabled, so even
a function that reads files could not.

Supported: the functions of preprocessing.py (scalers, imputer, bucketizers, label encoder,
n-grams, hash buckets, and ML.POLYNOMIAL_EXPAND / ML.FEATURE_CROSS, whose STRUCT output the
model expands into ``{column}_{field}`` columns), ML.ONE_HOT_ENCODER here, and any scalar SQL
expression.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

import duckdb
import pyarrow as pa
import sqlglot
import sqlglot.expressions as exp
from sqlglot.errors import ParseError, TokenError

from predserve.errors import ModelError
from predserve.identifiers import quote_identifier
from predserve.warehouse.models.preprocessing import (
    FUNCTIONS,
    SCALAR_FUNCTIONS,
    VOCABULARY_FUNCTIONS,
    int_arg,
    literal,
    ml_call,
    recipe,
    vocabulary,
)
from predserve.warehouse.models.storage import StoredModelError, dict_field, list_field, str_field
from predserve.warehouse.sql import hashing
from predserve.warehouse.sql.dialect import Predserve
from predserve.warehouse.sql.translate import read_bigquery, to_duckdb

# What a TRANSFORM expression may be made of: a scalar expression over the input row.
ALLOWED_NODES = (exp.Column, exp.Identifier, exp.Literal, exp.Boolean, exp.Null, exp.Binary, exp.Unary, exp.Func,
                 exp.DataType, exp.DataTypeParam, exp.Bracket, exp.Interval, exp.Var, exp.In, exp.Between, exp.Tuple,
                 exp.Lambda, exp.Slice)
# Functions among those that sqlglot knows that read files, secrets or the session, or make tables.
REFUSED_FUNCTIONS = tuple(getattr(exp, name) for name in (
    "Anonymous", "AggFunc", "UDTF", "ReadCSV", "ReadParquet", "ToFile", "Secret", "GenerateTable", "JSONTable", "XMLTable",
    "SplitToTable", "StrtokSplitToTable", "NextValueFor", "CurrentCatalog", "CurrentDatabase", "CurrentSchema",
    "CurrentSchemas", "CurrentSession", "CurrentUser", "CurrentUserId", "CurrentOrganizationUser", "SessionUser", "Host",
) if hasattr(exp, name))
# The connection TRANSFORMs run on: no files, no network, no extensions, settings locked.
SANDBOX = {"enable_external_access": False, "autoload_known_extensions": False, "autoinstall_known_extensions": False,
           "lock_configuration": True}


@cache
def _sandbox() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB for every TRANSFORM in the process; each Transform uses its own cursor."""
    con = duckdb.connect(config=SANDBOX)
    hashing.register(con)
    return con


@lru_cache(maxsize=1024)
def _compile(sql: str) -> str:
    try:
        trees = sqlglot.parse(sql, read=Predserve)
    except (ParseError, TokenError) as exc:
        raise ModelError(f"cannot read {sql[:200]!r} ({str(exc).splitlines()[0]})") from None
    if len(trees) != 1 or trees[0] is None:
        raise ModelError(f"{sql[:200]!r} is not one expression")
    tree = trees[0].transform(_composed)
    for node in tree.walk():
        if not isinstance(node, ALLOWED_NODES) or isinstance(node, REFUSED_FUNCTIONS):
            what = node.sql(dialect="bigquery")
            raise ModelError(f"{what[:200]!r} is not allowed in a TRANSFORM, which takes scalar expressions over the "
                             "input row: no queries, tables, aggregates, windows (other than the ML functions' OVER()), "
                             "parameters or functions predserve does not know")
    return to_duckdb(tree)


def _composed(node: exp.Expression) -> exp.Expression:
    """A kept call of a function without statistics, as its recipe's SQL."""
    call = ml_call(node)
    if call is None:
        return node
    function, args = call
    if function not in SCALAR_FUNCTIONS or isinstance(node, exp.Window):
        raise ModelError(f"ML.{function} is not allowed here: only functions without statistics "
                         f"({', '.join(f'ML.{f}' for f in SCALAR_FUNCTIONS)}) are kept as calls")
    return sqlglot.parse_one(recipe(function, args).compose([]), read="duckdb")


def compile_expression(name: str, sql: str) -> str:
    """A fitted TRANSFORM column's BigQuery SQL, checked, as DuckDB SQL (cached: ML.PREDICT
    loads the model on every call)."""
    try:
        return _compile(sql)
    except ModelError as exc:
        raise ModelError(f"TRANSFORM column {name!r}: {exc}") from None


@dataclass
class Transform:
    """Fitted TRANSFORM expressions: (output column, BigQuery SQL over the input columns, with
    the statistics as constants). Constructing one checks every expression."""

    columns: list[tuple[str, str]]
    # ML.ONE_HOT_ENCODER(x, 'most_frequent'): output column -> the category dummy encoding drops
    dropped: dict[str, str] = field(default_factory=dict)
    _duckdb: list[tuple[str, str]] = field(init=False, repr=False, compare=False)
    _cursor: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._duckdb = [(name, compile_expression(name, sql)) for name, sql in self.columns]

    def to_data(self) -> dict[str, Any]:
        return {"columns": [{"name": name, "sql": sql} for name, sql in self.columns], "dropped": self.dropped}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "Transform":
        columns = [(str_field(c, "name"), str_field(c, "sql")) for c in list_field(data, "columns")]
        dropped = dict_field(data, "dropped")
        if not all(isinstance(v, str) for v in dropped.values()):
            raise StoredModelError("the TRANSFORM's dropped categories should be text")
        try:
            return cls(columns, dropped)
        except ModelError as exc:
            raise StoredModelError(f"its stored {exc}") from None

    @property
    def output_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def source_columns(self) -> dict[str, list[str]]:
        """Each output column's input columns: those its expression reads, in order."""
        sources = {}
        for name, sql in self.columns:
            tree = read_bigquery(sql)
            sources[name] = list(dict.fromkeys(column.name for column in tree.find_all(exp.Column)))
        return sources

    def output_of(self, feature: str) -> str | None:
        """The output column a model feature comes from: itself, or the STRUCT output
        (ML.POLYNOMIAL_EXPAND, ML.FEATURE_CROSS) whose field it is, named ``{column}_{field}``."""
        names = self.output_names
        if feature in names:
            return feature
        owners = [name for name in names if feature.startswith(name + "_")]
        return max(owners, key=len) if owners else None

    def apply_available(self, data: pa.Table | pa.RecordBatch) -> pa.Table:
        """The TRANSFORM output for ``data``, leaving out the columns whose inputs it lacks
        (such as the label, absent from rows to predict)."""
        present = {name.lower() for name in data.schema.names}
        missing = {name for name, columns in self.source_columns().items() if any(c.lower() not in present for c in columns)}
        return self.apply(data, skip=missing)

    def apply(self, data: pa.Table | pa.RecordBatch, skip: set[str] | frozenset[str] = frozenset()) -> pa.Table:
        """The TRANSFORM output for ``data`` (skipping e.g. the label, absent at prediction time)."""
        if self._cursor is None:
            self._cursor = _sandbox().cursor()
        select = ", ".join(f"{sql} AS {quote_identifier(name)}" for name, sql in self._duckdb if name not in skip)
        self._cursor.register("transform_input", data)
        try:
            return self._cursor.sql(f"SELECT {select} FROM transform_input").to_arrow_table()
        except duckdb.Error as exc:
            raise ModelError(f"the model's TRANSFORM cannot be applied to this input: {exc}") from None
        finally:
            self._cursor.unregister("transform_input")

    @classmethod
    def fit(cls, expressions: list[exp.Expression], training: pa.Table) -> "Transform":
        con = duckdb.connect()
        con.register("training", training)
        columns = []
        dropped: dict[str, str] = {}
        for expression in expressions:
            if isinstance(expression, exp.Alias):
                name, body = expression.alias, expression.this
            elif isinstance(expression, exp.Column):
                name, body = expression.name, expression
            elif isinstance(expression, exp.Star):
                columns.extend((c, exp.column(c, quoted=True).sql(dialect="bigquery")) for c in training.schema.names)
                continue
            else:
                raise ModelError(f"TRANSFORM expression {expression.sql('bigquery')!r} needs a name: add AS column_name")
            drops: list[str] = []
            fitted = body.transform(lambda node: _fit_call(node, con, drops))
            columns.append((name, fitted.sql(dialect="bigquery")))
            if drops:
                if not isinstance(body, exp.Window):
                    raise ModelError(f"TRANSFORM column {name!r}: ML.ONE_HOT_ENCODER(..., 'most_frequent') must be the whole expression")
                dropped[name] = drops[0]
        con.close()
        return cls(columns, dropped)


def _fit_call(node: exp.Expression, con: duckdb.DuckDBPyConnection, drops: list[str]) -> exp.Expression:
    """A preprocessing call with its statistics computed on the training rows, as constants."""
    call = ml_call(node)
    if call is None:
        return node
    function, args = call
    if function not in FUNCTIONS:
        raise ModelError(f"ML.{function} is not supported in TRANSFORM; supported: " + ", ".join(f"ML.{f}" for f in FUNCTIONS))
    if function in SCALAR_FUNCTIONS:
        recipe(function, args).compose([])  # checks the arguments now; the call itself is kept
        return node
    if function in VOCABULARY_FUNCTIONS:
        sql = _one_hot_encoder(args, con, drops)
    else:
        built = recipe(function, args)
        values: tuple = ()
        if built.statistics:
            try:
                values = con.sql(f"SELECT {', '.join(built.statistics)} FROM training").fetchall()[0]
            except duckdb.Error as exc:
                raise ModelError(f"ML.{function}({args[0].sql('bigquery')}) in TRANSFORM: {exc}") from None
        sql = built.compose([literal(v) for v in values])
    return sqlglot.parse_one(sql, read="duckdb")


def _one_hot_encoder(args: list[exp.Expression], con: duckdb.DuckDBPyConnection, drops: list[str]) -> str:
    """ML.ONE_HOT_ENCODER(x [, drop] [, top_k] [, frequency_threshold]). Vocabulary members stay
    as categories; NULL and everything else become NULL, BigQuery's index 0. The model's
    automatic one-hot encoding then gives each its feature."""
    if not args:
        raise ModelError("ML.ONE_HOT_ENCODER needs an expression to transform")
    value = to_duckdb(args[0])
    drop = args[1].name.lower() if len(args) > 1 and isinstance(args[1], exp.Literal) and args[1].is_string else "none"
    if len(args) > 1 and drop not in ("none", "most_frequent"):
        raise ModelError(f"ML.ONE_HOT_ENCODER: drop must be 'none' or 'most_frequent', got {args[1].sql('bigquery')}")
    statistic = vocabulary(value, int_arg(args, 2, 32_000, "ONE_HOT_ENCODER", "top_k", 1, 1_000_000),
                           int_arg(args, 3, 5, "ONE_HOT_ENCODER", "frequency_threshold", 0, 2**62), by_frequency=True)
    by_frequency = con.sql(f"SELECT {statistic} FROM training").fetchall()[0][0] or []
    if drop == "most_frequent" and by_frequency:
        drops.append(by_frequency[0])  # ties: alphabetically first
    members = ", ".join(literal(c) for c in sorted(by_frequency))
    return f"CASE WHEN CAST({value} AS VARCHAR) IN ({members}) THEN CAST({value} AS VARCHAR) END" if members else "CAST(NULL AS VARCHAR)"
