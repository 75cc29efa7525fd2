"""Typed snapshot reports: the profile and drift a snapshot's metadata carries, the model's
timeline events, and the drift verdicts read from them.

The export writes the records (``predserve.pipeline.profile`` and ``drift``) as JSON into the
snapshot's metadata (``Profile.to_json``, ``Drift.to_json``); ``predserve snapshots``,
``predserve diff``, the admin API and its console read them back here (``snapshot_report``).
Pydantic models, so the API's OpenAPI document carries their JSON schema.

A verdict says whether one gated figure of a column is over or within its limit, which limit,
and where that limit came from; the export's gates (``predserve.pipeline.gates``) refuse on
the same verdicts (``verdicts``), so the CLI, the API and the page cannot disagree. The limits
are those the export recorded with the drift (``predserve.store.limits``); a snapshot exported
before they were recorded is judged against the defaults, and its verdicts say so.

Records written by earlier versions read as they are: fields added since (``gated``,
``metadata``, ``moved``, ``spread``, ``limits``) are absent, and a drift entry without
``gated`` gates as those versions did (its distance, and its ``changed`` when it has one).
Shapes and formulas: docs/pipeline.md ("The stored shapes").
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from predserve.store.limits import CHANGED, DISTANCE, GATES, MOVED, DriftLimits, Figure

NUMERIC, CATEGORICAL, PROBABILITIES, OTHER = "numeric", "categorical", "probabilities", "other"
FIRST, EVERY = "first", "every"  # which elements of a list body a list field's profile counts
JENSEN_SHANNON, L_INFINITY = "jensen_shannon", "l_infinity"
METRIC_NAMES = {JENSEN_SHANNON: "Jensen-Shannon divergence", L_INFINITY: "L-infinity distance"}
UNRECORDED = "the default: this snapshot's export recorded no limits"  # a verdict's ``limit_from`` for old snapshots
OVER, WITHIN, NOT_GATED = "over", "within", "not gated"
Outcome = Literal["over", "within", "not gated"]


class Record(BaseModel):
    """A stored record: written as the JSON it was read from, fields never set left out."""

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


# ---- the profile (predserve.pipeline.profile) --------------------------------------------------
class ColumnProfile(Record):
    """One prediction column's distribution in a snapshot; which fields are present depends on ``kind``."""

    kind: Literal["probabilities", "categorical", "numeric", "other"]
    nulls: int = Field(description="rows where the column is NULL (NaN and ±Inf count as NULL)")
    values: dict[str, int] | None = Field(None, description="categorical: counts of the most frequent values")
    other: int | None = Field(None, description="categorical: rows holding any other value")
    labels: dict[str, list[int]] | None = Field(
        None, description="probabilities: per label, counts of its probability in `bins` equal bins of [0, 1]")
    low: float | None = Field(None, description="numeric: the smallest value (null when every value is NULL)")
    high: float | None = Field(None, description="numeric: the largest value")
    counts: list[int] | None = Field(None, description="numeric: counts in equal bins from low to high "
                                                       "(one count when low == high)")
    # A field of an ARRAY<STRUCT> column's elements, profiled as a column of its own (named
    # ``array.field`` for every element, ``array[0].field`` for each row's first element).
    array: str | None = Field(None, description="a list field: the ARRAY<STRUCT> column whose elements' field this is")
    field: str | None = Field(None, description="a list field: the struct field profiled")
    element: Literal["first", "every"] | None = Field(
        None, description="a list field: each row's first element (rows count), or every element listed (`total` counts)")
    total: int | None = Field(None, description="a list field of every element: the elements listed, which the "
                                                "counts, `other` and `nulls` add up to (rows otherwise)")

    def counted(self, rows: int) -> int:
        """What the counts and NULLs add up to: the listed elements for a list field of every element, else ``rows``."""
        return self.total if self.total is not None else rows


class Profile(Record):
    version: int
    bins: int = Field(description="bins per histogram")
    rows: int
    columns: dict[str, ColumnProfile]


# ---- the drift (predserve.pipeline.drift) ------------------------------------------------------
class ColumnDrift(Record):
    """One column's drift against the baseline: its distance, and the sample's figures."""

    metric: Literal["jensen_shannon", "l_infinity"]
    distance: float = Field(description="Jensen-Shannon divergence (numeric, probabilities) or L-infinity distance "
                                        "(categorical, other), between 0 and 1")
    value: str | None = Field(None, description="categorical: the value where the distance is largest")
    label: str | None = Field(None, description="probabilities: the label whose distance is the column's")
    changed: float | None = Field(None, description="labels (categorical, or integer with few values) and other "
                                                    "columns: fraction of the sampled ids in both snapshots whose value changed")
    moved: float | None = Field(None, description="numeric and probabilities: fraction of the sampled ids whose value "
                                                  "moved by more than the tolerance times the column's spread")
    spread: float | None = Field(None, description="numeric: the standard deviation of the old snapshot's sampled values")
    mean_abs_change: float | None = Field(None, description="numeric and probabilities: mean absolute change over "
                                                            "the sampled ids")
    metadata: str | None = Field(None, description="why the column is reported but not gated (constant in both "
                                                   "snapshots, named by --metadata-columns, a date or timestamp)")
    gated: list[Figure] | None = Field(None, description="the figures that gate: distance, changed, moved")

    def gated_figures(self) -> list[str]:
        """The figures that gate; for a record written before ``gated`` existed, those its version gated."""
        if self.gated is not None:
            return list(self.gated)
        return [DISTANCE] + ([CHANGED] if self.changed is not None else [])

    def where(self) -> str:
        """`` (label L)`` / `` (value V)``: where the distance is largest, if it names one."""
        if self.label is not None:
            return f" (label {self.label})"
        if self.value is not None:
            return f" (value {self.value})"
        return ""

    def distance_text(self) -> str:
        """E.g. ``L-infinity distance 0.3848 (value 0)``."""
        return f"{METRIC_NAMES[self.metric]} {self.distance:.4f}{self.where()}"


class SampleFigures(Record):
    ids: int
    in_both: int
    appeared: int
    disappeared: int


class Drift(Record):
    """A snapshot's drift against the snapshot that was current when it was exported."""

    baseline: int = Field(description="the snapshot compared with (current when this one was exported)")
    columns: dict[str, ColumnDrift]
    sample: SampleFigures | None = None
    limits: DriftLimits | None = Field(None, description="the drift gates' limits the export used "
                                                         "(absent for snapshots exported before they were recorded)")


# ---- verdicts ---------------------------------------------------------------------------------
class Verdict(BaseModel):
    """One gated figure of a column against its limit."""

    gate: Literal["prediction_drift", "changed_labels", "moved_values"]
    figure: Figure
    value: float
    limit: float
    limit_from: str = Field(description="the export option that set the limit (e.g. --max-drift, "
                                        "--column-max-drift COLUMN=0.3), or that it is the default")
    over: bool = Field(description="the figure is above its limit (the gate refuses unless --allow-drift)")
    text: str = Field(description="the figure in words, e.g. 'L-infinity distance 0.3848 (value 0)'")
    why: str = Field(description="the verdict in words: the figure, over or within, the limit and where it came from")

    def limit_text(self) -> str:
        return shown_limit(self.figure, self.limit)


class ColumnDriftReport(ColumnDrift):
    """A column's stored drift with the verdicts on it."""

    metric_name: str = Field(description="the distance's name, e.g. Jensen-Shannon divergence")
    verdict: Outcome = Field(description="over: a gated figure is above its limit; within: none is; "
                                         "not gated: a metadata column, or no figure gates")
    verdicts: list[Verdict] = Field(description="one per gated figure")


class DriftReport(Drift):
    """A snapshot's drift with every column's verdicts and the limits they used."""

    columns: dict[str, ColumnDriftReport]  # type: ignore[assignment]
    limits: DriftLimits = Field(description="the limits the verdicts used: the export's, or the defaults "
                                            "when it recorded none (see limits_recorded)")
    limits_recorded: bool = Field(description="false: exported before limits were recorded, judged against the defaults")
    verdict: Outcome = Field(description="over when any column is over, within when every gated column is within")


def percent(fraction: float) -> str:
    return f"{fraction:.1%}"


def shown_limit(figure: str, limit: float) -> str:
    """A limit as its figure is shown: a distance as a number, a fraction of ids as a percentage."""
    return f"{limit:g}" if figure == DISTANCE else percent(limit)


def column_verdicts(name: str, column: ColumnDrift, limits: DriftLimits, in_both: int,
                    recorded: bool = True) -> list[Verdict]:
    """The verdicts on one column's gated figures (none for a metadata column).

    The per-id figures (``changed``, ``moved``) are judged only when sampled ids are in both
    snapshots: without them there is nothing they measured.
    """
    out = []
    ids = f"{in_both:,} sampled ids in both snapshots"
    for figure in column.gated_figures():
        if figure == DISTANCE:
            value, text = column.distance, column.distance_text()
        elif figure == CHANGED and column.changed is not None and in_both:
            value, text = column.changed, f"{percent(column.changed)} of {ids} changed"
        elif figure == MOVED and column.moved is not None and in_both:
            tolerance = limits.move_tolerance
            width = f" ({tolerance:g} x {column.spread:.4g})" if column.spread is not None else ""
            value = column.moved
            text = f"{percent(column.moved)} of {ids} moved by more than {tolerance:g} standard deviations{width}"
        else:
            continue
        limit, option = limits.limit(figure, name)
        option, over = option if recorded else UNRECORDED, value > limit
        why = f"{text} is {'above' if over else 'within'} the limit {shown_limit(figure, limit)} ({option})"
        out.append(Verdict(gate=GATES[figure], figure=figure, value=value, limit=limit, limit_from=option,  # type: ignore[arg-type]
                           over=over, text=text, why=why))
    return out


def outcome(verdicts: list[Verdict]) -> Outcome:
    if not verdicts:
        return NOT_GATED  # type: ignore[return-value]
    return OVER if any(v.over for v in verdicts) else WITHIN  # type: ignore[return-value]


def judge(drift: Drift) -> DriftReport:
    """``drift`` with every column's verdicts, against its recorded limits (or the defaults)."""
    limits = drift.limits if drift.limits is not None else DriftLimits()
    in_both = drift.sample.in_both if drift.sample is not None else 0
    columns = {}
    for name, column in drift.columns.items():
        found = column_verdicts(name, column, limits, in_both, drift.limits is not None)
        columns[name] = ColumnDriftReport(**column.model_dump(exclude_unset=True), metric_name=METRIC_NAMES[column.metric],
                                          verdict=outcome(found), verdicts=found)
    every = [v for c in columns.values() for v in c.verdicts]
    return DriftReport(baseline=drift.baseline, columns=columns, sample=drift.sample, limits=limits,
                       limits_recorded=drift.limits is not None, verdict=outcome(every))


class SnapshotReport(BaseModel):
    profile: Profile | None = Field(description="its prediction columns' distributions (null before profiles)")
    drift: DriftReport | None = Field(description="its drift against the snapshot it replaced, with the verdicts "
                                                  "(null for a first snapshot)")


def snapshot_report(metadata: dict[str, Any]) -> SnapshotReport:
    """The profile and judged drift a snapshot's metadata carries (None for what it lacks)."""
    profile, drift = metadata.get("profile"), metadata.get("drift")
    return SnapshotReport(profile=Profile.model_validate(profile) if profile is not None else None,
                          drift=judge(Drift.model_validate(drift)) if drift is not None else None)


def largest(drift: Drift | None) -> tuple[str, ColumnDrift] | None:
    """The column with the largest distance: the prediction columns' largest, a metadata
    column's only when every column is metadata."""
    columns = drift.columns if drift is not None else {}
    if not columns:
        return None
    columns = {c: f for c, f in columns.items() if not f.metadata} or columns
    name = max(columns, key=lambda c: columns[c].distance)
    return name, columns[name]


# ---- the model timeline (predserve.store.base.ModelState.record) ------------------------------
class RefusingGate(BaseModel):
    gate: str = Field(description="e.g. prediction_drift, changed_labels, row_count_drop")
    detail: str = Field(description="the figure and the limit, as the export printed them")


class Event(BaseModel):
    time: float = Field(description="Unix time")
    event: Literal["published", "rolled_back", "refused"]
    snapshot: int = Field(description="the snapshot published, rolled back to, or refused")
    previous: int | None = Field(description="the snapshot current before (for a refusal: the one that kept serving)")
    rows: int | None = None
    gates: list[RefusingGate] | None = Field(None, description="refused: the gates that refused it")
    overridden: list[str] | None = Field(None, description="published: gates that failed and were overridden "
                                                           "(e.g. --allow-drift)")
    replayed: int | None = Field(None, description="published or rolled back: updates made meanwhile (while its "
                                                   "export ran, or since it stopped being current) replayed into it")
