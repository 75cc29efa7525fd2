"""Publish gates: checks a snapshot must pass before it goes live.

Each gate can be overridden by a flag and is reported either way. A refused snapshot is
never published; the current one keeps serving.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from predserve.pipeline.drift import (
    CHANGED, DEFAULT_MAX_CHANGED_LABELS, DEFAULT_MAX_DRIFT, DEFAULT_MAX_MOVED, DEFAULT_MOVE_TOLERANCE, DISTANCE, METRIC_NAMES,
    MOVED, where,
)
from predserve.pipeline.sources import SourceStats
from predserve.store.base import SnapshotInfo


@dataclass
class GatePolicy:
    allow_empty: bool = False
    allow_null_keys: bool = False
    allow_duplicates: bool = False
    max_row_drop: float = 0.5  # refuse when rows fall by more than this fraction
    allow_schema_change: bool = False
    # Drift against the current snapshot (predserve.pipeline.drift): refuse when a prediction
    # column's distance, a label column's fraction of sampled ids that changed, or a numeric
    # column's fraction of sampled ids that moved (by more than move_tolerance standard
    # deviations) is above its limit. Metadata columns are reported, never gated.
    max_drift: float = DEFAULT_MAX_DRIFT
    max_changed_labels: float = DEFAULT_MAX_CHANGED_LABELS
    max_moved: float = DEFAULT_MAX_MOVED
    move_tolerance: float = DEFAULT_MOVE_TOLERANCE
    column_max_drift: dict[str, float] = field(default_factory=dict)
    column_max_changed_labels: dict[str, float] = field(default_factory=dict)
    column_max_moved: dict[str, float] = field(default_factory=dict)
    metadata_columns: tuple[str, ...] = ()  # --metadata-columns: reported, not gated
    allow_drift: bool = False  # publish a known shift anyway (every drift gate is reported)

    def drift_limit(self, column: str) -> float:
        return self.column_max_drift.get(column, self.max_drift)

    def changed_limit(self, column: str) -> float:
        return self.column_max_changed_labels.get(column, self.max_changed_labels)

    def moved_limit(self, column: str) -> float:
        return self.column_max_moved.get(column, self.max_moved)


@dataclass
class GateResult:
    name: str
    passed: bool
    overridden: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def blocks(self) -> bool:
        return not self.passed and not self.overridden


def check_gates(
    stats: SourceStats,
    written: int,
    schema: list[tuple[str, str]],
    current: SnapshotInfo | None,
    policy: GatePolicy,
) -> list[GateResult]:
    results = [
        GateResult("non_empty", written > 0, policy.allow_empty,
                   f"{written} rows written" + ("" if written else "; pass --allow-empty to publish an empty snapshot")),
        GateResult("no_null_keys", stats.null_keys == 0, policy.allow_null_keys,
                   f"{stats.null_keys} rows have a NULL key" + (" and were skipped; pass --allow-null-keys to publish anyway" if stats.null_keys else "")),
        GateResult("unique_keys", stats.duplicate_keys == 0, policy.allow_duplicates,
                   f"{stats.duplicate_keys} duplicate keys" + (
                       f" (e.g. {', '.join(map(str, stats.duplicate_examples))}); the first row of each was kept; "
                       "fix the query or pass --allow-duplicates" if stats.duplicate_keys else "")),
    ]
    if current is not None and current.rows:
        drop = 1 - written / current.rows
        results.append(GateResult(
            "row_count_drop", drop <= policy.max_row_drop, False,
            f"{written:,} rows vs {current.rows:,} in snapshot {current.id} ({_row_change(drop)}, limit {policy.max_row_drop:.0%} fewer)"
            + ("; raise --max-row-drop to publish anyway" if drop > policy.max_row_drop else ""),
        ))
        old = current.metadata.get("schema")
        if old is not None:
            same = [list(c) for c in old] == [list(c) for c in schema]
            results.append(GateResult(
                "prediction_columns", same, policy.allow_schema_change,
                "unchanged" if same else f"changed from {_cols(old)} to {_cols(schema)}; pass --allow-schema-change to publish anyway",
            ))
    return results


def _cols(schema: list[Any]) -> str:
    return "(" + ", ".join(f"{n} {t}" for n, t in schema) + ")"


def check_drift_gates(drift: dict[str, Any] | None, current: SnapshotInfo | None, policy: GatePolicy) -> list[GateResult]:
    """The drift gates against the current snapshot: ``prediction_drift`` (every prediction
    column's distance), ``changed_labels`` (label columns, per id) and ``moved_values``
    (numeric columns, per id). Each follows the figures ``drift.measure`` marked as gated;
    metadata columns are named in the ``prediction_drift`` detail as not gated."""
    if current is None:
        return []
    if drift is None:
        detail = f"snapshot {current.id} has no profile to compare with (exported before profiles); not checked"
        return [GateResult("prediction_drift", True, False, detail)]
    columns = drift["columns"]
    metadata = [f"{name} ({f['metadata']})" for name, f in columns.items() if f.get("metadata")]
    distances = {name: f for name, f in columns.items() if DISTANCE in f.get("gated", [DISTANCE])}
    results = [_distance_gate(distances, current.id, policy, metadata)]
    in_both = (drift.get("sample") or {}).get("in_both", 0)
    labels = {name: f[CHANGED] for name, f in columns.items() if CHANGED in f.get("gated", [])}
    if labels and in_both:
        results.append(_changed_gate(labels, in_both, policy))
    moved = {name: f for name, f in columns.items() if MOVED in f.get("gated", [])}
    if moved and in_both:
        results.append(_moved_gate(moved, in_both, policy))
    return results


HINT = "; pass --allow-drift to publish a known shift, or raise a column's limit with {}"


def _distance_gate(columns: dict[str, dict[str, Any]], baseline: int, policy: GatePolicy, metadata: list[str]) -> GateResult:
    """Refuses when a prediction column's distance (Jensen-Shannon or L-infinity) is above its limit."""
    reported = f"; reported, not gated: {', '.join(metadata)}" if metadata else ""
    if not columns:
        return GateResult("prediction_drift", True, False, f"no prediction column in common with snapshot {baseline}{reported}")

    def figure(name: str) -> str:
        f = columns[name]
        return f"{name}: {METRIC_NAMES[f['metric']]} {f['distance']:.4f}{where(f)}"

    over = [f"{figure(name)} is above the limit {policy.drift_limit(name):g}"
            for name in columns if columns[name]["distance"] > policy.drift_limit(name)]
    if over:
        return GateResult("prediction_drift", False, policy.allow_drift,
                          "; ".join(over) + HINT.format("--column-max-drift COLUMN=LIMIT") + reported)
    closest = max(columns, key=lambda c: columns[c]["distance"] - policy.drift_limit(c))
    return GateResult("prediction_drift", True, False,
                      f"vs snapshot {baseline}, closest to its limit: {figure(closest)}, limit {policy.drift_limit(closest):g}{reported}")


def _changed_gate(labels: dict[str, float], in_both: int, policy: GatePolicy) -> GateResult:
    """Refuses when a label column changed for more than its limit of the sampled ids."""
    ids = f"{in_both:,} sampled ids in both snapshots"
    over = [f"{name}: {fraction:.1%} of {ids} changed, above the limit {policy.changed_limit(name):.1%}"
            for name, fraction in labels.items() if fraction > policy.changed_limit(name)]
    if over:
        return GateResult("changed_labels", False, policy.allow_drift,
                          "; ".join(over) + HINT.format("--column-max-changed-labels COLUMN=LIMIT"))
    closest = max(labels, key=lambda c: labels[c] - policy.changed_limit(c))
    return GateResult("changed_labels", True, False,
                      f"{closest}: {labels[closest]:.1%} of {ids} changed (limit {policy.changed_limit(closest):.1%})")


def _moved_gate(columns: dict[str, dict[str, Any]], in_both: int, policy: GatePolicy) -> GateResult:
    """Refuses when a numeric column's value moved for more than its limit of the sampled ids."""
    ids = f"{in_both:,} sampled ids in both snapshots"

    def figure(name: str) -> str:
        f = columns[name]
        width = f" ({policy.move_tolerance:g} x {f['spread']:.4g})" if "spread" in f else ""
        return (f"{name}: {f[MOVED]:.1%} of {ids} moved by more than {policy.move_tolerance:g} standard "
                f"deviations{width}")

    over = [f"{figure(name)}, above the limit {policy.moved_limit(name):.1%}"
            for name in columns if columns[name][MOVED] > policy.moved_limit(name)]
    if over:
        return GateResult("moved_values", False, policy.allow_drift,
                          "; ".join(over) + HINT.format("--column-max-moved-values COLUMN=LIMIT"))
    closest = max(columns, key=lambda c: columns[c][MOVED] - policy.moved_limit(c))
    return GateResult("moved_values", True, False, f"{figure(closest)} (limit {policy.moved_limit(closest):.1%})")


def _row_change(drop: float) -> str:
    """The row count's change in words: "79.6% fewer rows", "12.0% more rows", "as many rows"."""
    if round(drop, 3) == 0:
        return "as many rows"
    return f"{abs(drop):.1%} {'fewer' if drop > 0 else 'more'} rows"
