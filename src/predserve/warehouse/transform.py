"""The TRANSFORM clause of CREATE MODEL: preprocessing fitted at training time, then applied
again, automatically, to every ML.PREDICT / ML.EVALUATE input.

Each TRANSFORM expression is a SQL expression over the training query's columns, possibly
calling BigQuery ML's preprocessing functions. Fitting computes each function's statistics
on the training rows (one DuckDB aggregate per function) and replaces the call with plain
SQL holding those numbers as constants, e.g. ``ML.STANDARD_SCALER(x) OVER()`` becomes
``((x) - 41.5) / COALESCE(NULLIF(12.3, 0), 1)``. The fitted expressions are stored with the model; applying them is
one DuckDB query over each Arrow batch.

Supported: the functions of preprocessing.py (scalers, imputer, bucketizers, and
ML.POLYNOMIAL_EXPAND / ML.FEATURE_CROSS, whose STRUCT output the model expands into
``{column}_{field}`` columns), the vocabulary encoders ML.ONE_HOT_ENCODER and
ML.LABEL_ENCODER here, and any scalar SQL expression.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import sqlglot
import sqlglot.expressions as exp

from predserve.errors import ModelError
from predserve.warehouse.preprocessing import FUNCTIONS, VOCABULARY_FUNCTIONS, int_arg, literal, ml_call, recipe

def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Transform:
    """Fitted TRANSFORM expressions: (output column, DuckDB SQL over the input columns)."""

    columns: list[tuple[str, str]]
    # ML.ONE_HOT_ENCODER(x, 'most_frequent'): output column -> the category dummy encoding drops
    dropped: dict[str, str] = field(default_factory=dict)
    _con: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {"columns": self.columns, "dropped": self.dropped, "_con": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"dropped": {}, **state})

    @property
    def output_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def apply(self, data: pa.Table | pa.RecordBatch, skip: set[str] | frozenset[str] = frozenset()) -> pa.Table:
        """The TRANSFORM output for ``data`` (skipping e.g. the label, absent at prediction time)."""
        if self._con is None:
            self._con = duckdb.connect()
        select = ", ".join(f"{sql} AS {_quote(name)}" for name, sql in self.columns if name not in skip)
        self._con.register("transform_input", data)
        try:
            return self._con.sql(f"SELECT {select} FROM transform_input").to_arrow_table()
        except duckdb.Error as exc:
            raise ModelError(f"the model's TRANSFORM cannot be applied to this input: {exc}") from None
        finally:
            self._con.unregister("transform_input")

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
                columns.extend((c, _quote(c)) for c in training.schema.names)
                continue
            else:
                raise ModelError(f"TRANSFORM expression {expression.sql('bigquery')!r} needs a name: add AS column_name")
            drops: list[str] = []
            fitted = body.transform(lambda node: _fit_call(node, con, drops))
            columns.append((name, fitted.sql(dialect="duckdb")))
            if drops:
                if not isinstance(body, exp.Window):
                    raise ModelError(f"TRANSFORM column {name!r}: ML.ONE_HOT_ENCODER(..., 'most_frequent') must be the whole expression")
                dropped[name] = drops[0]
        con.close()
        return cls(columns, dropped)


def _vocabulary(con: duckdb.DuckDBPyConnection, value: str, top_k: int, threshold: int) -> list[tuple[str, int]]:
    """The encoders' vocabulary: the top_k most frequent categories seen at least ``threshold``
    times (ties at the cut go to the alphabetically first), sorted alphabetically, with counts."""
    return con.sql(
        f"SELECT c, n FROM (SELECT CAST({value} AS VARCHAR) AS c, count(*) AS n FROM training WHERE c IS NOT NULL "
        f"GROUP BY c HAVING count(*) >= {threshold} ORDER BY n DESC, c LIMIT {top_k}) ORDER BY c"
    ).fetchall()


def _fit_call(node: exp.Expression, con: duckdb.DuckDBPyConnection, drops: list[str]) -> exp.Expression:
    """A preprocessing call with its statistics computed on the training rows, as constants."""
    call = ml_call(node)
    if call is None:
        return node
    function, args = call
    if function not in FUNCTIONS:
        raise ModelError(f"ML.{function} is not supported in TRANSFORM; supported: " + ", ".join(f"ML.{f}" for f in FUNCTIONS))
    if function in VOCABULARY_FUNCTIONS:
        sql = _vocabulary_encoder(function, args, con, drops)
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


def _vocabulary_encoder(function: str, args: list[exp.Expression], con: duckdb.DuckDBPyConnection, drops: list[str]) -> str:
    if not args:
        raise ModelError(f"ML.{function} needs an expression to transform")
    value = args[0].sql(dialect="duckdb")
    if function == "ONE_HOT_ENCODER":
        # ML.ONE_HOT_ENCODER(x [, drop] [, top_k] [, frequency_threshold]). Vocabulary members
        # stay as categories; NULL and everything else become NULL, BigQuery's index 0. The
        # model's automatic one-hot encoding then gives each its feature.
        drop = args[1].name.lower() if len(args) > 1 and isinstance(args[1], exp.Literal) and args[1].is_string else "none"
        if len(args) > 1 and drop not in ("none", "most_frequent"):
            raise ModelError(f"ML.ONE_HOT_ENCODER: drop must be 'none' or 'most_frequent', got {args[1].sql('bigquery')}")
        vocabulary = _vocabulary(con, value, int_arg(args, 2, 32_000, function, "top_k", 1, 1_000_000),
                                 int_arg(args, 3, 5, function, "frequency_threshold", 0, 2**62))
        if drop == "most_frequent" and vocabulary:
            drops.append(min(vocabulary, key=lambda cn: (-cn[1], cn[0]))[0])  # ties: alphabetically first
        members = ", ".join(literal(c) for c, _ in vocabulary)
        return f"CASE WHEN CAST({value} AS VARCHAR) IN ({members}) THEN CAST({value} AS VARCHAR) END" if members else "CAST(NULL AS VARCHAR)"
    # LABEL_ENCODER(x [, top_k] [, frequency_threshold]): 1..n over the vocabulary, 0 for NULL and the rest
    vocabulary = _vocabulary(con, value, int_arg(args, 1, 32_000, function, "top_k", 1, 1_000_000),
                             int_arg(args, 2, 5, function, "frequency_threshold", 0, 2**62))
    cases = " ".join(f"WHEN {literal(c)} THEN {i}" for i, (c, _) in enumerate(vocabulary, 1))
    return f"CASE CAST({value} AS VARCHAR) {cases} ELSE 0 END" if cases else "0"
