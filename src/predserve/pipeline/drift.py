"""Drift between two snapshots of a model: distances between their profiles, and what changed
for a fixed sample of ids. The records it reads and writes (``Profile``, ``Drift``) and the
verdicts on them live with the snapshots, in ``predserve.store.reports``; the limits in
``predserve.store.limits``.

Distances, as Vertex AI Model Monitoring defines them (it computes them with TensorFlow Data
Validation, whose formulas these follow):

- numeric columns, and each label of a probabilities column: the Jensen-Shannon divergence
  of the two histograms,
      JS(P, Q) = 1/2 * sum_i p_i log2(p_i / m_i) + 1/2 * sum_i q_i log2(q_i / m_i),  m = (P + Q) / 2
  with base-2 logarithms, so 0 <= JS <= 1; a bin where p_i = 0 adds nothing to its sum (the
  limit of x log x), so empty bins need no smoothing. Two numeric histograms with different
  ranges are first re-binned onto the union of their bin edges, each bin's count spread
  evenly over the new bins it covers; a column with a single value is a point mass, a bin of
  its own (TFDV's ``AlignHistograms``). A probabilities column's figure is its worst label's.
- categorical columns: the L-infinity distance, max over values v of |p(v) - q(v)|, each
  side's counts divided by its own total (TFDV's ``LInftyDistance``); values outside the top
  ones count together as one value, "other values".
- "other" columns: the L-infinity distance between their NULL rates.

NULL is one more bin (or value) on both sides, so a column that turns NULL drifts. The fields
of a list body (``recommendations.item_id``, ``recommendations[0].predicted_rating``: see
``predserve.pipeline.profile_columns``) are categorical and numeric columns of the profile,
measured and gated as any other.

On the sample (``SAMPLE_ATTACHMENT``: the ids with the smallest hash, chosen by the export),
both snapshots' stored bodies are read in batches and compared per id, for every column:

- categorical columns, and integer columns whose sampled values are few (at most
  ``LABEL_VALUES`` distinct integers: an INT64 label exported without its ``_probs``): the
  fraction of ids present in both whose value changed (``changed``);
- other numeric columns: the fraction of ids whose value *moved* by more than ``tolerance``
  times the column's spread (the standard deviation of the old snapshot's sampled values), or
  turned NULL or non-NULL (``moved``), and the mean absolute change; a flip or a shuffle
  across ids keeps the distribution but moves most ids, so it cannot hide;
- probabilities columns: the same ``moved`` (an id moved when any label's probability moved
  by more than ``tolerance`` times that label's spread) and each label's mean absolute change;
- other columns (dates, timestamps, arrays, structs): the fraction of ids whose value changed;
- list fields (``sampled_value``): an id field of every element (``recommendations.item_id``)
  changed when the id's list of it changed, its set or its order; a numeric field of the first
  element (``recommendations[0].predicted_rating``) moved as a numeric column's value does;
  one of every element (``forecast.forecast_value``) moved when any position's value moved
  by more than ``tolerance`` times that position's spread, or the list's length changed, as a
  probabilities column with each position for a label.

and how many sampled ids appeared (only in the new snapshot) or disappeared (only in the old).

Which figures gate (``gated_figures``): every prediction column's distance and its per-id
figure (``changed`` for labels, ``moved`` for numbers and for a probabilities column with no
label column beside it; ``predicted_x_probs`` beside ``predicted_x`` is covered per id by
that label). The fields of a ranking (a list with an id field: top-N recommendations) gate
by their distances only, their per-id figures only when a column limit names them: an
ordinary retrain of a recommender changes nearly every id's list and moves its scores
(docs/pipeline.md, "List bodies"). A horizon's (a list without one: a forecast) gate as any
numeric column's. Metadata columns are reported, never gated: a column constant within each of the
two snapshots (``'v2' AS model_version``), one named by ``--metadata-columns``, and dates and
timestamps (``CURRENT_TIMESTAMP() AS scored_at``), which are never a drift signal. An "other"
column's per-id ``changed`` is reported, not gated (nested numbers change on every retrain).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from predserve import settings
from predserve.store.limits import CHANGED, DISTANCE, MOVED, DriftLimits
from predserve.store.reports import (
    CATEGORICAL, EVERY, FIRST, JENSEN_SHANNON, L_INFINITY, NUMERIC, OTHER, PROBABILITIES, ColumnDrift, ColumnProfile,
    Drift, Profile, SampleFigures,
)

BINS = 10  # bins per histogram in a profile: TensorFlow Data Validation's default number of buckets
LABEL_VALUES = 20  # an integer column with at most this many distinct sampled values is a label
# Why a column is reported but not gated (the ``metadata`` figure of its drift entry).
CONSTANT, NAMED, TEMPORAL = "constant in both snapshots", "named by --metadata-columns", "a date or timestamp"

SAMPLE_ATTACHMENT = "drift-sample"  # the snapshot attachment holding the sample's ids
READ_BATCH = 500  # ids per batched read (store.get_many)
READ_TIMEOUT = 30.0  # seconds one batched read may take: open network stores with it (their default suits the API)
NULL_VALUE, OTHER_VALUES = "NULL", "other values"  # how the two pseudo-values are reported


# ---- distances -------------------------------------------------------------------------------
def jensen_shannon(p: Sequence[float], q: Sequence[float]) -> float:
    """JS divergence (base 2) of two aligned count vectors; 0 when both are empty, 1 when one is."""
    total_p, total_q = float(sum(p)), float(sum(q))
    if total_p == 0 or total_q == 0:
        return 0.0 if total_p == total_q else 1.0
    js = 0.0
    for a, b in zip(p, q):
        a, b = a / total_p, b / total_q
        m = (a + b) / 2
        if a > 0:
            js += 0.5 * a * math.log2(a / m)
        if b > 0:
            js += 0.5 * b * math.log2(b / m)
    return min(max(js, 0.0), 1.0)  # rounding can step a hair outside [0, 1]


def l_infinity(p: dict[str, float], q: dict[str, float]) -> tuple[float, str | None]:
    """L-infinity distance of two count maps, each normalised by its own total, and the value where it is largest."""
    total_p, total_q = float(sum(p.values())), float(sum(q.values()))
    worst, where = 0.0, None
    for value in sorted(set(p) | set(q)):
        share_p = p.get(value, 0) / total_p if total_p else 0.0
        share_q = q.get(value, 0) / total_q if total_q else 0.0
        if abs(share_p - share_q) > worst:
            worst, where = abs(share_p - share_q), value
    return worst, where


def numeric_bins(column: ColumnProfile) -> tuple[list[tuple[float, float, float]], dict[float, float]]:
    """(ranged bins as (low, high, count), point masses) of a numeric column's profile."""
    counts, low, high = column.counts or [], column.low, column.high
    if not counts or low is None or high is None:
        return [], {}
    if low == high:
        return [], {float(low): float(sum(counts))}
    width = (high - low) / len(counts)
    edges = [low + i * width for i in range(len(counts))] + [high]
    return [(edges[i], edges[i + 1], float(n)) for i, n in enumerate(counts)], {}


def rebin(bins: list[tuple[float, float, float]], edges: list[float]) -> list[float]:
    """Counts on ``edges``, each old bin's count spread evenly over the part each new bin covers."""
    out = [0.0] * (len(edges) - 1)
    for low, high, count in bins:
        for j in range(len(edges) - 1):
            overlap = min(high, edges[j + 1]) - max(low, edges[j])
            if overlap > 0:
                out[j] += count * overlap / (high - low)
    return out


def aligned_histograms(old: ColumnProfile, new: ColumnProfile) -> tuple[list[float], list[float]]:
    """Two numeric columns' counts on common bins: the union of their edges, then point masses, then NULLs."""
    old_bins, old_points = numeric_bins(old)
    new_bins, new_points = numeric_bins(new)
    edges = sorted({e for low, high, _ in old_bins + new_bins for e in (low, high)})
    p = rebin(old_bins, edges) if len(edges) > 1 else []
    q = rebin(new_bins, edges) if len(edges) > 1 else []
    for point in sorted(set(old_points) | set(new_points)):
        p.append(old_points.get(point, 0.0))
        q.append(new_points.get(point, 0.0))
    return p + [old.nulls], q + [new.nulls]


def _shares(column: ColumnProfile) -> dict[str, float]:
    """A categorical (or other) column's counts, NULL and other values included as pseudo-values."""
    counts = {f"={v}": float(n) for v, n in (column.values or {}).items()}
    counts[NULL_VALUE] = float(column.nulls)
    if column.kind == CATEGORICAL:
        counts[OTHER_VALUES] = float(column.other or 0)
    return counts


def column_distance(old: ColumnProfile, new: ColumnProfile, rows: tuple[int, int]) -> ColumnDrift | None:
    """The distance between one column's profiles in two snapshots; None if its kind changed.

    ``rows`` (old, new) gives an "other" column its non-NULL count.
    """
    kind = new.kind
    if kind != old.kind:
        return None
    if kind == NUMERIC:
        return ColumnDrift(metric=JENSEN_SHANNON, distance=jensen_shannon(*aligned_histograms(old, new)))
    if kind == PROBABILITIES:
        worst, label_of_worst = 0.0, None
        old_labels, new_labels = old.labels or {}, new.labels or {}
        for label in sorted(set(old_labels) | set(new_labels)):
            p = list(old_labels.get(label, [])) or [0] * len(new_labels[label])
            q = list(new_labels.get(label, [])) or [0] * len(p)
            distance = jensen_shannon(p + [old.nulls], q + [new.nulls])
            if label_of_worst is None or distance > worst:
                worst, label_of_worst = distance, label
        return ColumnDrift(metric=JENSEN_SHANNON, distance=worst, label=label_of_worst)
    old_shares, new_shares = _shares(old), _shares(new)
    if kind == OTHER:
        old_shares["not NULL"] = rows[0] - old_shares[NULL_VALUE]
        new_shares["not NULL"] = rows[1] - new_shares[NULL_VALUE]
    distance, where = l_infinity(old_shares, new_shares)
    return ColumnDrift(metric=L_INFINITY, distance=distance, value=_shown(where))


def _shown(value: str | None) -> str | None:
    return value[1:] if value is not None and value.startswith("=") else value


def profile_distances(old: Profile, new: Profile) -> dict[str, ColumnDrift]:
    """Per column present in both profiles with the same kind: its distance (see column_distance)."""
    out = {}
    for name, column in new.columns.items():
        before = old.columns.get(name)
        if before is not None:
            distance = column_distance(before, column, (old.rows, new.rows))
            if distance is not None:
                out[name] = distance
    return out


# ---- the sample --------------------------------------------------------------------------------
@dataclass
class SampleComparison:
    """What changed for the sampled ids between two snapshots."""

    ids: int = 0  # sampled ids looked up (both snapshots' samples)
    in_both: int = 0
    appeared: int = 0  # in the new snapshot only
    disappeared: int = 0  # in the old snapshot only
    columns: dict[str, dict[str, float]] = field(default_factory=dict)  # "changed" or "mean_abs_change"
    changed: list[tuple[str, bytes, bytes]] = field(default_factory=list)  # (id, old body, new body), label changes first

    def figures(self) -> SampleFigures:
        return SampleFigures(ids=self.ids, in_both=self.in_both, appeared=self.appeared, disappeared=self.disappeared)


def encode_sample(ids: Iterable[str]) -> bytes:
    return json.dumps({"hash": "md5", "ids": list(ids)}).encode()


def read_sample(store: Any, model: str, snapshot: int) -> list[str]:
    """A snapshot's sampled ids (none for a snapshot exported before samples were kept)."""
    raw = store.read_attachment(model, snapshot, SAMPLE_ATTACHMENT)
    return list(json.loads(raw)["ids"]) if raw else []


def read_bodies(store: Any, model: str, snapshot: int, ids: Sequence[str]) -> list[bytes | None]:
    """Stored bodies of ``ids``, in batched reads of READ_BATCH ids."""
    out: list[bytes | None] = []
    for start in range(0, len(ids), READ_BATCH):
        out.extend(store.get_many(model, snapshot, [i.encode() for i in ids[start:start + READ_BATCH]]))
    return out


def compare_sample(store: Any, model: str, old: int, new: int, kinds: dict[str, str],
                   new_ids: Sequence[str] | None = None, tolerance: float = settings.MOVE_TOLERANCE,
                   lists: Mapping[str, ColumnProfile] | None = None) -> SampleComparison:
    """Look both snapshots' samples up in both snapshots and compare the predictions.

    ``kinds`` maps each compared column to its kind, ``lists`` each list field among them to
    its profile (``list_fields``); ``new_ids`` is the new snapshot's sample when the caller
    already has it (the export), else it is read from the store.
    """
    ids = sorted(set(read_sample(store, model, old)) | set(new_ids if new_ids is not None else read_sample(store, model, new)))
    return compare_bodies(ids, read_bodies(store, model, old, ids), read_bodies(store, model, new, ids), kinds, tolerance, lists)


def list_fields(profile: Profile) -> dict[str, ColumnProfile]:
    """The profile's list fields (``recommendations.item_id``, ``forecast[0].forecast_value``), by name."""
    return {name: column for name, column in profile.columns.items() if column.array is not None}


def compare_bodies(ids: Sequence[str], old: Sequence[bytes | None], new: Sequence[bytes | None],
                   kinds: dict[str, str], tolerance: float = settings.MOVE_TOLERANCE,
                   lists: Mapping[str, ColumnProfile] | None = None) -> SampleComparison:
    """Per column, what changed for the ids present in both (see the module docstring)."""
    out = SampleComparison()
    lists = lists or {}
    pairs: dict[str, list[tuple[Any, Any]]] = {c: [] for c in kinds}
    label_changes, other_changes = [], []
    for entity_id, before, after in zip(ids, old, new):
        if before is None or after is None:
            out.appeared += before is None and after is not None
            out.disappeared += after is None and before is not None
            continue
        out.in_both += 1
        a, b = json.loads(before)["prediction"], json.loads(after)["prediction"]
        values = {c: (sampled_value(a, c, lists.get(c)), sampled_value(b, c, lists.get(c))) for c in kinds}
        for column, pair in values.items():
            pairs[column].append(pair)
        if any(x != y for c, (x, y) in values.items() if kinds[c] == CATEGORICAL):
            label_changes.append((entity_id, before, after))
        elif a != b:
            other_changes.append((entity_id, before, after))
    out.ids = out.in_both + out.appeared + out.disappeared  # ids in neither snapshot are not counted
    for column, values in pairs.items():
        kind = kinds[column]
        if kind == NUMERIC and column in lists and lists[column].element == EVERY:
            out.columns[column] = _positions_figures(values, tolerance)
        elif kind == NUMERIC:
            out.columns[column] = _numeric_figures(values, tolerance)
        elif kind == PROBABILITIES:
            out.columns[column] = _probabilities_figures(values, tolerance)
        else:
            out.columns[column] = {CHANGED: _changed(values)}
    out.changed = label_changes + other_changes
    return out


def sampled_value(prediction: dict[str, Any], column: str, listed: ColumnProfile | None = None) -> Any:
    """A column's value in a stored body. A list field's is the field of every element, as a
    list (None when the list is NULL), or of the first one (None for an empty or NULL list)."""
    if listed is None:
        return prediction.get(column)
    items = prediction.get(listed.array or "")
    if not isinstance(items, list):
        return None
    values = [item.get(listed.field) if isinstance(item, dict) else None for item in items]
    if listed.element == FIRST:
        return values[0] if values else None
    return values


def _changed(pairs: Sequence[tuple[Any, Any]]) -> float:
    return sum(a != b for a, b in pairs) / len(pairs) if pairs else 0.0


def is_label(pairs: Sequence[tuple[Any, Any]]) -> bool:
    """Whether a numeric column's sampled values are those of a label: few distinct integers (NULLs aside)."""
    values = {v for pair in pairs for v in pair if v is not None}
    return 0 < len(values) <= LABEL_VALUES and all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def spread(values: Sequence[float]) -> float:
    """The population standard deviation of ``values`` (0 for fewer than two)."""
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def _numeric_figures(pairs: Sequence[tuple[Any, Any]], tolerance: float) -> dict[str, Any]:
    numbers = [(_number(a), _number(b)) for a, b in pairs]
    both = [(x, y) for x, y in numbers if x is not None and y is not None]
    mean_abs = sum(abs(y - x) for x, y in both) / len(both) if both else 0.0
    if is_label(pairs):  # an INT64 label without its probabilities: compared by value
        return {CHANGED: _changed(pairs), "mean_abs_change": mean_abs}
    width = spread([x for x, _ in numbers if x is not None])
    compared = [(x, y) for x, y in numbers if x is not None or y is not None]
    moved = sum(x is None or y is None or abs(y - x) > tolerance * width for x, y in compared)
    return {MOVED: moved / len(compared) if compared else 0.0, "mean_abs_change": mean_abs, "spread": width}


def _probabilities_figures(pairs: Sequence[tuple[Any, Any]], tolerance: float) -> dict[str, Any]:
    return _keyed_figures([_probabilities(a) for a, _ in pairs], [_probabilities(b) for _, b in pairs], tolerance)


def _positions_figures(pairs: Sequence[tuple[Any, Any]], tolerance: float) -> dict[str, Any]:
    """A numeric list field of every element: as a probabilities column's, each position in the
    list (the n-th recommendation, the n-th step of a horizon) standing for a label."""
    def positions(values: Any) -> dict[str, float]:
        numbers = [_number(v) for v in values or []]
        return {str(i): n for i, n in enumerate(numbers) if n is not None}
    return _keyed_figures([positions(a) for a, _ in pairs], [positions(b) for _, b in pairs], tolerance)


def _keyed_figures(old: Sequence[dict[str, float]], new: Sequence[dict[str, float]], tolerance: float) -> dict[str, Any]:
    """Per id, numbers by key (a label, a position) before and after: ``moved`` when a key
    appeared or disappeared, or any key's number moved by more than ``tolerance`` times that
    key's spread over the old values; and the mean absolute change over every key in both."""
    widths = {label: spread([p[label] for p in old if label in p]) for label in {lb for p in old for lb in p}}
    changes, moved = [], 0
    for before, after in zip(old, new):
        common = before.keys() & after.keys()
        deltas = {label: abs(after[label] - before[label]) for label in common}
        changes.extend(deltas.values())
        moved += before.keys() != after.keys() or any(d > tolerance * widths.get(lb, 0.0) for lb, d in deltas.items())
    return {"mean_abs_change": sum(changes) / len(changes) if changes else 0.0, MOVED: moved / len(old) if old else 0.0}


def _probabilities(value: Any) -> dict[str, float]:
    out = {}
    for item in value or []:
        if isinstance(item, dict) and _number(item.get("prob")) is not None:
            out[str(item.get("label"))] = _number(item.get("prob"))  # type: ignore[assignment]
    return out


def _number(value: Any) -> float | None:
    try:
        number = float(value)  # BIGNUMERIC is served as a string of digits
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# ---- a snapshot's drift, as stored in its metadata ---------------------------------------------
def measure(old_profile: Profile, new_profile: Profile, baseline: int, sample: SampleComparison | None,
            limits: DriftLimits, metadata_columns: Iterable[str] = (), temporal_columns: Iterable[str] = ()) -> Drift:
    """The ``drift`` metadata entry: distances per column, the sample's figures merged in, per
    column the figures that gate (``gated``) or, for a metadata column, why none does; and the
    ``limits`` the gates judge them by (recorded, so the API's verdicts are the export's)."""
    named, temporal = set(metadata_columns), set(temporal_columns)
    columns = {}
    for name, distance in profile_distances(old_profile, new_profile).items():
        figures = distance.to_json()
        if sample is not None:
            figures.update(sample.columns.get(name, {}))
        array = new_profile.columns[name].array  # a list field is named by its list column
        reason = (NAMED if name in named or array in named else TEMPORAL if name in temporal
                  else CONSTANT if is_constant(old_profile, name) and is_constant(new_profile, name) else None)
        if reason is not None:
            figures["metadata"] = reason
        figures["gated"] = [] if reason is not None else gated_figures(name, figures, new_profile, limits)
        figures.update({k: round(v, 6) for k, v in figures.items() if isinstance(v, float)})  # compact, far below any limit's precision
        columns[name] = ColumnDrift.model_validate(figures)
    return Drift(baseline=baseline, columns=columns, sample=sample.figures() if sample is not None else None, limits=limits)


def gated_figures(name: str, figures: dict[str, Any], profile: Profile, limits: DriftLimits | None = None) -> list[str]:
    """A prediction column's gated figures: its distance, and its per-id figure (see the module docstring)."""
    column = profile.columns.get(name)
    kind = column.kind if column is not None else None
    gated = [DISTANCE]
    if CHANGED in figures and kind in (CATEGORICAL, NUMERIC):
        gated.append(CHANGED)
    if MOVED in figures:
        label = name[:-len("_probs")] if name.endswith("_probs") else None
        if kind != PROBABILITIES or label is None or label not in profile.columns:
            gated.append(MOVED)
    if column is not None and column.array is not None and is_ranking(profile, column.array):
        # A ranking's items and their scores churn on every retrain: per id, gated only when a column limit names it.
        gated = [f for f in gated if f == DISTANCE or (limits is not None and limits.names(f, name))]
    return gated


def is_ranking(profile: Profile, array: str) -> bool:
    """Whether a list column is a ranking (top-N items: it has an id field) rather than a horizon (values by step)."""
    return any(c.array == array and c.kind == CATEGORICAL for c in profile.columns.values())


def is_constant(profile: Profile, name: str) -> bool:
    """Whether a column holds one value (or only NULLs) in every row of a profiled snapshot."""
    column = profile.columns.get(name)
    if column is None:
        return False
    counted = column.counted(profile.rows)
    if counted and column.nulls == counted:
        return True
    if column.nulls:
        return False
    if column.kind == CATEGORICAL:
        return len(column.values or {}) == 1 and not column.other
    if column.kind == NUMERIC:
        return column.low is not None and column.low == column.high
    return False
