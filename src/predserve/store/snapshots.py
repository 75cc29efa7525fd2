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

from predserve import settings
from predserve.errors import StoreError
from predserve.store.updates import LogEntry, Update, UpdateRejected, UpdateResult, check_size
from predserve.store.base import (
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
# A state update that also learns the update-log position the switched-to snapshot holds.
SwitchUpdate = Callable[[ModelState | None, int], ModelState]
LOG_SCAN_CHUNK = 10_000
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


def _point_at(state: ModelState, target: int, log_position: int) -> None:
    """Make ``target`` current, recording when the snapshot it replaces stopped being current.

    That time is state data, so a GC in any process (on any host) knows which snapshots
    servers may still be reading through their pointer caches. ``log_position``: the update
    log position both now hold every update up to (the one retired gets no later ones).
    """
    previous = state.current_info()
    if previous is not None and previous.id != target:
        previous.retired_at = now()
        previous.log_from = log_position
    state.snapshots[target].retired_at = None
    state.snapshots[target].log_from = log_position
    state.current = target


def _check_log_kept(state: ModelState, info: SnapshotInfo, action: str) -> None:
    """Refuse to switch to a snapshot whose missing updates GC already trimmed from the log."""
    if state.log_trimmed_to > (info.log_from or 0):
        raise StoreError(
            f"cannot {action} snapshot {info.id} of model {info.model!r}: it lacks updates made after log "
            f"position {info.log_from or 0}, and the update log only keeps those after {state.log_trimmed_to} "
            "(older ones passed the update retention). Re-run the export."
        )


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


def _nothing_earlier(state: ModelState, url: str) -> str:
    """Why a plain rollback has nowhere to go, naming the published snapshots it could be told to."""
    others = sorted(sid for sid, info in state.snapshots.items() if info.state == PUBLISHED and sid != state.current)
    text = f"model {state.model!r} has no earlier snapshot to roll back to: "
    if not others:
        return text + f"snapshot {state.current} is the only published snapshot kept"
    return text + (f"no snapshot that was current before snapshot {state.current} is kept; to switch to another "
                   f"published one ({', '.join(map(str, others))}), name it: "
                   f"predserve rollback --store {url} {state.model} {others[-1]}")


def _kept_by_keep(state: ModelState, keep: int) -> set[int]:
    """The snapshots GC keeps by ``keep``: the last ``keep`` published ones and the current one."""
    kept = set(state.history[-keep:])
    if state.current is not None:
        kept.add(state.current)
    return kept


def kept_by_grace(state: ModelState, keep: int, grace: float) -> list[tuple[int, float]]:
    """The published snapshots that GC (with these settings) keeps only for the grace period,
    each with the time it may go: (snapshot id, until)."""
    kept = _kept_by_keep(state, keep)
    return sorted((sid, info.retired_at + grace) for sid, info in state.snapshots.items()
                  if info.state == PUBLISHED and sid not in kept and info.retired_at is not None
                  and now() - info.retired_at < grace)


def _trim_log_floor(state: ModelState, head: int, expired: int, doomed: list[int]) -> None:
    """GC's log rule: raise ``state.log_trimmed_to`` to what no kept snapshot needs, or to the
    last expired entry; a retired snapshot that needed an expired entry joins ``doomed``.

    A retired snapshot needs the entries after its ``log_from`` (a rollback replays them), an
    unfinished one those after its export started; the current one needs none.
    """
    for sid, info in list(state.snapshots.items()):
        if info.state == PUBLISHED and sid != state.current and (info.log_from or 0) < expired:
            doomed.append(sid)
            del state.snapshots[sid]
    needs = [info.log_from or 0 for sid, info in state.snapshots.items() if sid != state.current]
    state.log_trimmed_to = max(state.log_trimmed_to, expired, min(needs) if needs else head)


class SnapshotStore(ABC):
    """Base class: the snapshot state machine on top of backend primitives."""

    url: str
    readonly: bool
    read_stats: Any = None  # a network store's retry counts (bigtable_reads.ReadStats); None: it never retries
    # True when this object made the store (it did not exist when opened): see close_or_remove_new.
    created: bool = False

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

    @abstractmethod
    def _apply_updates(self, model: str, updates: Sequence[Update]) -> UpdateResult:
        """Apply updates to the current snapshot and append them to the log, atomically.

        Per id, an update whose sequence is not above the id's last applied sequence changes
        nothing. A rejected update (UpdateRejected) leaves the store as it was.
        """

    @abstractmethod
    def update_position(self, model: str) -> int:
        """The position of the model's last logged update (0 when there has been none)."""

    @abstractmethod
    def log_entries(self, model: str, after: int, limit: int | None = None) -> list[LogEntry]:
        """Logged updates after position ``after``, oldest first (at most ``limit``)."""

    @abstractmethod
    def _switch(self, model: str, target: int, log_from: int, update: SwitchUpdate) -> ModelState:
        """Replay the log after ``log_from`` into ``target`` and apply ``update`` to the state,
        so that no update lands between the replay and the switch (LMDB: one write transaction;
        Bigtable: see its module). ``update`` gets the position ``target`` then holds."""

    @abstractmethod
    def _trim_log(self, model: str, upto: int) -> None:
        """Delete the log entries at or below ``upto``."""

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

    def create_snapshot(self, model: str, metadata: dict[str, Any] | None = None, log_from: int | None = None) -> SnapshotInfo:
        """Allocate a new, unpublished snapshot id for ``model``.

        ``log_from``: the update-log position when the data going into it was read (the
        export takes it before running its query); updates after it are replayed into the
        snapshot when it publishes. By default, the position now.
        """
        self._require_writable("create a snapshot")
        check_model_name(model)
        if log_from is None:
            log_from = self.update_position(model)

        def update(state: ModelState | None) -> ModelState:
            state = state or ModelState(model=model)
            info = SnapshotInfo(
                model=model,
                id=state.next_id,
                state=WRITING,
                created_at=now(),
                metadata={**(metadata or {}), "writer": _owner()},
                log_from=log_from,
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

        def check(state: ModelState | None) -> SnapshotInfo:
            info = self._snapshot(state, model, snapshot)
            if info.state != FINISHED:
                hint = " (finish writing it first)" if info.state == WRITING else " (use rollback to return to it)"
                raise StoreError(f"cannot publish snapshot {snapshot} of model {model!r}: it is {info.state}{hint}")
            _check_log_kept(state, info, "publish")  # type: ignore[arg-type]
            return info

        log_from = check(self.state(model)).log_from or 0

        def update(state: ModelState | None, position: int) -> ModelState:
            info = check(state)
            assert state is not None
            info.state, info.published_at = PUBLISHED, now()
            info.metadata.update(metadata or {})
            state.record(EVENT_PUBLISHED, snapshot, rows=info.rows, replayed=position - log_from,
                         **({"overridden": list(overridden)} if overridden else {}))
            _point_at(state, snapshot, position)
            state.history.append(snapshot)
            return state

        return self._switch(model, snapshot, log_from, update).snapshots[snapshot]

    def rollback(self, model: str, snapshot: int | None = None) -> SnapshotInfo:
        """Point ``model`` back at ``snapshot``, or at the previously published one.

        The snapshot returned to also gets every update made since it stopped being current
        (replayed from the log in the same atomic step), so a rollback undoes an export, never
        an update.
        """
        self._require_writable("roll back")

        def choose(state: ModelState | None) -> int:
            if state is None or state.current is None:
                raise StoreError(f"model {model!r} has no published snapshot to roll back from")
            if snapshot is None:
                if len(state.history) < 2:
                    raise StoreError(_nothing_earlier(state, self.url))
                return state.history[-2]
            info = self._snapshot(state, model, snapshot)
            if info.state != PUBLISHED:
                raise StoreError(
                    f"cannot roll back model {model!r} to snapshot {snapshot}: it was never "
                    f"published (it is {info.state})"
                )
            return snapshot

        before = self.state(model)
        target = choose(before)
        info = before.snapshots[target]  # type: ignore[union-attr]
        _check_log_kept(before, info, "roll back to")  # type: ignore[arg-type]
        log_from = info.log_from or 0
        current_before = before.current  # type: ignore[union-attr]

        def update(state: ModelState | None, position: int) -> ModelState:
            if choose(state) != target or state.current != current_before:  # type: ignore[union-attr]
                raise StoreError(f"model {model!r} changed while rolling back (another publish or rollback); run it again")
            assert state is not None
            _check_log_kept(state, state.snapshots[target], "roll back to")
            if snapshot is None:
                state.history.pop()
            else:
                if target in state.history:
                    state.history.remove(target)
                state.history.append(target)
            state.record(EVENT_ROLLED_BACK, target, rows=state.snapshots[target].rows, replayed=position - log_from)
            _point_at(state, target, position)
            return state

        state = self._switch(model, target, log_from, update)
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
        self, model: str | None = None, keep: int = settings.KEEP, stale_after: float = settings.STALE_AFTER,
        grace: float = settings.GRACE, update_retention: float = settings.UPDATE_RETENTION,
    ) -> list[tuple[str, int]]:
        """Delete all but the last ``keep`` published snapshots, plus abandoned unfinished ones,
        and the update-log entries no kept snapshot needs.

        A snapshot that was current less than ``grace`` seconds ago is kept whatever ``keep``
        says: servers may still read it through their cached pointers. An unfinished snapshot
        is abandoned when its writer process on this host is dead or it is older than
        ``stale_after`` seconds. A log entry older than ``update_retention`` seconds goes even
        if a kept snapshot needs it, and so does that snapshot (a rollback to it could no
        longer bring it up to date). Returns the (model, snapshot) pairs deleted.
        """
        self._require_writable("collect garbage")
        if keep < 1:
            raise StoreError("gc must keep at least 1 published snapshot (the current one)")
        if grace < 0:
            raise StoreError(f"the grace period must be 0 seconds or more, not {grace}")
        if update_retention < 0:
            raise StoreError(f"the update retention must be 0 seconds or more, not {update_retention}")
        deleted: list[tuple[str, int]] = []
        for name in [model] if model else self.models():
            doomed: list[int] = []
            # Read before the state update: an update logged after these reads is above both.
            head = self.update_position(name)
            expired = self._expired_log_position(name, now() - update_retention)

            def update(state: ModelState | None) -> ModelState:
                doomed.clear()
                if state is None:
                    raise StoreError(f"model {name!r} does not exist in {self.url}")
                kept = _kept_by_keep(state, keep)
                for sid, info in list(state.snapshots.items()):
                    unfinished = info.state in (WRITING, FINISHED)
                    abandoned = unfinished and (_owner_is_dead(info) or now() - info.created_at > stale_after)
                    if (not unfinished and sid not in kept and not _within_grace(info, grace)) or abandoned:
                        doomed.append(sid)
                        del state.snapshots[sid]
                _trim_log_floor(state, head, expired, doomed)
                state.history = [s for s in state.history if s in state.snapshots]
                state.pending_delete = sorted(set(state.pending_delete) | set(doomed))
                return state

            state = self._update_state(name, update)
            self._purge(name, state.pending_delete)
            if state.log_trimmed_to:
                self._trim_log(name, state.log_trimmed_to)
            deleted.extend((name, sid) for sid in doomed)
        return deleted

    def _expired_log_position(self, model: str, cutoff: float) -> int:
        """The position of the last log entry applied before ``cutoff`` (entries are in time order)."""
        state = self.state(model)
        position = last = state.log_trimmed_to if state else 0
        while True:
            entries = self.log_entries(model, position, limit=LOG_SCAN_CHUNK)
            for entry in entries:
                if entry.time >= cutoff:
                    return last
                last = entry.position
            if len(entries) < LOG_SCAN_CHUNK:
                return last
            position = entries[-1].position

    # ---- updates -------------------------------------------------------------------------
    def apply_updates(self, model: str, updates: Sequence[Update]) -> UpdateResult:
        """Apply a batch of updates to ``model``'s current snapshot, all or none of it.

        Each is an upsert or a delete of one id (see store/updates.py for the rules). Raises
        UpdateRejected, naming the update, when one is invalid; then nothing is applied.
        """
        self._require_writable("apply updates")
        check_model_name(model)
        for index, update in enumerate(updates):
            try:
                check_size(update)
            except StoreError as exc:
                raise UpdateRejected(index, str(exc)) from None
        if not updates:
            return UpdateResult(position=self.update_position(model))
        return self._apply_updates(model, updates)

    def updates_since_publish(self, model: str, state: ModelState | None = None) -> int:
        """How many updates the current snapshot got after it was published (or rolled back to)."""
        state = state if state is not None else self.state(model)
        info = state.current_info() if state else None
        if info is None:
            return 0
        return max(0, self.update_position(model) - (info.log_from or 0))

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

    def close_or_remove_new(self) -> None:
        """Close; and if this object created the store and it holds no snapshot of any model
        (a failed or refused first export), delete the store, so the failure leaves nothing
        new behind and a later command still says "no store at ...". A store another export
        has meanwhile written a snapshot into is kept."""
        try:
            remove = self.created and not any(
                state is not None and (state.snapshots or state.pending_delete) for state in map(self.state, self.models()))
        except StoreError:
            remove = False
        self.close()
        if remove:
            self._remove()

    def _remove(self) -> None:
        """Delete the whole (closed) store; only close_or_remove_new calls it."""

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
