"""The drift gates' limits as one export used them (their defaults: ``predserve.settings``).

The export's gates (``predserve.pipeline.gates``) and the API's verdicts
(``predserve.store.reports``) both read a limit through ``DriftLimits.limit``, so they cannot
disagree. The export records its ``DriftLimits`` in the snapshot's drift entry; a snapshot
exported before limits were recorded is judged against the defaults, and says so.
Standard library only, like settings: the CLI builds a ``DriftLimits`` from its options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from predserve import settings

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

    max_drift: float = settings.MAX_DRIFT
    max_changed_labels: float = settings.MAX_CHANGED_LABELS
    max_moved: float = settings.MAX_MOVED
    move_tolerance: float = settings.MOVE_TOLERANCE
    column_max_drift: dict[str, float] = field(default_factory=dict)
    column_max_changed_labels: dict[str, float] = field(default_factory=dict)
    column_max_moved: dict[str, float] = field(default_factory=dict)

    def limit(self, figure: str, column: str) -> tuple[float, str]:
        """The limit of one column's figure, and the option it came from (``OPTIONS``)."""
        overall, per_column = self._limits(figure)
        every, one = OPTIONS[figure]
        if column in per_column:
            return per_column[column], f"{one} {column}={per_column[column]:g}"
        return overall, every

    def names(self, figure: str, column: str) -> bool:
        """Whether an option sets this column's own limit for the figure (``--column-max-...``)."""
        return column in self._limits(figure)[1]

    def _limits(self, figure: str) -> tuple[float, dict[str, float]]:
        """The figure's limit for every column, and the columns' own."""
        return {
            DISTANCE: (self.max_drift, self.column_max_drift),
            CHANGED: (self.max_changed_labels, self.column_max_changed_labels),
            MOVED: (self.max_moved, self.column_max_moved),
        }[figure]
