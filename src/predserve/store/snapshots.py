"""Snapshot lifecycle shared by every backend: create, finish, publish, rollback, GC.

A backend supplies a handful of primitives (an atomic read-modify-write of one model's
state, raw reads and writes of data, and deleting one snapshot's data); everything about
which transitions are legal lives here, once.
"""

from __future__ import annotations

import os
import re
import socket
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterator, Sequence

from predserve.errors import StoreError
from predserve.store.base import (
    DEFAULT_GRACE,
    DEFAULT_KEEP,
    EVENT_PUBLISHED,
    EVENT_REFUSED,
    EVENT_ROLLED_BACK,
    FINISHED,
    MAX_EVENT_DETAIL,
    MAX_VALUE_BYTES,
    PUBLISHED,
    WRITING,
    ModelState,
    SnapshotInfo,
    SnapshotWriter,
    check_model_name,
    now,
)

StateUpdate = Callable[[ModelState | None], ModelState]
ATTACHMENT_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


def _check_attachment_name(name: str) -> None:
    if not ATTACHMENT_NAME.match(name):
        raise StoreError(f"invalid attachment name {name!r}: use lower-case letters, digits, '_', '.', '-' (at most 64)")


def _owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _owner_is_dead(info: SnapshotInfo) -> bool:
    """True when the process that created an unfinished snapshot is gone (same host only)."""
    return owner_is_dead(info.metadata.get("writer") or {})


def owner_is_dead(owner: dict[str, Any]) -> bool:
    """True when ``{"host", "pid"}`` names a process on this host that no longer exists."""
    if owner.get("host") != socket.gethostname() or not owner.get("pid"):
        return False
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _point_at(state: ModelState, target: int) -> None:
    """Make ``target`` current, recording when the snapshot it replaces stopped being current.

    That time is state data, so a GC in any process (on any host) knows which snapshots
    servers may still be reading through their pointer caches.
    """
    previous = state.current_info()
    if previous is not None and previous.id != target:
        previous.retired_at = now()
    state.snapshots[target].retired_at = None
    state.current = target


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_EVENT_DETAIL else text[:MAX_EVENT_DETAIL - 1] + "…"


def _within_grace(info: SnapshotInfo, grace: float) -> bool:
    """True while a published snapshot may still be read through a server's cached pointer.

    A snapshot retired before this time was recorded gets the time of this GC, which the
    caller saves with the state.
    """
    if info.retired_at is None:
        info.retired_at = now()
    return now() - info.retired_at < grace


class SnapshotStore(ABC):
    """Base class: the snapshot state machine on top of backend primitives."""

    url: str
    readonly: bool

    # ---- primitives each backend implements -------------------------------------------
    @abstractmethod
    def _update_state(self, model: str, update: StateUpdate) -> ModelState:
        """Atomically apply ``update`` to the model's stored state and return the new state."""

    @abstractmethod
    def _delete_data(self, model: str, snapshot: int) -> None:
        """Delete every stored row of one snapshot (it is no longer named by the state)."""

    @abstractmethod
    def state(self, model: str) -> ModelState | None:
        """The model's pointer and snapshots, or None when the model is unknown."""

    @abstractmethod
    def models(self) -> list[str]:
        """Names of every model with a state in the store."""

    @abstractmethod
    def writer(self, model: str, snapshot: int) -> SnapshotWriter:
        """A writer for one unpublished snapshot (each worker process opens its own)."""

    @abstractmethod
    def get(self, model: str, snapshot: int, entity_id: bytes) -> bytes | None:
        """The stored value of one id in one snapshot, or None."""

    @abstractmethod
    def get_many(self, model: str, snapshot: int, ids: Sequence[bytes]) -> list[bytes | None]:
        """Stored values in the order of ``ids`` (None where absent)."""

    @abstractmethod
    def items(self, model: str, snapshot: int) -> Iterator[tuple[bytes, bytes]]:
        """Every (id, value) of one snapshot."""

    @abstractmethod
    def _put_attachment(self, model: str, snapshot: int, name: str, data: bytes) -> None:
        """Store one named attachment of a snapshot (replacing any of that name)."""

    @abstractmethod
    def _get_attachment(self, model: str, snapshot: int, name: str) -> bytes | None:
        """One named attachment of a snapshot, or None."""

    @abstractmethod
    def _delete_attachments(self, model: str, snapshot: int) -> None:
        """Delete every attachment of one snapshot."""

    def count(self, model: str, snapshot: int) -> int:
        return sum(1 for _ in self.items(model, snapshot))

    def rows_accepted(self, model: str, snapshot: int) -> int:
        """Rows the store has accepted into a snapshot, counted by the store as writers commit.

        The export's gates use this count rather than Beam metrics, which not every runner
        reports (DaskRunner has none). Backends override it with a counter the writers keep;
        this fallback counts the rows.
        """
        return self.count(model, snapshot)

    # ---- shared logic ------------------------------------------------------------------
    def _require_writable(self, action: str) -> None:
        if self.readonly:
            raise StoreError(
                f"cannot {action}: the store {self.url} is open read-only (the serving role). "
                "Writing is the export job's role."
            )

    def create_snapshot(self, model: str, metadata: dict[str, Any] | None = None) -> SnapshotInfo:
        """Allocate a new, unpublished snapshot id for ``model``."""
        self._require_writable("create a snapshot")
        check_model_name(model)

        def update(state: ModelState | None) -> ModelState:
            state = state or ModelState(model=model)
            info = SnapshotInfo(
                model=model,
                id=state.next_id,
                state=WRITING,
                created_at=now(),
                metadata={**(metadata or {}), "writer": _owner()},
            )
            state.snapshots[info.id] = info
            state.next_id += 1
            return state

        # Results are read from the state the update returned: a backend may retry the
        # update function (Bigtable's compare-and-set), so it must not record anything itself.
        state = self._update_state(model, update)
        return state.snapshots[state.next_id - 1]

    def _snapshot(self, state: ModelState | None, model: str, snapshot: int) -> SnapshotInfo:
        if state is None:
            raise StoreError(f"model {model!r} has no snapshots in {self.url}; run `predserve export` first")
        info = state.snapshots.get(snapshot)
        if info is None:
            known = ", ".join(str(s) for s in sorted(state.snapshots)) or "none"
            raise StoreError(
                f"snapshot {snapshot} of model {model!r} does not exist (known snapshots: {known}); "
                f"see `predserve snapshots --store {self.url} {model}`"
            )
        return info

    def finish_snapshot(self, model: str, snapshot: int, rows: int) -> SnapshotInfo:
        """Mark a snapshot completely written; only finished snapshots can be published."""
        self._require_writable("finish a snapshot")

        def update(state: ModelState | None) -> ModelState:
            info = self._snapshot(state, model, snapshot)
            if info.state != WRITING:
                raise StoreError(f"snapshot {snapshot} of model {model!r} is already {info.state}")
            info.state, info.rows = FINISHED, rows
            return state  # type: ignore[return-value]

        return self._update_state(model, update).snapshots[snapshot]

    def publish(self, model: str, snapshot: int, metadata: dict[str, Any] | None = None,
                overridden: Sequence[str] = ()) -> SnapshotInfo:
        """Make a finished snapshot current, in one atomic step, and note it on the model's timeline.

        ``overridden``: the gates that failed but were overridden (``--allow-drift``...), for the timeline.
        """
        self._require_writable("publish")

        def update(state: ModelState | None) -> ModelState:
            info = self._snapshot(state, model, snapshot)
            if info.state != FINISHED:
                hint = " (finish writing it first)" if info.state == WRITING else " (use rollback to return to it)"
                raise StoreError(f"cannot publish snapshot {snapshot} of model {model!r}: it is {info.state}{hint}")
            assert state is not None
            info.state, info.published_at = PUBLISHED, now()
            info.metadata.update(metadata or {})
            state.record(EVENT_PUBLISHED, snapshot, rows=info.rows, **({"overridden": list(overridden)} if overridden else {}))
            _point_at(state, snapshot)
            state.history.append(snapshot)
            return state

        return self._update_state(model, update).snapshots[snapshot]

    def rollback(self, model: str, snapshot: int | None = None) -> SnapshotInfo:
        """Point ``model`` back at ``snapshot``, or at the previously published one."""
        self._require_writable("roll back")

        def update(state: ModelState | None) -> ModelState:
            if state is None or state.current is None:
                raise StoreError(f"model {model!r} has no published snapshot to roll back from")
            if snapshot is None:
                if len(state.history) < 2:
                    raise StoreError(
                        f"model {model!r} has no earlier snapshot to roll back to "
                        f"(only snapshot {state.current} was published and kept)"
                    )
                state.history.pop()
                target = state.history[-1]
            else:
                info = self._snapshot(state, model, snapshot)
                if info.state != PUBLISHED:
                    raise StoreError(
                        f"cannot roll back model {model!r} to snapshot {snapshot}: it was never "
                        f"published (it is {info.state})"
                    )
                if snapshot in state.history:
                    state.history.remove(snapshot)
                state.history.append(snapshot)
                target = snapshot
            state.record(EVENT_ROLLED_BACK, target, rows=state.snapshots[target].rows)
            _point_at(state, target)
            return state

        state = self._update_state(model, update)
        return state.snapshots[state.current]  # type: ignore[index]

    def discard(self, model: str, snapshot: int, refused: Sequence[tuple[str, str]] = ()) -> None:
        """Delete an unpublished snapshot now (a failed or refused export cleans up after itself).

        ``refused``: the (gate, detail) pairs that refused it, noted on the model's timeline in
        the same state update (each detail cut to MAX_EVENT_DETAIL characters).
        """
        self._require_writable("discard a snapshot")

        def update(state: ModelState | None) -> ModelState:
            info = self._snapshot(state, model, snapshot)
            if info.state == PUBLISHED:
                raise StoreError(f"snapshot {snapshot} of model {model!r} was published; only gc removes published snapshots")
            assert state is not None
            if refused:
                gates = [{"gate": gate, "detail": _shorten(detail)} for gate, detail in refused]
                state.record(EVENT_REFUSED, snapshot, rows=info.rows, gates=gates)
            del state.snapshots[snapshot]
            state.pending_delete = sorted(set(state.pending_delete) | {snapshot})
            return state

        self._purge(model, self._update_state(model, update).pending_delete)

    def _purge(self, model: str, snapshots: list[int]) -> None:
        """Delete the data of snapshots the state no longer names, then forget them.

        The state already hides them from every reader; a purge that dies half-way leaves
        them in ``pending_delete`` and the next GC finishes the job.
        """
        for sid in snapshots:
            self._delete_data(model, sid)
            self._delete_attachments(model, sid)
        purged = set(snapshots)

        def forget(state: ModelState | None) -> ModelState:
            assert state is not None
            state.pending_delete = [s for s in state.pending_delete if s not in purged]
            return state

        self._update_state(model, forget)

    def gc(
        self, model: str | None = None, keep: int = DEFAULT_KEEP, stale_after: float = 24 * 3600.0,
        grace: float = DEFAULT_GRACE,
    ) -> list[tuple[str, int]]:
        """Delete all but the last ``keep`` published snapshots, plus abandoned unfinished ones.

        A snapshot that was current less than ``grace`` seconds ago is kept whatever ``keep``
        says: servers may still read it through their cached pointers. An unfinished snapshot
        is abandoned when its writer process on this host is dead or it is older than
        ``stale_after`` seconds. Returns the (model, snapshot) pairs deleted.
        """
        self._require_writable("collect garbage")
        if keep < 1:
            raise StoreError("gc must keep at least 1 published snapshot (the current one)")
        if grace < 0:
            raise StoreError(f"the grace period must be 0 seconds or more, not {grace}")
        deleted: list[tuple[str, int]] = []
        for name in [model] if model else self.models():
            doomed: list[int] = []

            def update(state: ModelState | None) -> ModelState:
                doomed.clear()
                if state is None:
                    raise StoreError(f"model {name!r} does not exist in {self.url}")
                kept = set(state.history[-keep:])
                if state.current is not None:
                    kept.add(state.current)
                for sid, info in list(state.snapshots.items()):
                    unfinished = info.state in (WRITING, FINISHED)
                    abandoned = unfinished and (_owner_is_dead(info) or now() - info.created_at > stale_after)
                    if (not unfinished and sid not in kept and not _within_grace(info, grace)) or abandoned:
                        doomed.append(sid)
                        del state.snapshots[sid]
                state.history = [s for s in state.history if s in state.snapshots]
                state.pending_delete = sorted(set(state.pending_delete) | set(doomed))
                return state

            self._purge(name, self._update_state(name, update).pending_delete)
            deleted.extend((name, sid) for sid in doomed)
        return deleted

    # ---- attachments ---------------------------------------------------------------------
    def write_attachment(self, model: str, snapshot: int, name: str, data: bytes) -> None:
        """Keep ``data`` beside a snapshot under ``name``; it is deleted with the snapshot.

        For what belongs to a snapshot but is too large for its metadata, which every API
        server reads each time it refreshes its pointer (the export keeps its drift sample's
        ids here). Attachments are not rows: reads, counts and the API never see them.
        """
        self._require_writable("write an attachment")
        _check_attachment_name(name)
        if len(data) > MAX_VALUE_BYTES:
            raise StoreError(f"attachment {name!r} is {len(data)} bytes, over the maximum of {MAX_VALUE_BYTES} bytes")
        self._snapshot(self.state(model), model, snapshot)
        self._put_attachment(model, snapshot, name, data)

    def read_attachment(self, model: str, snapshot: int, name: str) -> bytes | None:
        """A snapshot's attachment ``name``, or None when it has none of that name."""
        _check_attachment_name(name)
        return self._get_attachment(model, snapshot, name)

    # ---- read side helpers ---------------------------------------------------------------
    def current(self, model: str) -> SnapshotInfo | None:
        state = self.state(model)
        return state.current_info() if state else None

    def close(self) -> None:
        pass

    def __enter__(self) -> "SnapshotStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Async read API for the serving path. Embedded backends answer synchronously (a read is
    # microseconds); network backends override these with real async calls and deadlines.
    async def aget(self, model: str, snapshot: int, entity_id: bytes) -> bytes | None:
        return self.get(model, snapshot, entity_id)

    async def aget_many(self, model: str, snapshot: int, ids: Sequence[bytes]) -> list[bytes | None]:
        return self.get_many(model, snapshot, ids)

    async def astate(self, model: str) -> ModelState | None:
        return self.state(model)

    async def amodels(self) -> list[str]:
        return self.models()
