"""Publish gates: checks a snapshot must pass before it goes live.

Each gate can be overridden by a flag and is reported either way. A refused snapshot is
never published; the current one keeps serving.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from predserve.pipeline.sources import SourceStats
from predserve.store.base import SnapshotInfo
from predserve.store.limits import DISTANCE, GATES, OPTIONS, DriftLimits
from predserve.store.reports import Drift, Verdict, column_verdicts


@dataclass
class GatePolicy:
    allow_empty: bool = False
    allow_null_keys: bool = False
    allow_duplicates: bool = False
    max_row_drop: float = 0.5  # refuse when rows fall by more than this fraction
    allow_schema_change: bool = False
    # Drift against the current snapshot (predserve.pipeline.drift): refuse when a prediction
    # column's distance, a label column's fraction of sampled ids that changed, or a numeric
    # column's fraction of sampled ids that moved is above its limit (predserve.store.limits).
    # Metadata columns are reported, never gated.
    drift_limits: DriftLimits = field(default_factory=DriftLimits)
    metadata_columns: tuple[str, ...] = ()  # --metadata-columns: reported, not gated
    allow_drift: bool = False  # publish a known shift anyway (every drift gate is reported)


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


def check_drift_gates(drift: Drift | None, current: SnapshotInfo | None, policy: GatePolicy) -> list[GateResult]:
    """The drift gates against the current snapshot: ``prediction_drift`` (every prediction
    column's distance), ``changed_labels`` (label columns, per id) and ``moved_values``
    (numeric columns, per id), each refusing on the verdicts of ``reports.column_verdicts``
    (the ones the API shows); metadata columns are named in the ``prediction_drift`` detail as
    not gated."""
    if current is None:
        return []
    if drift is None:
        detail = f"snapshot {current.id} has no profile to compare with (exported before profiles); not checked"
        return [GateResult("prediction_drift", True, False, detail)]
    in_both = drift.sample.in_both if drift.sample is not None else 0
    limits = drift.limits or policy.drift_limits
    by_gate: dict[str, dict[str, Verdict]] = {gate: {} for gate in GATES.values()}
    for name, column in drift.columns.items():
        for verdict in column_verdicts(name, column, limits, in_both):
            by_gate[verdict.gate][name] = verdict
    metadata = [f"{name} ({c.metadata})" for name, c in drift.columns.items() if c.metadata]
    reported = f"; reported, not gated: {', '.join(metadata)}" if metadata else ""
    distances = by_gate["prediction_drift"]
    if not distances:
        results = [GateResult("prediction_drift", True, False, f"no prediction column in common with snapshot {current.id}{reported}")]
    else:
        results = [_gate("prediction_drift", distances, policy, f"vs snapshot {current.id}, closest to its limit: ", reported)]
    results += [_gate(gate, by_gate[gate], policy) for gate in ("changed_labels", "moved_values") if by_gate[gate]]
    return results


HINT = "; pass --allow-drift to publish a known shift, or raise a column's limit with {} COLUMN=LIMIT"


def _gate(gate: str, verdicts: dict[str, Verdict], policy: GatePolicy, closest: str = "", reported: str = "") -> GateResult:
    """Refuses when a column's verdict is over its limit (naming each such column); else passes,
    naming the column closest to its limit. The wording is the export's since issue 14."""
    over = {name: v for name, v in verdicts.items() if v.over}
    figure = next(iter(verdicts.values())).figure
    if over:
        above = " is above" if figure == DISTANCE else ", above"
        detail = "; ".join(f"{name}: {v.text}{above} the limit {v.limit_text()}" for name, v in over.items())
        return GateResult(gate, False, policy.allow_drift, detail + HINT.format(OPTIONS[figure][1]) + reported)
    name, v = max(verdicts.items(), key=lambda nv: nv[1].value - nv[1].limit)
    if figure == DISTANCE:
        return GateResult(gate, True, False, f"{closest}{name}: {v.text}, limit {v.limit_text()}{reported}")
    return GateResult(gate, True, False, f"{name}: {v.text} (limit {v.limit_text()})")


def _row_change(drop: float) -> str:
    """The row count's change in words: "79.6% fewer rows", "12.0% more rows", "as many rows"."""
    if round(drop, 3) == 0:
        return "as many rows"
    return f"{abs(drop):.1%} {'fewer' if drop > 0 else 'more'} rows"
