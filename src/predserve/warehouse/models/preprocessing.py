"""BigQuery ML's preprocessing functions, written once for both places they run.

A function is a *recipe*: the aggregate statistics it needs (SQL over the input rows) and
how its result is composed from them. Inside CREATE MODEL ... TRANSFORM the statistics are
computed once on the training rows and composed as constants, so prediction reuses them
(transform.py); a function without statistics (ML.BUCKETIZE, ML.NGRAMS, ML.HASH_BUCKETIZE,
...) is kept in the TRANSFORM as the call itself and composed when the model is loaded. In an
ordinary SELECT, ``ML.STANDARD_SCALER(x) OVER()`` composes them as window aggregates over the
query's own rows, as BigQuery does (``window_expression``). Either way the same composition
runs, so a function gives the same result in both places (NULL in, NULL out, as BigQuery's
reference examples show).

Medians and quantiles for the robust scaler and the imputer are discrete (a value of the
data): that is what BigQuery's reference examples show. ML.ONE_HOT_ENCODER lives in
transform.py: it works inside TRANSFORM only.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations, combinations_with_replacement
from typing import Any, Callable

import sqlglot
import sqlglot.expressions as exp

from predserve.errors import ModelError, SQLError
from predserve.warehouse.sql.dialect import ML_TABLE_FUNCTIONS
from predserve.warehouse.sql.translate import to_duckdb

FUNCTIONS = ("STANDARD_SCALER", "MIN_MAX_SCALER", "MAX_ABS_SCALER", "ROBUST_SCALER", "IMPUTER", "BUCKETIZE",
             "QUANTILE_BUCKETIZE", "ONE_HOT_ENCODER", "LABEL_ENCODER", "POLYNOMIAL_EXPAND", "FEATURE_CROSS", "NGRAMS",
             "HASH_BUCKETIZE")
VOCABULARY_FUNCTIONS = ("ONE_HOT_ENCODER",)  # TRANSFORM only
SCALAR_FUNCTIONS = ("BUCKETIZE", "POLYNOMIAL_EXPAND", "FEATURE_CROSS", "NGRAMS", "HASH_BUCKETIZE")  # no statistics, no OVER()


@dataclass
class Recipe:
    statistics: list[str]  # aggregate SQL expressions over the input rows
    compose: Callable[[list[str]], str]  # the result, given each statistic as SQL


def literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list):  # a vocabulary: a list of strings
        return "[" + ", ".join(literal(v) for v in value) + "]" if value else "CAST([] AS VARCHAR[])"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return repr(float(value)) if isinstance(value, float) else str(value)


def int_arg(args: list[exp.Expression], index: int, default: int, function: str, what: str, low: int, high: int) -> int:
    if len(args) <= index:
        return default
    node = args[index]
    if not (isinstance(node, exp.Literal) and not node.is_string and str(node.this).isdigit()) or not low <= int(node.this) < high:
        raise ModelError(f"ML.{function}: {what} must be an integer literal in [{low}, {high}), got {node.sql('bigquery')}")
    return int(node.this)


def _bool_arg(args: list[exp.Expression], index: int, function: str, what: str) -> bool:
    if len(args) <= index:
        return True
    if not isinstance(args[index], exp.Boolean):
        raise ModelError(f"ML.{function}: {what} must be TRUE or FALSE, got {args[index].sql('bigquery')}")
    return bool(args[index].this)


def _number(node: exp.Expression) -> float:
    if isinstance(node, exp.Neg):
        return -_number(node.this)
    if not isinstance(node, exp.Literal) or node.is_string:
        raise ModelError(f"expected a number, got {node.sql('bigquery')}")
    return float(node.this)


def _nonzero(sql: str) -> str:
    return f"COALESCE(NULLIF({sql}, 0), 1)"


OUTPUT_FORMATS = ("bucket_names", "bucket_ranges", "bucket_ranges_json")


def _output_format(args: list[exp.Expression], index: int, function: str) -> str:
    if len(args) <= index:
        return "bucket_names"
    node = args[index]
    if not (isinstance(node, exp.Literal) and node.is_string and node.name.lower() in OUTPUT_FORMATS):
        raise ModelError(f"ML.{function}: output_format must be one of {', '.join(OUTPUT_FORMATS)}, got {node.sql('bigquery')}")
    return node.name.lower()


def _number_text(sql: str) -> str:
    """A split point as BigQuery prints it: 2 rather than 2.0, 2.5 as is."""
    return (f"CASE WHEN {sql} = floor({sql}) AND abs({sql}) < 1e15 THEN CAST(CAST({sql} AS BIGINT) AS VARCHAR) "
            f"ELSE CAST({sql} AS VARCHAR) END")


def _buckets(value: str, splits: list[str], output_format: str = "bucket_names") -> str:
    """The bucket of ``value`` among sorted split points: 'bin_1' below the first split and
    'bin_k+1' at or above the k-th distinct one, or its range '[low, high)' (as text or JSON)."""
    if output_format == "bucket_names":
        steps = [f"CAST(({value}) >= {splits[0]} AS INTEGER)"] if splits else []
        steps += [f"CAST(({value}) >= {s} AND {s} > {p} AS INTEGER)" for p, s in zip(splits, splits[1:])]
        result = f"'bin_' || CAST(1 + {' + '.join(steps) or '0'} AS VARCHAR)"
    else:
        lower = _number_text("CASE " + " ".join(f"WHEN ({value}) >= {s} THEN {s}" for s in reversed(splits)) + " END") if splits else "NULL"
        upper = _number_text("CASE " + " ".join(f"WHEN ({value}) < {s} THEN {s}" for s in splits) + " END") if splits else "NULL"
        if output_format == "bucket_ranges":
            result = f"COALESCE('[' || {lower}, '(-inf') || ', ' || COALESCE({upper} || ')', '+inf)')"
        else:
            result = f"""'{{"start": "' || COALESCE({lower}, '-Infinity') || '", "end": "' || COALESCE({upper}, 'Infinity') || '"}}'"""
    return f"CASE WHEN ({value}) IS NULL THEN NULL ELSE {result} END"


def recipe(function: str, args: list[exp.Expression]) -> Recipe:
    """The statistics and composition of ML.<function>(args); ``args[0]`` is the input."""
    if not args:
        raise ModelError(f"ML.{function} needs an expression to transform")
    v = to_duckdb(args[0])
    if function == "STANDARD_SCALER":
        return Recipe([f"avg({v})::DOUBLE", f"stddev_samp({v})::DOUBLE"], lambda s: f"(({v}) - {s[0]}) / {_nonzero(s[1])}")
    if function == "MIN_MAX_SCALER":  # capped to [0, 1]; NULL stays NULL (DuckDB's GREATEST would skip it)
        return Recipe([f"min({v})::DOUBLE", f"max({v})::DOUBLE"],
                      lambda s: f"CASE WHEN ({v}) IS NULL THEN NULL "
                                f"ELSE LEAST(GREATEST((({v}) - {s[0]}) / {_nonzero(f'{s[1]} - {s[0]}')}, 0.0), 1.0) END")
    if function == "MAX_ABS_SCALER":
        return Recipe([f"max(abs({v}))::DOUBLE"], lambda s: f"({v}) / {_nonzero(s[0])}")
    if function == "ROBUST_SCALER":
        return _robust_scaler(v, args)
    if function == "IMPUTER":
        return _imputer(v, args)
    if function == "BUCKETIZE":  # (x, [split points] [, exclude_boundaries] [, output_format])
        if len(args) < 2 or not isinstance(args[1], exp.Array):
            raise ModelError("ML.BUCKETIZE(expression, [split points]) needs an array of split points")
        splits = sorted(_number(a) for a in args[1].expressions)
        if len(args) > 2 and not isinstance(args[2], exp.Boolean):
            raise ModelError(f"ML.BUCKETIZE: exclude_boundaries must be TRUE or FALSE, got {args[2].sql('bigquery')}")
        if len(args) > 2 and args[2].this:
            splits = splits[1:-1]  # the lowest and highest points only bound the range
        output_format = _output_format(args, 3, function)
        return Recipe([], lambda s: _buckets(v, [repr(x) for x in splits], output_format))
    if function == "QUANTILE_BUCKETIZE":
        if len(args) < 2:
            raise ModelError("ML.QUANTILE_BUCKETIZE(expression, num_buckets) needs the number of buckets")
        buckets = int_arg(args, 1, 0, function, "num_buckets", 2, 2**31)
        output_format = _output_format(args, 2, function)
        # discrete quantiles: BigQuery's example splits [1, 2, 3, 4, 5] into 3 buckets at 2 and 4
        return Recipe([f"quantile_disc({v}, {i / buckets})::DOUBLE" for i in range(1, buckets)],
                      lambda s: _buckets(v, s, output_format))
    if function in ("POLYNOMIAL_EXPAND", "FEATURE_CROSS"):
        return Recipe([], lambda s: _combinations(function, args))
    if function == "LABEL_ENCODER":
        return _label_encoder(v, args)
    if function == "NGRAMS":
        return _ngrams(v, args)
    if function == "HASH_BUCKETIZE":
        return _hash_bucketize(v, args)
    raise AssertionError(function)


def vocabulary(value: str, top_k: int, threshold: int, by_frequency: bool = False) -> str:
    """An aggregate giving the encoders' vocabulary: the ``top_k`` most frequent values seen at
    least ``threshold`` times (ties at the cut go to the alphabetically first), as text, sorted
    (or most frequent first)."""
    counts = f"map_entries(histogram(CAST({value} AS VARCHAR)))"
    ranked = f"list_sort(list_transform(list_filter({counts}, lambda e: e.value >= {threshold}), lambda e: {{'n': -CAST(e.value AS BIGINT), 'k': e.key}}))"
    top = f"list_transform(list_slice({ranked}, 1, {top_k}), lambda e: e.k)"
    return top if by_frequency else f"list_sort({top})"


def _label_encoder(v: str, args: list[exp.Expression]) -> Recipe:
    """ML.LABEL_ENCODER(x [, top_k] [, frequency_threshold]): 1..n over the sorted vocabulary,
    0 for NULL and everything else."""
    top_k = int_arg(args, 1, 32_000, "LABEL_ENCODER", "top_k", 1, 1_000_000)
    threshold = int_arg(args, 2, 5, "LABEL_ENCODER", "frequency_threshold", 0, 2**62)
    return Recipe([vocabulary(v, top_k, threshold)],
                  lambda s: f"CAST(COALESCE(array_position({s[0]}, CAST({v} AS VARCHAR)), 0) AS BIGINT)")


def _ngrams(v: str, args: list[exp.Expression]) -> Recipe:
    """ML.NGRAMS(tokens, range [, separator]): every n-gram of n in the range, by starting
    token, then n (['a', 'b', 'c'], [2, 3], '#' gives a#b, a#b#c, b#c)."""
    if len(args) < 2:
        raise ModelError("ML.NGRAMS(array_input, range [, separator]) needs the range of n-gram sizes")
    bounds = args[1].expressions if isinstance(args[1], exp.Array) else [args[1]]
    if len(bounds) not in (1, 2) or not all(isinstance(b, exp.Literal) and str(b.this).isdigit() for b in bounds) \
            or not 1 <= int(bounds[0].this) <= int(bounds[-1].this):
        raise ModelError(f"ML.NGRAMS: range must be an INT64 or [low, high] with 1 <= low <= high, got {args[1].sql('bigquery')}")
    low, high = int(bounds[0].this), int(bounds[-1].this)
    separator = " "
    if len(args) > 2:
        if not (isinstance(args[2], exp.Literal) and args[2].is_string):
            raise ModelError(f"ML.NGRAMS: separator must be a string, got {args[2].sql('bigquery')}")
        separator = args[2].name
    length = f"array_length({v})"
    grams = (f"list_transform(list_filter(generate_series({low}, {high}), lambda n: i + n - 1 <= {length}), "
             f"lambda n: array_to_string(({v})[i:i + n - 1], {literal(separator)}))")
    return Recipe([], lambda s: f"CASE WHEN ({v}) IS NULL THEN NULL ELSE "
                                f"flatten(list_transform(generate_series(1, {length}), lambda i: {grams})) END")


def _hash_bucketize(v: str, args: list[exp.Expression]) -> Recipe:
    """ML.HASH_BUCKETIZE(x, n): FARM_FINGERPRINT(x), as an unsigned 64-bit number, modulo n
    (BigQuery's documented example: 'a', 'b', 'c', 'd' in 3 buckets are 0, 1, 1, 2); n = 0
    gives the fingerprint itself."""
    if len(args) < 2:
        raise ModelError("ML.HASH_BUCKETIZE(string_expression, hash_bucket_size) needs the number of buckets")
    buckets = int_arg(args, 1, 0, "HASH_BUCKETIZE", "hash_bucket_size", 0, 2**62)
    fingerprint = f"farm_fingerprint(CAST({v} AS VARCHAR))"
    if buckets == 0:
        return Recipe([], lambda s: fingerprint)
    # u mod n for the unsigned u = fingerprint + 2^64 (when negative), in signed arithmetic
    unsigned = (f"((({fingerprint} % {buckets}) + {buckets}) % {buckets} "
                f"+ CASE WHEN {fingerprint} < 0 THEN {2**64 % buckets} ELSE 0 END) % {buckets}")
    return Recipe([], lambda s: f"CASE WHEN ({v}) IS NULL THEN NULL ELSE {unsigned} END")


def _robust_scaler(v: str, args: list[exp.Expression]) -> Recipe:
    """ML.ROBUST_SCALER(x [, [low, high]] [, with_median] [, with_quantile_range])."""
    low, high = 25, 75
    if len(args) > 1:
        bounds = args[1].expressions if isinstance(args[1], exp.Array) else []
        if len(bounds) != 2 or not all(isinstance(b, exp.Literal) and str(b.this).isdigit() for b in bounds) \
                or not 0 < int(bounds[0].this) < int(bounds[1].this) < 100:
            raise ModelError(f"ML.ROBUST_SCALER: quantile_range must be [low, high] with 0 < low < high < 100, got {args[1].sql('bigquery')}")
        low, high = int(bounds[0].this), int(bounds[1].this)
    center = _bool_arg(args, 2, "ROBUST_SCALER", "with_median")
    scale = _bool_arg(args, 3, "ROBUST_SCALER", "with_quantile_range")

    def compose(s: list[str]) -> str:
        sql = f"(({v}) - {s[0]})" if center else f"({v})"
        return f"CAST({sql} / {_nonzero(f'{s[2]} - {s[1]}')} AS DOUBLE)" if scale else f"CAST({sql} AS DOUBLE)"

    return Recipe([f"quantile_disc({v}, 0.5)::DOUBLE", f"quantile_disc({v}, {low / 100})::DOUBLE",
                   f"quantile_disc({v}, {high / 100})::DOUBLE"], compose)


def _imputer(v: str, args: list[exp.Expression]) -> Recipe:
    """ML.IMPUTER(x, 'mean' | 'median' | 'most_frequent'): NULL -> that statistic."""
    strategy = args[1].name.lower() if len(args) > 1 and isinstance(args[1], exp.Literal) and args[1].is_string else None
    statistic = {"mean": f"avg({v})::DOUBLE", "median": f"quantile_disc({v}, 0.5)::DOUBLE", "most_frequent": f"mode({v})"}
    if strategy not in statistic:
        raise ModelError("ML.IMPUTER(expression, strategy) needs strategy 'mean', 'median' or 'most_frequent'")
    if strategy == "most_frequent":
        return Recipe([statistic[strategy]], lambda s: f"COALESCE({v}, {s[0]})")
    return Recipe([statistic[strategy]], lambda s: f"CAST(COALESCE({v}, {s[0]}) AS DOUBLE)")


def _combinations(function: str, args: list[exp.Expression]) -> str:
    """ML.POLYNOMIAL_EXPAND(STRUCT(...) [, degree]): every product of 1..degree features (with
    repeats); ML.FEATURE_CROSS(STRUCT(...) [, degree]): every '_'-joined cross of 2..degree
    distinct features. Field names join the feature names with '_', sorted, as BigQuery shows."""
    if not isinstance(args[0], exp.Struct):
        raise ModelError(f"ML.{function} takes a STRUCT of named features, e.g. STRUCT(a, b AS other)")
    features: list[tuple[str, str]] = []
    for field_node in args[0].expressions:
        if isinstance(field_node, exp.PropertyEQ):
            features.append((field_node.this.name, to_duckdb(field_node.expression)))
        elif isinstance(field_node, exp.Column):
            features.append((field_node.name, to_duckdb(field_node)))
        else:
            raise ModelError(f"ML.{function}: feature {field_node.sql('bigquery')} needs a name (AS name)")
    names = [n for n, _ in features]
    if len(set(names)) != len(names) or not 1 <= len(names) <= 10:
        raise ModelError(f"ML.{function} takes 1 to 10 differently named features, got {names}")
    polynomial = function == "POLYNOMIAL_EXPAND"
    low = 1 if polynomial else 2
    degree = int_arg(args, 1, 2, function, "degree", low, 5)
    fields = []
    for size in range(low, degree + 1):
        for combo in (combinations_with_replacement if polynomial else combinations)(features, size):
            name = "_".join(n for n, _ in combo)
            if polynomial:
                fields.append((name, " * ".join(f"CAST({v} AS DOUBLE)" for _, v in combo)))
            else:
                fields.append((name, " || '_' || ".join(f"CAST({v} AS VARCHAR)" for _, v in combo)))
    return "{" + ", ".join(f"{literal(n)}: {v}" for n, v in sorted(fields)) + "}"


ANONYMOUS_AGGREGATES = ("histogram",)  # aggregates of the recipes that sqlglot does not know as such


def ml_call(node: exp.Expression) -> tuple[str, list[exp.Expression]] | None:
    """(FUNCTION, args) when ``node`` is ML.<FUNCTION>(...), with or without OVER()."""
    inner = node.this if isinstance(node, exp.Window) else node
    if isinstance(inner, exp.Dot) and isinstance(inner.this, exp.Identifier) and inner.this.name.upper() == "ML":
        call = inner.expression
        if isinstance(call, exp.Anonymous):
            return str(call.this).upper(), list(call.expressions)
    return None


def window_expression(node: exp.Expression) -> exp.Expression:
    """An ML preprocessing call in an ordinary SELECT, as DuckDB window aggregates over the
    query's rows (the call's own OVER clause, usually OVER())."""
    call = ml_call(node)
    if call is None:
        return node
    function, args = call
    if function not in FUNCTIONS:
        raise SQLError(f"ML.{function} is not supported here. predserve runs the table functions "
                       + ", ".join(f"ML.{f}(MODEL ...)" for f in ML_TABLE_FUNCTIONS)
                       + " and the preprocessing functions " + ", ".join(f"ML.{f}" for f in FUNCTIONS))
    if function in VOCABULARY_FUNCTIONS:
        raise ModelError(f"ML.{function} works inside CREATE MODEL ... TRANSFORM(...) only")
    built = recipe(function, args)
    if built.statistics and not isinstance(node, exp.Window):
        raise ModelError(f"ML.{function}(...) needs OVER(): it is computed over the query's rows")

    def over(statistic: str) -> str:
        """``agg(x)::DOUBLE`` -> ``CAST(agg(x) OVER (...) AS DOUBLE)``: the window wraps the
        statistic's aggregate, wherever it is in the statistic."""
        parsed = sqlglot.parse_one(statistic, read="duckdb")
        aggregate = next(n for n in parsed.walk() if isinstance(n, exp.AggFunc) or
                         isinstance(n, exp.Anonymous) and str(n.this).lower() in ANONYMOUS_AGGREGATES)
        window = node.copy()
        window.set("this", aggregate.copy())
        if aggregate is parsed:
            parsed = window
        else:
            aggregate.replace(window)
        return f"({parsed.sql(dialect='duckdb')})"

    return sqlglot.parse_one(built.compose([over(s) for s in built.statistics]), read="duckdb")
