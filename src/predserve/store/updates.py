"""Updates between full exports: one id's new prediction (an upsert) or its removal (a tombstone).

The rules (docs/architecture.md, "Updates between exports", says why):

- An update names a model, an id, a ``sequence`` and either a prediction (a JSON object whose
  keys are columns of the current snapshot) or ``delete``. It is applied to the *current*
  snapshot's row and appended to the model's update log in one atomic step per backend.
- Per id, an update whose sequence is not greater than the last one applied to that id
  changes nothing (redelivery, or an older update arriving after a newer one), even after a
  later publish. An update without a sequence gets the writer's clock in microseconds.
- An export records the log position at its start and, before it publishes, replays every
  entry after it into the new snapshot; a rollback replays into the snapshot it returns to
  every entry made since that snapshot stopped being current.

This module holds what every backend and both ways in (``predserve push``, ``predserve
stream``) share: the parsed ``Update``, its validation, the rendered body and the log entry.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable

import orjson

from predserve.errors import StoreError
from predserve.store.base import MAX_ID_BYTES

# The largest prediction object an update may carry, as compact JSON. Updates are single
# rows kept in the log for days and carried by Pub/Sub messages; the export's own limit per
# body (MAX_VALUE_BYTES, 1 MiB) is for whole warehouse rows.
MAX_UPDATE_BYTES = 64 * 1024
# Sequences are integers in [0, 2**53): exact in every JSON parser, and (sequence + 1) * 1000
# still fits a Bigtable cell timestamp (signed 64-bit microseconds, millisecond granularity).
MAX_SEQUENCE = (1 << 53) - 1
# GC drops a log entry as soon as no kept snapshot needs it, and any entry older than
# settings.UPDATE_RETENTION (7 days, Pub/Sub's default retention) even if one does; that
# snapshot is then collected.


class UpdateRejected(StoreError):
    """One update of a batch is invalid; ``index`` is its place in the batch (0-based)."""

    def __init__(self, index: int, message: str) -> None:
        self.index = index
        super().__init__(message)


@dataclass(frozen=True)
class Update:
    """One id's new prediction (``prediction``) or its removal (``prediction is None``)."""

    id: str
    sequence: int
    prediction: dict[str, Any] | None

    @property
    def delete(self) -> bool:
        return self.prediction is None

    @cached_property
    def encoded(self) -> bytes | None:
        """The prediction as compact JSON (None for a delete): what the store writes, and what the size limit counts.

        Computed once: parsing checks the size and the store writes the same bytes."""
        return None if self.prediction is None else orjson.dumps(self.prediction)


class _Clock:
    """Microseconds since the epoch, strictly increasing within a process (the default sequence)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns() // 1000)
            return self._last


clock = _Clock()


def parse_update(data: bytes | str | dict[str, Any], default_sequence: int | None = None) -> Update:
    """An ``Update`` from one JSON line or message; raises StoreError saying what is wrong.

    Accepted: ``{"id": "42", "prediction": {...}}`` or ``{"id": "42", "delete": true}``, each
    with an optional ``"sequence"`` (an integer in [0, 2**53)). Without one, the update gets
    ``default_sequence`` or the writer's clock in microseconds.
    """
    if isinstance(data, dict):
        obj: Any = data
    else:
        if len(data) > MAX_UPDATE_BYTES + 1024:
            raise StoreError(f"update of {len(data):,} bytes is over the limit of {MAX_UPDATE_BYTES:,} bytes per prediction")
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise StoreError(f"not JSON ({exc}); each update is one JSON object on one line") from None
    if not isinstance(obj, dict):
        raise StoreError('an update must be a JSON object: {"id": "42", "prediction": {...}} or {"id": "42", "delete": true}')
    unknown = set(obj) - {"id", "prediction", "delete", "sequence"}
    if unknown:
        raise StoreError(f"unknown field(s) {', '.join(sorted(unknown))}: an update has id, prediction or delete, and sequence")
    entity_id = obj.get("id")
    if isinstance(entity_id, int) and not isinstance(entity_id, bool):
        entity_id = str(entity_id)
    if not isinstance(entity_id, str) or not entity_id:
        raise StoreError('no id: every update needs "id" (a non-empty string, or an integer)')
    if len(entity_id.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise StoreError(f"id is longer than the maximum of {MAX_ID_BYTES} bytes")
    delete = obj.get("delete", False)
    if delete not in (True, False):
        raise StoreError('"delete" must be true or false')
    prediction = obj.get("prediction")
    if delete:
        if prediction is not None:
            raise StoreError('an update has either "prediction" or "delete": true, not both')
    elif not isinstance(prediction, dict):
        raise StoreError('no prediction: give "prediction": {...} (an object of the snapshot\'s columns) or "delete": true')
    sequence = obj.get("sequence")
    if sequence is None:
        sequence = default_sequence if default_sequence is not None else clock.next()
    if isinstance(sequence, bool) or not isinstance(sequence, int) or not 0 <= sequence <= MAX_SEQUENCE:
        raise StoreError(f'"sequence" must be an integer from 0 to {MAX_SEQUENCE}, not {sequence!r}')
    update = Update(entity_id, sequence, None if delete else prediction)
    check_size(update)
    return update


def check_size(update: Update) -> None:
    """Refuse a prediction over MAX_UPDATE_BYTES as compact JSON (checked again by the store: an
    ``Update`` can be made without parsing)."""
    size = len(update.encoded or b"")
    if size > MAX_UPDATE_BYTES:
        raise StoreError(f"prediction of {size:,} bytes is over the limit of {MAX_UPDATE_BYTES:,} bytes")


def check_columns(update: Update, columns: Iterable[str] | None) -> None:
    """Refuse a prediction with a column the snapshot does not have (``columns`` None: no schema known)."""
    if update.prediction is None or columns is None:
        return
    extra = set(update.prediction) - set(columns)
    if extra:
        raise StoreError(
            f"column(s) {', '.join(sorted(extra))} are not in the current snapshot's columns "
            f"({', '.join(columns) or 'none'})"
        )


def snapshot_columns(metadata: dict[str, Any]) -> list[str] | None:
    """The prediction columns a snapshot's export recorded, or None when it recorded none."""
    schema = metadata.get("schema")
    if not schema:
        return None
    return [name for name, _ in schema]


def render_body(model: str, snapshot: int, entity_id: str, prediction: bytes) -> bytes:
    """The served body, shaped exactly as the export renders it (pipeline/render.py)."""
    return b'{"model":%s,"id":%s,"snapshot":%d,"prediction":%s}' % (
        orjson.dumps(model), orjson.dumps(entity_id), snapshot, prediction)


# ---- the log ------------------------------------------------------------------------------
# An entry is one JSON header line, then (for an upsert) the prediction's JSON bytes as stored.

def encode_entry(update: Update, prediction: bytes | None, applied_at: float) -> bytes:
    """The log entry of an applied update (``prediction``: its JSON, None for a delete)."""
    header: dict[str, Any] = {"id": update.id, "sequence": update.sequence, "time": applied_at}
    if prediction is None:
        header["delete"] = True
        return orjson.dumps(header)
    return orjson.dumps(header) + b"\n" + prediction


@dataclass(frozen=True)
class LogEntry:
    position: int
    id: str
    sequence: int
    time: float
    prediction: bytes | None  # the prediction's JSON, None for a delete

    def body(self, model: str, snapshot: int) -> bytes | None:
        return None if self.prediction is None else render_body(model, snapshot, self.id, self.prediction)


def decode_entry(position: int, raw: bytes) -> LogEntry:
    header, _, prediction = raw.partition(b"\n")
    head = orjson.loads(header)
    return LogEntry(position, head["id"], head["sequence"], head["time"], None if head.get("delete") else prediction)


@dataclass
class UpdateResult:
    """What one batch did: updates applied, updates that changed nothing (not newer than the
    id's last sequence), and the log position after the batch."""

    applied: int = 0
    ignored: int = 0
    position: int = 0
    snapshot: int | None = None
