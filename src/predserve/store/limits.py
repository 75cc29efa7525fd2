"""The drift gates' limits, written once: their defaults, and the limits one export used.

The export's gates (``predserve.pipeline.gates``) and the API's verdicts
(``predserve.store.reports``) both read a limit through ``DriftLimits.limit``, so they cannot
disagree. The export records its ``DriftLimits`` in the snapshot's drift entry; a snapshot
exported before limits were recorded is judged against the defaults, and says so.
Standard library only: the CLI's ``--help`` reads the defaults (docs/pipeline.md tells how
they were chosen).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DEFAULT_MAX_DRIFT = 0.1  # per column: JS divergence or L-infinity distance
DEFAULT_MAX_CHANGED_LABELS = 0.1  # per label column: fraction of sampled ids whose value changed
DEFAULT_MAX_MOVED = 0.1  # per numeric column: fraction of sampled ids that moved (see DEFAULT_MOVE_TOLERANCE)
DEFAULT_MOVE_TOLERANCE = 0.5  # an id moved when its value changed by more than this many standard deviations

# The figures of a column's drift that can gate, and the gate each one feeds.
DISTANCE, CHANGED, MOVED = "distance", "changed", "moved"
Figure = Literal["distance", "changed", "moved"]
GATES: dict[str, str] = {DISTANCE: "prediction_drift", CHANGED: "changed_labels", MOVED: "moved_values"}
# The export's options that set each figure's limit: for every column, then for one column.
OPTIONS: dict[str, tuple[str, str]] = {
    DISTANCE: ("--max-drift", "--column-max-drift"),
    CHANGED: ("--max-changed-labels", "--column-max-changed-labels"),
    MOVED: ("--max-moved-values", "--column-max-moved-values"),
}


@dataclass(frozen=True)
class DriftLimits:
    """The limits of the drift gates, as one export used them (``predserve export``'s options)."""

    max_drift: float = DEFAULT_MAX_DRIFT
    max_changed_labels: float = DEFAULT_MAX_CHANGED_LABELS
    max_moved: float = DEFAULT_MAX_MOVED
    move_tolerance: float = DEFAULT_MOVE_TOLERANCE
    column_max_drift: dict[str, float] = field(default_factory=dict)
    column_max_changed_labels: dict[str, float] = field(default_factory=dict)
    column_max_moved: dict[str, float] = field(default_factory=dict)

    def limit(self, figure: str, column: str) -> tuple[float, str]:
        """The limit of one column's figure, and the option it came from (``OPTIONS``)."""
        overall, per_column = {
            DISTANCE: (self.max_drift, self.column_max_drift),
            CHANGED: (self.max_changed_labels, self.column_max_changed_labels),
            MOVED: (self.max_moved, self.column_max_moved),
        }[figure]
        every, one = OPTIONS[figure]
        if column in per_column:
            return per_column[column], f"{one} {column}={per_column[column]:g}"
        return overall, every
