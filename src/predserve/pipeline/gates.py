"""Publish gates: checks a snapshot must pass before it goes live.

Each gate can be overridden by a flag and is reported either way. A refused snapshot is
never published; the current one keeps serving.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from predserve.pipeline.sources import SourceStats
from predserve.store.base import SnapshotInfo


@dataclass
class GatePolicy:
    allow_empty: bool = False
    allow_null_keys: bool = False
    allow_duplicates: bool = False
    max_row_drop: float = 0.5  # refuse when rows fall by more than this fraction
    allow_schema_change: bool = False


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
            f"{written} rows vs {current.rows} in snapshot {current.id} ({drop:+.1%} drop, limit {policy.max_row_drop:.0%})"
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
