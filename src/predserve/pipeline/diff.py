"""``predserve diff``: two snapshots of a model side by side.

``compare_snapshots`` gathers the figures into a ``SnapshotDiff`` (each column's two profiles
and their distance, read from the snapshots' ``predserve.store.reports`` records; the drift
sample looked up in both snapshots; a few ids whose prediction changed with both bodies);
``render`` draws them in a terminal with rich: per column, both distributions as bar charts on
common bins or values, side by side. ``--json`` prints the same record.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from pydantic import BaseModel

from predserve.errors import StoreError
from predserve.pipeline import drift as drifts
from predserve.pipeline.drift import OTHER_VALUES
from predserve.store.reports import (
    CATEGORICAL, NUMERIC, PROBABILITIES, ColumnDrift, ColumnProfile, Profile, Record, SampleFigures, snapshot_report,
)

BAR_WIDTH = 28
LABELS_SHOWN = 4  # charts per probabilities column (the labels with the most probability mass)
EIGHTHS = " ▏▎▍▌▋▊▉"


def pick_snapshots(state: Any, model: str, a: int | None, b: int | None) -> tuple[int, int]:
    """(A, B): the previously published snapshot and the current one unless named."""
    if state is None or state.current is None:
        raise StoreError(f"model {model!r} has no published snapshot; run `predserve export` first")
    if b is None:
        b = state.current
    if a is None:
        earlier = [s for s in state.history if s != b]
        if not earlier:
            raise StoreError(f"model {model!r} has only one published snapshot ({b}): name two snapshots to compare")
        a = earlier[-1]
    for sid in (a, b):
        if sid not in state.snapshots:
            known = ", ".join(str(s) for s in sorted(state.snapshots))
            raise StoreError(f"snapshot {sid} of model {model!r} does not exist (known snapshots: {known})")
    if a == b:
        raise StoreError(f"snapshots A and B are both {a}: name two different snapshots")
    return a, b


class SnapshotSide(BaseModel):
    snapshot: int
    state: str
    rows: int
    published_at: float | None


class ColumnDiff(Record):
    """One column in both snapshots: its profiles (None where absent), distance and sample figures."""

    a: ColumnProfile | None
    b: ColumnProfile | None
    distance: ColumnDrift | None  # None: not in both snapshots with the same kind
    sample: dict[str, float] | None


class ChangedId(BaseModel):
    id: str
    a: dict[str, Any]  # the stored bodies
    b: dict[str, Any]


class SnapshotDiff(Record):
    model: str
    a: SnapshotSide
    b: SnapshotSide
    bins: int
    columns: dict[str, ColumnDiff]
    sample: SampleFigures
    changed: list[ChangedId]
    changed_in_sample: int


def compare_snapshots(store: Any, model: str, a: int | None = None, b: int | None = None, examples: int = 3) -> SnapshotDiff:
    """Everything ``render`` shows."""
    state = store.state(model)
    a, b = pick_snapshots(state, model, a, b)
    infos = {sid: state.snapshots[sid] for sid in (a, b)}
    profiles: dict[int, Profile] = {}
    for sid, info in infos.items():
        profile = snapshot_report(info.metadata).profile
        if profile is None:
            raise StoreError(f"snapshot {sid} of model {model!r} has no profile (it was exported before profiles "
                             "were kept); export the model again to compare its predictions")
        profiles[sid] = profile
    distances = drifts.profile_distances(profiles[a], profiles[b])
    kinds = {name: column.kind for name, column in profiles[b].columns.items()}
    sample = drifts.compare_sample(store, model, a, b, kinds, lists=drifts.list_fields(profiles[b]))
    columns = {
        name: ColumnDiff(a=profiles[a].columns.get(name), b=profiles[b].columns.get(name), distance=distances.get(name),
                         sample=sample.columns.get(name) if name in distances else None)
        for name in dict.fromkeys([*profiles[a].columns, *profiles[b].columns])
    }
    return SnapshotDiff(
        model=model, a=_side(infos[a], profiles[a]), b=_side(infos[b], profiles[b]), bins=profiles[b].bins,
        columns=columns, sample=sample.figures(),
        changed=[ChangedId(id=i, a=json.loads(old), b=json.loads(new)) for i, old, new in sample.changed[:examples]],
        changed_in_sample=len(sample.changed),
    )


def _side(info: Any, profile: Profile) -> SnapshotSide:
    return SnapshotSide(snapshot=info.id, state=info.state, rows=profile.rows, published_at=info.published_at)


# ---- drawing -----------------------------------------------------------------------------------
def _bar(share: float, scale: float, width: int = BAR_WIDTH) -> str:
    eighths = round(width * 8 * share / scale) if scale else 0
    return "█" * (eighths // 8) + (EIGHTHS[eighths % 8] if eighths % 8 else "")


def _numeric_rows(a: ColumnProfile | None, b: ColumnProfile | None, bins: int) -> list[tuple[str, float, float]]:
    """Both numeric profiles on ``bins`` common bins spanning both ranges, then NULL."""
    sides = [c for c in (a, b) if c is not None]
    lows = [c.low for c in sides if c.low is not None]
    highs = [c.high for c in sides if c.high is not None]
    rows: list[tuple[str, float, float]] = []
    if lows:
        low, high = min(lows), max(highs)
        bins = bins if high > low else 1
        width = (high - low) / bins if high > low else 1.0
        edges = [low + i * width for i in range(bins)] + [high if high > low else low + 1.0]
        counts = []
        for column in (a, b):
            ranged, points = drifts.numeric_bins(column) if column is not None else ([], {})
            row = drifts.rebin(ranged, edges)
            for value, n in points.items():
                row[min(int((value - low) / width), bins - 1)] += n
            counts.append(row)
        for i in range(bins):
            label = f"{edges[i]:.4g} .. {edges[i + 1]:.4g}" if high > low else f"{low:.6g}"
            rows.append((label, counts[0][i], counts[1][i]))
    rows.append(("NULL", float(_nulls(a)), float(_nulls(b))))
    return rows


def _nulls(column: ColumnProfile | None) -> int:
    return column.nulls if column is not None else 0


def _categorical_rows(a: ColumnProfile | None, b: ColumnProfile | None) -> list[tuple[str, float, float]]:
    old, new = [(c.values or {}) if c is not None else {} for c in (a, b)]
    values = sorted(old.keys() | new.keys(), key=lambda v: (-new.get(v, 0), -old.get(v, 0), v))
    rows = [(v, float(old.get(v, 0)), float(new.get(v, 0))) for v in values]
    others = [(c.other or 0) if c is not None else 0 for c in (a, b)]
    if any(others):
        rows.append((f"({OTHER_VALUES})", float(others[0]), float(others[1])))
    rows.append(("NULL", float(_nulls(a)), float(_nulls(b))))
    return rows


def _probability_rows(a: ColumnProfile | None, b: ColumnProfile | None, label: str, bins: int) -> list[tuple[str, float, float]]:
    sides = [((c.labels or {}).get(label) if c is not None else None) or [0] * bins for c in (a, b)]
    rows = [(f"{i / bins:.1f} .. {(i + 1) / bins:.1f}", float(sides[0][i]), float(sides[1][i])) for i in range(bins)]
    return rows + [("NULL", float(_nulls(a)), float(_nulls(b)))]


def _chart(title: str, rows: list[tuple[str, float, float]], a: int, b: int, width: int) -> Table:
    """Both snapshots' shares side by side; the bars shrink so that the chart fits ``width``
    columns (the panel's border and padding, the bin labels and the percentages never wrap)."""
    totals = [sum(r[1] for r in rows) or 1.0, sum(r[2] for r in rows) or 1.0]
    shares = [(label, x / totals[0], y / totals[1]) for label, x, y in rows]
    scale = max([max(x, y) for _, x, y in shares] + [1e-12])
    fixed = 4 + max(len(label) for label, _, _ in shares) + 2 * len("100.0%") + 4 * 2  # panel, labels, percentages, gaps
    bar = max(4, min(BAR_WIDTH, (width - fixed) // 2))
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False, box=None)
    table.add_column("", justify="right", style="dim", no_wrap=True)
    table.add_column(f"snapshot {a}", no_wrap=True, min_width=bar)
    table.add_column("", justify="right", no_wrap=True)
    table.add_column(f"snapshot {b}", no_wrap=True, min_width=bar)
    table.add_column("", justify="right", no_wrap=True)
    for label, x, y in shares:
        table.add_row(label, Text(_bar(x, scale, bar), style="cyan"), f"{x:.1%}", Text(_bar(y, scale, bar), style="magenta"), f"{y:.1%}")
    return table


def _figures(column: ColumnDiff, in_both: int) -> str:
    distance, sample = column.distance, column.sample or {}
    if distance is None:
        return "not compared: the column is not in both snapshots with the same kind"
    line = distance.distance_text()
    if "changed" in sample:
        line += f"; {sample['changed']:.1%} of {in_both:,} sampled ids changed value"
    if "moved" in sample:
        line += f"; {sample['moved']:.1%} of {in_both:,} sampled ids moved"
    if "mean_abs_change" in sample:
        line += f"; mean absolute change on {in_both:,} sampled ids {sample['mean_abs_change']:.4g}"
    return line


def render(console: Console, diff: SnapshotDiff) -> None:
    a, b = diff.a.snapshot, diff.b.snapshot
    sample = diff.sample
    console.print(f"[bold]{diff.model}[/]: snapshot {a} ({diff.a.rows:,} rows) vs snapshot {b} ({diff.b.rows:,} rows)")
    for name, column in diff.columns.items():
        profile = column.b or column.a
        assert profile is not None  # a column is in at least one snapshot
        kind = profile.kind
        if kind == NUMERIC:
            charts = [_chart("", _numeric_rows(column.a, column.b, diff.bins), a, b, console.width)]
        elif kind == CATEGORICAL:
            charts = [_chart("", _categorical_rows(column.a, column.b), a, b, console.width)]
        elif kind == PROBABILITIES:
            labels = list(dict.fromkeys([*((column.b and column.b.labels) or {}), *((column.a and column.a.labels) or {})]))
            charts = [_chart(f"label {label}", _probability_rows(column.a, column.b, label, diff.bins), a, b, console.width)
                      for label in labels[:LABELS_SHOWN]]
            if len(labels) > LABELS_SHOWN:
                charts.append(Text(f"... and {len(labels) - LABELS_SHOWN} more labels", style="dim"))
        else:
            charts = [Text(f"NULL rate: {_rate(column.a, diff.a.rows)} -> {_rate(column.b, diff.b.rows)}")]
        figures = Text(_figures(column, sample.in_both), style="bold")
        console.print(Panel(Group(figures, *charts), title=f"[bold]{name}[/] ({kind})", title_align="left", expand=False))
    console.print(f"sampled ids: {sample.ids:,} looked up, {sample.in_both:,} in both snapshots, "
                  f"{sample.appeared:,} only in {b} (appeared), {sample.disappeared:,} only in {a} (disappeared); "
                  f"{diff.changed_in_sample:,} changed their prediction")
    for change in diff.changed:
        console.print(f"\n[bold]id {change.id}[/]")
        console.print(f"  snapshot {a}: ", end="")
        console.print_json(json.dumps(change.a["prediction"]), indent=None)
        console.print(f"  snapshot {b}: ", end="")
        console.print_json(json.dumps(change.b["prediction"]), indent=None)


def _rate(column: ColumnProfile | None, rows: int) -> str:
    return f"{_nulls(column) / rows:.1%}" if rows else "n/a"
