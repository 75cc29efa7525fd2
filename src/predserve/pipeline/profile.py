"""Profiles: a compact distribution of every prediction column, computed while exporting.

The source already aggregates the materialised rows once for its key statistics (DuckDB over
the staged Parquet shards, or BigQuery on the temporary table). The profile is three more SQL
statements in that same step, written once in BigQuery's dialect and transpiled for DuckDB by
sqlglot, so both sources compute the same thing on every runner:

    summary       one aggregate: rows, NULLs per column, min and max of numeric columns
                  (and one per list column, over its elements: see below)
    distribution  one UNION ALL with a branch per column: counts of the top values,
                  of fixed bins, or of fixed probability bins per label
    sample        the ids whose 64-bit hash (of the id's text) is smallest: the drift sample

Column kinds (``predserve.pipeline.profile_columns.classify``):
    probabilities  ARRAY<STRUCT<label, prob FLOAT64>>, as ML.PREDICT's ``predicted_<label>_probs``:
                   per label, counts of ``prob`` in BINS equal bins of [0, 1]
    categorical    STRING and BOOL, and INT64 labels (``predicted_x`` beside ``predicted_x_probs``,
                   ``centroid_id``): counts of the TOP_VALUES most frequent values, the rest as "other"
    numeric        other numbers: counts in BINS equal bins between the column's min and max
                   (bin = min(BINS - 1, floor((x - min) * BINS / (max - min)))); a single value
                   is a point mass
    (a probability p is in bin min(BINS - 1, floor(p * BINS)))
    other          anything else (timestamps, other arrays and structs): NULLs only; the fields
                   of a list body (ARRAY<STRUCT>: top-N recommendations, a forecast horizon) are
                   profiled as categorical and numeric columns of their own, ``recommendations.item_id``,
                   ``recommendations[0].predicted_rating`` (profile_columns.py says which)

NULLs are counted for every column; NaN and +/-Inf count as NULL, as the served body shows
them. The profile is a small ``predserve.store.reports.Profile`` record, stored as JSON in the
snapshot's metadata; its shape is documented in docs/pipeline.md ("Profiles and drift"), and
``predserve.pipeline.drift`` compares two of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pyarrow as pa

from predserve.identifiers import quote_identifier
from predserve.keys import key_columns, key_sql
from predserve.pipeline.drift import BINS
from predserve.pipeline.profile_columns import Column, classify, elements_sql, source_sql, value_sql
from predserve.store.reports import CATEGORICAL, NUMERIC, PROBABILITIES, Profile
from predserve.warehouse.sql import translate

TOP_VALUES = 20  # TFDV's default number of top values
MAX_LABELS = 20  # labels kept per probabilities column (those with the most probability mass)
SAMPLE_IDS = 1000  # ids in the drift sample
PROFILE_VERSION = 1

# Runs one statement written in BigQuery's dialect on the source's engine; returns its rows.
RunSQL = Callable[[str], Sequence[Sequence[Any]]]


def to_duckdb(sql: str) -> str:
    """A statement written in BigQuery's dialect, as DuckDB runs it: the warehouse's one
    translation, with FARM_FINGERPRINT as DuckDB's own hash (the sample's order need not be
    BigQuery's, only deterministic: see ``fast_fingerprints``)."""
    return translate.to_duckdb(translate.read_bigquery(sql).transform(translate.fast_fingerprints))


def _bin(value: str, low: float, high: float) -> str:
    """The bin of ``value`` among BINS equal bins of [low, high], before clamping:
    floor((value - low) * BINS / (high - low)), which is BINS for ``high`` itself (see ``_clamp``)."""
    if math.isinf(high - low):  # a range wider than the largest double: halve everything first
        value, low, high = f"({value} / 2)", low / 2, high / 2
    offset = f"({value} - {low!r})" if low else value
    return f"CAST(FLOOR({offset} * {BINS / (high - low)!r}) AS INT64)"


def _clamp(index: int) -> int:
    """Bins are clamped to 0 .. BINS-1 here, after counting, which keeps the SQL cheap."""
    return min(max(index, 0), BINS - 1)


def summary_sql(columns: list[Column], source: str) -> str:
    """COUNT(*) of ``source`` (the rows, or a list's elements), then per column its NULLs, and a numeric one's min and max."""
    parts = ["COUNT(*)"]
    for column in columns:
        value = value_sql(column)
        parts.append(f"COUNTIF({value} IS NULL)")
        if column.kind == NUMERIC:
            parts += [f"MIN({value})", f"MAX({value})"]
    return f"SELECT {', '.join(parts)} FROM {source}"


def distribution_sql(columns: list[Column], ranges: dict[str, tuple[float, float]], relation: str) -> str | None:
    """Counts per (column index, value or label as text, bin); None when no column needs counting.

    ``ranges`` holds the (min, max) of the numeric columns that have more than one value.
    Values and labels are grouped as they are and turned into text after counting: grouping
    on the text costs twice as much. No WHERE on an unnested element (a list field of every
    element, a probability): DuckDB runs a filtered UNNEST join far slower, so NULLs are
    dropped after grouping (HAVING) or after counting (a NULL bin).
    """
    branches = []
    for index, column in enumerate(columns):
        value, source = value_sql(column), source_sql(column, relation)
        not_null = "" if column.every else f"WHERE {value} IS NOT NULL "
        if column.kind == CATEGORICAL:
            having = "HAVING v IS NOT NULL " if column.every else ""
            top = (f"SELECT {value} AS v, COUNT(*) AS n FROM {source} {not_null}"
                   f"GROUP BY 1 {having}ORDER BY 2 DESC, 1 LIMIT {TOP_VALUES}")
            branches.append(f"SELECT {index} AS c, CAST(v AS STRING) AS v, CAST(NULL AS INT64) AS b, n FROM ({top})")
        elif column.kind == NUMERIC and column.name in ranges:
            bin_ = _bin(value, *ranges[column.name])
            branches.append(f"SELECT {index} AS c, CAST(NULL AS STRING) AS v, {bin_} AS b, COUNT(*) AS n "
                            f"FROM {source} {not_null}GROUP BY 3")
        elif column.kind == PROBABILITIES:
            # NaN, +/-Inf and values too large to bin get no bin.
            bin_ = f"IF(ABS(p.prob) < 1e6, {_bin('p.prob', 0.0, 1.0)}, NULL)"
            probs = quote_identifier(column.name, "bigquery")
            labels = f"SELECT p.label AS l, {bin_} AS b, COUNT(*) AS n FROM {relation} AS r, UNNEST(r.{probs}) AS p GROUP BY 1, 2"
            branches.append(f"SELECT {index} AS c, CAST(l AS STRING) AS v, b, n FROM ({labels})")
    return "\nUNION ALL\n".join(f"({b})" for b in branches) if branches else None


def sample_sql(key: str | Sequence[str], relation: str, size: int = SAMPLE_IDS) -> str:
    """The ``size`` ids (as text) with the smallest 64-bit hash: the same ids every time they exist.

    BigQuery's FARM_FINGERPRINT of the key's text; DuckDB's ``hash`` of the key (``to_duckdb``).
    A model that moves from one engine to the other compares the union of both samples once.
    No DISTINCT (a full aggregate): a repeated key, which the unique_keys gate reports, only
    makes the sample a little smaller.
    """
    keys = key_columns(key)
    if len(keys) > 1:  # the joined id (keys.py), hashed as text
        ids = f"SELECT {key_sql(keys, 'bigquery')} AS id FROM {relation}"
        return f"SELECT id FROM ({ids}) WHERE id IS NOT NULL ORDER BY FARM_FINGERPRINT(id), id LIMIT {size}"
    k = quote_identifier(keys[0], "bigquery")
    smallest = f"SELECT {k} FROM {relation} WHERE {k} IS NOT NULL ORDER BY FARM_FINGERPRINT(CAST({k} AS STRING)), {k} LIMIT {size}"
    return f"SELECT CAST({k} AS STRING) AS id FROM ({smallest})"  # only the chosen keys become text


def compute_profile(run: RunSQL, schema: pa.Schema, key: str | Sequence[str], relation: str) -> tuple[Profile, list[str]]:
    """The profile of ``relation``'s rows and its drift sample's ids, with the statements run by
    ``run``: three, and one more summary per list column whose fields are counted on every element."""
    columns = classify(schema, key)
    summary = Summary()
    rows = summary.read(run, [c for c in columns if not c.every], relation)
    totals = {c.name: rows for c in columns if not c.every}
    for array in dict.fromkeys(c.array for c in columns if c.every):
        listed = [c for c in columns if c.every and c.array == array]
        elements = summary.read(run, listed, elements_sql(relation, array or ""))
        totals.update({c.name: elements for c in listed})
    counts: list[tuple[int, Any, Any, int]] = []
    sql = distribution_sql(columns, summary.ranges, relation)
    if sql is not None:
        counts = [(int(c), v, b, int(n)) for c, v, b, n in run(sql)]
    profile = Profile.model_validate({
        "version": PROFILE_VERSION,
        "bins": BINS,
        "rows": rows,
        "columns": {
            column.name: _column_profile(column, index, totals[column.name], summary, counts)
            for index, column in enumerate(columns)
        },
    })
    sample = list(dict.fromkeys(str(r[0]) for r in run(sample_sql(key, relation)))) if rows else []
    return profile, sample


@dataclass
class Summary:
    """What the summary statements found: per column its NULLs, and a numeric one's range or single value."""

    nulls: dict[str, int] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    points: dict[str, float] = field(default_factory=dict)

    def read(self, run: RunSQL, columns: list[Column], source: str) -> int:
        """Runs ``summary_sql`` for ``columns`` over ``source`` and keeps its figures; returns its COUNT(*)."""
        values = list(run(summary_sql(columns, source))[0])
        count = int(values.pop(0))
        for column in columns:
            self.nulls[column.name] = int(values.pop(0))
            if column.kind == NUMERIC:
                low, high = values.pop(0), values.pop(0)
                if low is not None and float(low) < float(high):
                    self.ranges[column.name] = (float(low), float(high))
                elif low is not None:
                    self.points[column.name] = float(low)
        return count


def _column_profile(column: Column, index: int, total: int, summary: Summary,
                    counts: list[tuple[int, Any, Any, int]]) -> dict[str, Any]:
    """One column's profile; ``total`` is what its NULLs and counts add up to (rows, or a list's elements)."""
    mine = [(v, b, n) for c, v, b, n in counts if c == index]
    nulls = summary.nulls[column.name]
    out: dict[str, Any] = {"kind": column.kind, "nulls": nulls}
    if column.kind == CATEGORICAL:
        values = {str(v): n for v, _, n in mine}
        out["values"] = values
        out["other"] = total - nulls - sum(values.values())
    elif column.kind == NUMERIC:
        bins = [0] * BINS
        for _, b, n in mine:
            if b is not None:  # a NULL element of a list field has no bin
                bins[_clamp(int(b))] += n
        if column.name in summary.ranges:
            out["low"], out["high"] = summary.ranges[column.name]
            out["counts"] = bins
        elif column.name in summary.points:  # one value: a point mass
            out["low"] = out["high"] = summary.points[column.name]
            out["counts"] = [total - nulls]
        else:  # every value NULL
            out["low"] = out["high"] = None
            out["counts"] = []
    elif column.kind == PROBABILITIES:
        labels: dict[str, list[int]] = {}
        for label, b, n in mine:
            if b is not None and label is not None:
                labels.setdefault(str(label), [0] * BINS)[_clamp(int(b))] += n
        out["labels"] = dict(sorted(labels.items(), key=lambda kv: -_mass(kv[1]))[:MAX_LABELS])
    if column.array is not None:
        out.update({"array": column.array, "field": column.field, "element": column.element})
        if column.every:
            out["total"] = total
    return out


def _mass(counts: list[int]) -> float:
    """A label's probability mass, estimated from its bins' midpoints (to keep the heaviest labels)."""
    return sum(n * (i + 0.5) for i, n in enumerate(counts))
