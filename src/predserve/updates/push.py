"""``predserve push``: JSON lines of updates from a file or standard input, applied in batches.

Each line is ``{"id": "42", "prediction": {...}}`` or ``{"id": "42", "delete": true}``, with an
optional ``"sequence"`` (store/updates.py has the rules). Blank lines are skipped. A batch is
applied in one atomic step; a bad line (not JSON, no id, a column the current snapshot does
not have, a body over the limit) is reported with its line number and, unless ``skip_bad``,
nothing of its batch is applied and the push stops there, so everything before that batch
has landed and the push can be resumed from the batch's first line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

from predserve.errors import StoreError
from predserve.store import SnapshotStore
from predserve.store.updates import MAX_UPDATE_BYTES, Update, parse_update
from predserve.updates.apply import apply_batch, current_columns

DEFAULT_BATCH = 1000
MAX_BATCH = 100_000
# A line may carry a prediction of MAX_UPDATE_BYTES plus its id, sequence and field names.
MAX_LINE_BYTES = MAX_UPDATE_BYTES + 1024


@dataclass
class PushReport:
    """What a push did. ``complete``: every line landed (applied, or not newer than its id's last update)."""

    lines: int = 0
    applied: int = 0
    ignored: int = 0
    batches: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)
    # Lines of batches that were not applied because of a bad line: (first line, last line).
    not_applied: list[tuple[int, int]] = field(default_factory=list)
    stopped_at: int | None = None  # the first line of the batch the push stopped at
    snapshot: int | None = None
    position: int | None = None

    @property
    def complete(self) -> bool:
        return not self.bad and not self.not_applied

    def to_dict(self) -> dict:
        return {
            "lines": self.lines, "applied": self.applied, "ignored": self.ignored, "batches": self.batches,
            "bad": [{"line": line, "error": error} for line, error in self.bad],
            "not_applied": [{"first_line": a, "last_line": b} for a, b in self.not_applied],
            "stopped_at_line": self.stopped_at, "snapshot": self.snapshot, "log_position": self.position,
            "complete": self.complete,
        }


def read_lines(stream: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line) for each non-blank line; ``None`` for a line over MAX_LINE_BYTES.

    A long line is never held whole: it is read in limited chunks and dropped.
    """
    number = 0
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(MAX_LINE_BYTES + 1)
            yield number, None
            continue
        if line.strip():
            yield number, line


def parse_line(line: bytes | None) -> Update | str:
    """The update of one line, or why it is bad."""
    if line is None:
        return f"line of more than {MAX_LINE_BYTES:,} bytes is over the limit ({MAX_UPDATE_BYTES:,} bytes per prediction)"
    try:
        return parse_update(line)
    except StoreError as exc:
        return str(exc)


def _batches(stream: BinaryIO, size: int) -> Iterator[list[tuple[int, Update | str]]]:
    batch: list[tuple[int, Update | str]] = []
    for number, line in read_lines(stream):
        batch.append((number, parse_line(line)))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def push(store: SnapshotStore, model: str, stream: BinaryIO, batch_size: int = DEFAULT_BATCH,
         skip_bad: bool = False) -> PushReport:
    """Apply the JSON lines of ``stream`` to ``model`` in batches of ``batch_size`` lines."""
    if not 1 <= batch_size <= MAX_BATCH:
        raise StoreError(f"the batch size must be from 1 to {MAX_BATCH:,} lines, not {batch_size}")
    report = PushReport()
    for batch in _batches(stream, batch_size):
        report.lines = batch[-1][0]
        outcome = apply_batch(store, model, batch, skip_bad, current_columns(store, model))
        report.bad.extend(sorted(outcome.bad))
        if outcome.result is not None:
            report.batches += 1
            report.applied += outcome.result.applied
            report.ignored += outcome.result.ignored
            report.snapshot, report.position = outcome.result.snapshot, outcome.result.position
        if outcome.bad and not skip_bad:
            report.not_applied.append((batch[0][0], batch[-1][0]))
            report.stopped_at = batch[0][0]
            break
    return report
