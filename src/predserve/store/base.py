"""The snapshot store contract shared by every backend.

Per model the store keeps immutable *snapshots* of (id -> value bytes) and one *current*
pointer. A writer creates a snapshot, writes batches into it, then publishes it: the pointer
moves in one atomic step, so a reader sees the old snapshot or the new one, never a mix.
Readers always name the snapshot they read (see ``current``), which is what makes that true.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from abc import ABC, abstractmethod
from typing import Any, Iterable

from predserve.errors import StoreError, StoreMissing

MAX_ID_BYTES = 512
MAX_VALUE_BYTES = 1 << 20  # 1 MiB per stored prediction body
MODEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")

# Snapshot states. "writing" snapshots are unfinished; GC collects them once they are stale.
WRITING, FINISHED, PUBLISHED = "writing", "finished", "published"

# The model's timeline: what happened to its pointer, newest last (see ModelState.record).
EVENT_PUBLISHED, EVENT_ROLLED_BACK, EVENT_REFUSED = "published", "rolled_back", "refused"
# Events kept per model. The state is read by every API server each second (its pointer
# refresh), so the timeline is bounded, and so is each refusal's text (MAX_EVENT_DETAIL).
MAX_EVENTS = 100
MAX_EVENT_DETAIL = 300


@dataclass
class SnapshotInfo:
    """What the store knows about one snapshot of a model."""

    model: str
    id: int
    state: str
    created_at: float
    rows: int = 0
    published_at: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # When it last stopped being current (a later publish or a rollback); None while current.
    retired_at: float | None = None
    # The update-log position this snapshot holds every update up to (see store/updates.py):
    # for an unfinished one, the log position when its export started (replayed from there
    # before it publishes); for a published one, the position when it last became or stopped
    # being current. The current snapshot also holds every update after it.
    log_from: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SnapshotInfo":
        return cls(**data)


@dataclass
class ModelState:
    """The pointer and history of one model: ``current`` is the published snapshot id."""

    model: str
    current: int | None = None
    next_id: int = 1
    snapshots: dict[int, SnapshotInfo] = field(default_factory=dict)
    # Published snapshot ids, oldest first; rollback walks back along this list.
    history: list[int] = field(default_factory=list)
    # Snapshots removed from the state whose data is still being deleted (crash-safe GC).
    pending_delete: list[int] = field(default_factory=list)
    # The last MAX_EVENTS publishes, rollbacks and refusals, oldest first (see ``record``).
    events: list[dict[str, Any]] = field(default_factory=list)
    # Update-log entries at or below this position have been deleted by GC (see store/updates.py).
    log_trimmed_to: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "current": self.current,
            "next_id": self.next_id,
            "snapshots": {str(k): v.to_dict() for k, v in self.snapshots.items()},
            "history": self.history,
            "pending_delete": self.pending_delete,
            "events": self.events,
            "log_trimmed_to": self.log_trimmed_to,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelState":
        return cls(
            model=data["model"],
            current=data["current"],
            next_id=data["next_id"],
            snapshots={int(k): SnapshotInfo.from_dict(v) for k, v in data["snapshots"].items()},
            history=list(data["history"]),
            pending_delete=list(data.get("pending_delete", [])),
            events=list(data.get("events", [])),  # states written before the timeline have none
            log_trimmed_to=int(data.get("log_trimmed_to", 0)),  # nor before the update log
        )

    def current_info(self) -> SnapshotInfo | None:
        return self.snapshots.get(self.current) if self.current is not None else None

    def record(self, event: str, snapshot: int, **details: Any) -> None:
        """Add an event to the model's timeline, dropping the oldest past MAX_EVENTS.

        Every event has ``time``, ``event`` (published, rolled_back, refused), ``snapshot``
        and ``previous`` (the snapshot current before it; for a refusal, the one that kept
        serving); ``details`` add the rest (rows, the refusing gates...).
        """
        self.events.append({"time": now(), "event": event, "snapshot": snapshot, "previous": self.current, **details})
        del self.events[:-MAX_EVENTS]


def no_store(where: object) -> StoreMissing:
    """The error of every command but ``predserve export`` given a store that does not exist."""
    return StoreMissing(f"no store at {where}: nothing has been exported there yet "
                        "(run `predserve export ... --store URL` first, or check the --store path)")


def check_model_name(model: str) -> None:
    if not isinstance(model, str) or not MODEL_NAME.match(model):
        raise StoreError(
            f"invalid model name {model!r}: use letters, digits, '_', '.', '-' "
            "(starting with a letter or '_'), at most 128 characters"
        )


def encode_id(entity_id: str | bytes) -> bytes:
    """Validate an entity id and return its UTF-8 bytes."""
    if isinstance(entity_id, bytes):
        try:
            entity_id.decode("utf-8")
        except UnicodeDecodeError:
            raise StoreError(f"id {entity_id!r} is not valid UTF-8; ids must be UTF-8 text") from None
        raw = entity_id
    else:
        try:
            raw = str(entity_id).encode("utf-8")
        except UnicodeEncodeError:
            raise StoreError(f"id {entity_id!r} is not valid UTF-8; ids must be UTF-8 text") from None
    if not raw:
        raise StoreError("empty id: every row needs a non-empty key")
    if len(raw) > MAX_ID_BYTES:
        raise StoreError(f"id of {len(raw)} bytes is longer than the maximum of {MAX_ID_BYTES} bytes")
    return raw


def check_value(value: bytes, entity_id: bytes) -> None:
    if len(value) > MAX_VALUE_BYTES:
        raise StoreError(
            f"value for id {entity_id[:64]!r} is {len(value)} bytes, over the maximum of "
            f"{MAX_VALUE_BYTES} bytes; store fewer or smaller prediction columns"
        )


def check_columns(ids: list[bytes], values: list[bytes]) -> None:
    """Validate whole columns at C speed; on a failure, find the culprit row for the message."""
    if len(ids) != len(values):
        raise StoreError(f"{len(ids)} ids but {len(values)} values")
    if not ids:
        return
    try:
        ok = (
            min(map(len, ids)) > 0
            and max(map(len, ids)) <= MAX_ID_BYTES
            and max(map(len, values)) <= MAX_VALUE_BYTES
            and bool(b"\n".join(ids).decode("utf-8") or True)  # the separator keeps split characters invalid
        )
    except UnicodeDecodeError:
        ok = False
    if not ok:
        for entity_id, value in zip(ids, values):
            check_value(value, encode_id(entity_id))


def now() -> float:
    return time.time()


class SnapshotWriter(ABC):
    """Writes one unpublished snapshot. Safe to create in many worker processes at once."""

    def write(self, items: Iterable[tuple[bytes, bytes]]) -> int:
        """Write (id bytes, value bytes) pairs; returns how many ids were already present."""
        pairs = list(items)
        return self.write_columns([i for i, _ in pairs], [v for _, v in pairs])

    @abstractmethod
    def write_columns(self, ids: list[bytes], values: list[bytes]) -> int:
        """The same as ``write`` for two parallel lists, validated column-wise (the export's path)."""

    @abstractmethod
    def close(self) -> None:
        """Flush what is buffered; errors surface here."""
