"""The TRANSFORM clause of CREATE MODEL: preprocessing fitted at training time, then applied
again, automatically, to every ML.PREDICT / ML.EVALUATE input.

Each TRANSFORM expression is a SQL expression over the training query's columns, possibly
calling BigQuery ML's preprocessing functions. Fitting computes each function's statistics
on the training rows (one DuckDB aggregate per function) and replaces the call with plain
SQL holding those numbers as constants, e.g. ``ML.STANDARD_SCALER(x) OVER()`` becomes
``((x) - 41.5) / 12.3``. The fitted expressions are stored with the model; applying them is
one DuckDB query over each Arrow batch.

Supported: ML.STANDARD_SCALER, ML.MIN_MAX_SCALER, ML.MAX_ABS_SCALER, ML.ROBUST_SCALER,
ML.IMPUTER, ML.BUCKETIZE, ML.QUANTILE_BUCKETIZE, ML.ONE_HOT_ENCODER, ML.LABEL_ENCODER,
ML.POLYNOMIAL_EXPAND, ML.FEATURE_CROSS (both return a STRUCT, which the model expands into
``{column}_{field}`` columns), and any scalar SQL expression. Medians and quantiles are discrete (a value of the data), which is
what BigQuery's reference examples show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import sqlglot.expressions as exp

from predserve.errors import ModelError

FUNCTIONS = ("STANDARD_SCALER", "MIN_MAX_SCALER", "MAX_ABS_SCALER", "ROBUST_SCALER", "IMPUTER", "BUCKETIZE",
             "QUANTILE_BUCKETIZE", "ONE_HOT_ENCODER", "LABEL_ENCODER", "POLYNOMIAL_EXPAND", "FEATURE_CROSS")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return repr(float(value)) if isinstance(value, float) else str(value)


def _ml_call(node: exp.Expression) -> tuple[str, list[exp.Expression]] | None:
    """(FUNCTION, args) when ``node`` is ML.<FUNCTION>(...), with or without OVER()."""
    inner = node.this if isinstance(node, exp.Window) else node
    if isinstance(inner, exp.Dot) and isinstance(inner.this, exp.Identifier) and inner.this.name.upper() == "ML":
        call = inner.expression
        if isinstance(call, exp.Anonymous):
            return str(call.this).upper(), list(call.expressions)
    return None


def _bucket_sql(value_sql: str, splits: list[float]) -> str:
    """bin_1 below the first split, bin_k+1 at or above the k-th; NULL stays NULL (BigQuery ML's naming)."""
    steps = " + ".join(f"(CAST(({value_sql}) >= {s!r} AS INTEGER))" for s in splits) or "0"
    return f"CASE WHEN ({value_sql}) IS NULL THEN NULL ELSE 'bin_' || CAST(1 + {steps} AS VARCHAR) END"


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


def _int_arg(args: list[exp.Expression], index: int, default: int, function: str, what: str, low: int, high: int) -> int:
    if len(args) <= index:
        return default
    node = args[index]
    if not (isinstance(node, exp.Literal) and not node.is_string and str(node.this).isdigit()) or not low <= int(node.this) < high:
        raise ModelError(f"ML.{function}: {what} must be an integer literal in [{low}, {high}), got {node.sql('bigquery')}")
    return int(node.this)


def _vocabulary(con: duckdb.DuckDBPyConnection, value: str, top_k: int, threshold: int) -> list[tuple[str, int]]:
    """The encoders' vocabulary: the top_k most frequent categories seen at least ``threshold``
    times (ties at the cut go to the alphabetically first), sorted alphabetically, with counts."""
    return con.sql(
        f"SELECT c, n FROM (SELECT CAST({value} AS VARCHAR) AS c, count(*) AS n FROM training WHERE c IS NOT NULL "
        f"GROUP BY c HAVING count(*) >= {threshold} ORDER BY n DESC, c LIMIT {top_k}) ORDER BY c"
    ).fetchall()


def _bool_arg(args: list[exp.Expression], index: int, function: str, what: str) -> bool:
    if len(args) <= index:
        return True
    if not isinstance(args[index], exp.Boolean):
        raise ModelError(f"ML.{function}: {what} must be TRUE or FALSE, got {args[index].sql('bigquery')}")
    return bool(args[index].this)


def _robust_scaler(value: str, args: list[exp.Expression], stat: Any) -> str:
    """ML.ROBUST_SCALER(x [, [low, high]] [, with_median] [, with_quantile_range]) OVER()."""
    low, high = 25, 75
    if len(args) > 1:
        bounds = args[1].expressions if isinstance(args[1], exp.Array) else []
        if len(bounds) != 2 or not all(isinstance(b, exp.Literal) and str(b.this).isdigit() for b in bounds) \
                or not 0 < int(bounds[0].this) < int(bounds[1].this) < 100:
            raise ModelError(f"ML.ROBUST_SCALER: quantile_range must be [low, high] with 0 < low < high < 100, got {args[1].sql('bigquery')}")
        low, high = int(bounds[0].this), int(bounds[1].this)
    median, q_low, q_high = stat(f"quantile_disc({value}, 0.5)::DOUBLE, quantile_disc({value}, {low / 100})::DOUBLE, "
                                 f"quantile_disc({value}, {high / 100})::DOUBLE")
    sql = f"(({value}) - {median!r})" if _bool_arg(args, 2, "ROBUST_SCALER", "with_median") else f"({value})"
    if _bool_arg(args, 3, "ROBUST_SCALER", "with_quantile_range"):
        sql = f"{sql} / {((q_high - q_low) or 1.0)!r}"
    return f"CAST({sql} AS DOUBLE)"


def _imputer(value: str, args: list[exp.Expression], stat: Any) -> str:
    """ML.IMPUTER(x, 'mean' | 'median' | 'most_frequent') OVER(): NULL -> the training statistic."""
    strategy = args[1].name.lower() if len(args) > 1 and isinstance(args[1], exp.Literal) and args[1].is_string else None
    if strategy == "mean":
        (fill,) = stat(f"avg({value})::DOUBLE")
    elif strategy == "median":
        (fill,) = stat(f"quantile_disc({value}, 0.5)::DOUBLE")
    elif strategy == "most_frequent":  # ties: the smallest value
        (fill,) = stat(f"(SELECT v FROM (SELECT {value} AS v, count(*) AS n FROM training WHERE v IS NOT NULL "
                       "GROUP BY v ORDER BY n DESC, v LIMIT 1))")
    else:
        raise ModelError("ML.IMPUTER(expression, strategy) needs strategy 'mean', 'median' or 'most_frequent'")
    return f"COALESCE({value}, {_literal(fill)})"


def _combinations(function: str, args: list[exp.Expression]) -> str:
    """ML.POLYNOMIAL_EXPAND(STRUCT(...) [, degree]): every product of 1..degree features (with
    repeats); ML.FEATURE_CROSS(STRUCT(...) [, degree]): every '_'-joined cross of 2..degree
    distinct features. Field names join the feature names with '_', sorted, as BigQuery shows."""
    from itertools import combinations, combinations_with_replacement

    if not isinstance(args[0], exp.Struct):
        raise ModelError(f"ML.{function} takes a STRUCT of named features, e.g. STRUCT(a, b AS other)")
    features: list[tuple[str, str]] = []
    for field_node in args[0].expressions:
        if isinstance(field_node, exp.PropertyEQ):
            features.append((field_node.this.name, field_node.expression.sql(dialect="duckdb")))
        elif isinstance(field_node, exp.Column):
            features.append((field_node.name, field_node.sql(dialect="duckdb")))
        else:
            raise ModelError(f"ML.{function}: feature {field_node.sql('bigquery')} needs a name (AS name)")
    names = [n for n, _ in features]
    if len(set(names)) != len(names) or not 1 <= len(names) <= 10:
        raise ModelError(f"ML.{function} takes 1 to 10 differently named features, got {names}")
    polynomial = function == "POLYNOMIAL_EXPAND"
    low = 1 if polynomial else 2
    degree = _int_arg(args, 1, 2, function, "degree", low, 5)
    fields = []
    for size in range(low, degree + 1):
        for combo in (combinations_with_replacement if polynomial else combinations)(features, size):
            name = "_".join(n for n, _ in combo)
            if polynomial:
                fields.append((name, " * ".join(f"CAST({v} AS DOUBLE)" for _, v in combo)))
            else:
                fields.append((name, " || '_' || ".join(f"CAST({v} AS VARCHAR)" for _, v in combo)))
    return "{" + ", ".join(f"{_literal(n)}: {v}" for n, v in sorted(fields)) + "}"


def _fit_call(node: exp.Expression, con: duckdb.DuckDBPyConnection, drops: list[str]) -> exp.Expression:
    call = _ml_call(node)
    if call is None:
        return node
    function, args = call
    if function not in FUNCTIONS:
        raise ModelError(f"ML.{function} is not supported in TRANSFORM; supported: " + ", ".join(f"ML.{f}" for f in FUNCTIONS))
    if not args:
        raise ModelError(f"ML.{function} needs an expression to transform")
    value = args[0].sql(dialect="duckdb")

    def stat(sql: str) -> Any:
        try:
            return con.sql(f"SELECT {sql} FROM training").fetchall()[0]
        except duckdb.Error as exc:
            raise ModelError(f"ML.{function}({args[0].sql('bigquery')}) in TRANSFORM: {exc}") from None

    if function == "STANDARD_SCALER":
        mean, std = stat(f"avg({value})::DOUBLE, stddev_samp({value})::DOUBLE")
        sql = f"(({value}) - {mean!r}) / {(std or 1.0)!r}"
    elif function == "MIN_MAX_SCALER":
        low, high = stat(f"min({value})::DOUBLE, max({value})::DOUBLE")
        span = (high - low) or 1.0
        sql = f"LEAST(GREATEST((({value}) - {low!r}) / {span!r}, 0.0), 1.0)"
    elif function == "MAX_ABS_SCALER":
        (high,) = stat(f"max(abs({value}))::DOUBLE")
        sql = f"({value}) / {(high or 1.0)!r}"
    elif function == "ROBUST_SCALER":
        sql = _robust_scaler(value, args, stat)
    elif function == "IMPUTER":
        sql = _imputer(value, args, stat)
    elif function in ("POLYNOMIAL_EXPAND", "FEATURE_CROSS"):
        sql = _combinations(function, args)
    elif function == "BUCKETIZE":
        if len(args) < 2 or not isinstance(args[1], exp.Array):
            raise ModelError("ML.BUCKETIZE(expression, [split points]) needs an array of split points")
        splits = [float(a.this) if not isinstance(a, exp.Neg) else -float(a.this.this) for a in args[1].expressions]
        sql = _bucket_sql(value, sorted(splits))
    elif function == "QUANTILE_BUCKETIZE":
        if len(args) < 2:
            raise ModelError("ML.QUANTILE_BUCKETIZE(expression, num_buckets) needs the number of buckets")
        buckets = int(args[1].this)
        if buckets < 2:
            raise ModelError("ML.QUANTILE_BUCKETIZE needs at least 2 buckets")
        quantiles = ", ".join(str(i / buckets) for i in range(1, buckets))
        splits = stat(f"quantile_cont({value}, [{quantiles}])")[0]
        sql = _bucket_sql(value, sorted(set(splits)))
    elif function == "ONE_HOT_ENCODER":
        # ML.ONE_HOT_ENCODER(x [, drop] [, top_k] [, frequency_threshold]). Vocabulary members
        # stay as categories; NULL and everything else become NULL, BigQuery's index 0. The
        # model's automatic one-hot encoding then gives each its feature.
        drop = args[1].name.lower() if len(args) > 1 and isinstance(args[1], exp.Literal) and args[1].is_string else "none"
        if len(args) > 1 and drop not in ("none", "most_frequent"):
            raise ModelError(f"ML.ONE_HOT_ENCODER: drop must be 'none' or 'most_frequent', got {args[1].sql('bigquery')}")
        vocabulary = _vocabulary(con, value, _int_arg(args, 2, 32_000, function, "top_k", 1, 1_000_000),
                                 _int_arg(args, 3, 5, function, "frequency_threshold", 0, 2**62))
        if drop == "most_frequent" and vocabulary:
            drops.append(min(vocabulary, key=lambda cn: (-cn[1], cn[0]))[0])  # ties: alphabetically first
        members = ", ".join(_literal(c) for c, _ in vocabulary)
        sql = f"CASE WHEN CAST({value} AS VARCHAR) IN ({members}) THEN CAST({value} AS VARCHAR) END" if members else "CAST(NULL AS VARCHAR)"
    else:  # LABEL_ENCODER(x [, top_k] [, frequency_threshold]): 1..n over the vocabulary, 0 for NULL and the rest
        vocabulary = _vocabulary(con, value, _int_arg(args, 1, 32_000, function, "top_k", 1, 1_000_000),
                                 _int_arg(args, 2, 5, function, "frequency_threshold", 0, 2**62))
        cases = " ".join(f"WHEN {_literal(c)} THEN {i}" for i, (c, _) in enumerate(vocabulary, 1))
        sql = f"CASE CAST({value} AS VARCHAR) {cases} ELSE 0 END" if cases else "0"
    import sqlglot

    return sqlglot.parse_one(sql, read="duckdb")
