"""Cloud Bigtable snapshot store (``bigtable://PROJECT/INSTANCE/TABLE``).

Row keys
    state row   ``#state#<model>``: family ``m``, columns ``state`` (JSON) and ``v`` (version)
    data rows   ``<model>#<snapshot, 8 hex>#<bucket, 2 hex>#<id>``: family ``p``, column ``v``
    tallies     ``#accepted#<model>#<snapshot, 8 hex>#<digest>``: family ``m``, column ``n``, the
                rows of one batch of ids (one ``write_columns`` call: an Arrow table of the
                export) once its writer flushed (8 bytes, big-endian); ``digest`` is a hash of
                the batch's ids, so a retried bundle, which writes the same batches again,
                rewrites the same tally rows instead of adding new ones
    attachments ``#attachment#<model>#<snapshot, 8 hex>#<name>``: family ``m``, column ``v``
    update log  ``#log#<model>#<position, 16 hex>``: family ``m``, column ``v`` (one entry);
                ``#loghead#<model>``: column ``n``, the last position handed out (an increment)
    sequences   ``#seq#<model>#<id>``: family ``m``, column ``s``, at cell timestamp
                (sequence + 1) * 1000, holding the log position of that update

Every snapshot is one contiguous key range (``model#snapshot#``), so deleting it is one
DropRowRange. Inside it a 2-hex-digit hash bucket spreads sequential ids (1, 2, 3, ...) over
256 sub-ranges, so a bulk write does not hammer one tablet. The state row changes with a
CheckAndMutateRow on its version: an atomic compare-and-set, so publishes are atomic and
concurrent writers cannot lose each other's updates. A writer that loses the race reads the
row again after a randomised, exponentially growing pause (``google.api_core.retry``: full
jitter, 5 ms doubling up to 1 s), for up to ``CAS_TIMEOUT`` seconds.

Updates use cell timestamps, not check-and-mutate: an update with sequence ``s`` writes its
body at timestamp ``(s + 1) * 1000`` (Bigtable's millisecond granularity), where the export
writes at 0, and a delete writes an empty cell (a tombstone) the same way. Every read takes
the newest cell, so whatever order updates of one id arrive in, from however many writers,
the one with the highest sequence is served: redelivery rewrites the same cell and an older
update writes a cell that is never read (the families keep one version, so GC drops it).
A check-and-mutate per row would do the same with a read round trip per update and a
retry loop under contention; the timestamp needs neither. The ``#seq#`` rows (also
newest-timestamp-wins) only refuse updates not newer than the last applied one, which
matters after a publish: the new snapshot's rows are export data at timestamp 0.

Bigtable has no transaction across rows, so an update and a publish are ordered by a
protocol instead of a lock. An updater (1) reads the pointer, (2) writes the bodies into
that snapshot, (3) logs the updates, (4) reads the pointer again and, if it moved, writes
the bodies into the new current snapshot too. A publish (or rollback) (a) replays the log
into the target, (b) switches the pointer (compare-and-set), (c) replays again every entry
(a) did not see. Either (c) sees an update's log entry or the updater's step (4) sees the
new pointer, so no update is lost; between (b) and the end of (c) (milliseconds) a racing
update may be served from the old snapshot only.

The API reads with the async data client under a deadline per read (default 90 ms), a slow
read hedged and transient failures retried within it from a budget (``bigtable_reads.py``): a
slow, resetting or absent Bigtable gives a 503 within the deadline, not a hung request, and a
dead one is sent at most about 1.2 attempts per read. Set ``BIGTABLE_EMULATOR_HOST`` to use the
emulator; otherwise Application Default Credentials are used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import zlib
from typing import Any, Iterable, Sequence

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud.bigtable.data import (
    BigtableDataClient,
    BigtableDataClientAsync,
    DeleteAllFromFamily,
    DeleteAllFromRow,
    ReadRowsQuery,
    RowMutationEntry,
    RowRange,
    SetCell,
)
from google.cloud.bigtable.data import row_filters as rf
from google.cloud.bigtable.data.read_modify_write_rules import IncrementRule

from predserve import settings
from predserve.errors import StoreError, StoreUnavailable
from predserve.store.base import ModelState, SnapshotWriter, check_columns, encode_id, no_store, now
from predserve.store.bigtable_reads import BudgetedReads
from predserve.store.snapshots import SnapshotStore, StateUpdate, SwitchUpdate
from predserve.store.updates import (
    LogEntry, Update, UpdateRejected, UpdateResult, check_columns as check_update_columns,
    decode_entry, encode_entry, render_body, snapshot_columns,
)

log = logging.getLogger("predserve.store")
DATA_FAMILY, META_FAMILY = "p", "m"
STATE_PREFIX = b"#state#"
ACCEPTED_PREFIX = b"#accepted#"
CAS_TIMEOUT = 60.0  # seconds a state update keeps retrying lost compare-and-sets
ATTACHMENT_PREFIX = b"#attachment#"
LOG_PREFIX, LOG_HEAD_PREFIX, SEQUENCE_PREFIX = b"#log#", b"#loghead#", b"#seq#"
WRITE_BATCH = 2000
# Flow control of each snapshot writer (the data client's MutationsBatcher): at most this many
# mutations, and bytes, in flight at once; a writer that gets ahead of Bigtable waits, so its
# memory stays flat however many rows it writes. MutateRows retries only the entries that
# failed with a transient error (RETRYABLE_WRITE_ERRORS), with exponential backoff, for up to
# WRITE_TIMEOUT seconds per batch; a row that still fails fails the bundle (and Beam retries it).
FLOW_CONTROL_MUTATIONS = 20_000
FLOW_CONTROL_BYTES = 32 << 20
WRITE_TIMEOUT = 600.0
RETRYABLE_WRITE_ERRORS = (gexc.DeadlineExceeded, gexc.ServiceUnavailable, gexc.Aborted, gexc.InternalServerError)
UNAVAILABLE = (gexc.DeadlineExceeded, gexc.ServiceUnavailable, gexc.RetryError)
try:  # the data client wraps retried failures in exception groups
    from google.cloud.bigtable.data.exceptions import RetryExceptionGroup

    UNAVAILABLE = UNAVAILABLE + (RetryExceptionGroup,)  # type: ignore[assignment]
except ImportError:  # pragma: no cover - older clients
    pass


def snapshot_prefix(model: str, snapshot: int) -> bytes:
    return f"{model}#{snapshot:08x}#".encode()


def accepted_prefix(model: str, snapshot: int) -> bytes:
    return ACCEPTED_PREFIX + snapshot_prefix(model, snapshot)


def data_key(prefix: bytes, entity_id: bytes) -> bytes:
    return prefix + b"%02x#" % (zlib.crc32(entity_id) & 0xFF) + entity_id


def _prefix_range(prefix: bytes) -> RowRange:
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    return RowRange(start_key=prefix, end_key=end)


LATEST = rf.CellsColumnLimitFilter(1)
# The newest cell, unless it is a tombstone (an empty value): for scans that skip deleted ids.
LIVE = rf.RowFilterChain([LATEST, rf.ValueRangeFilter(start_value=b"\x00")])


def cell_timestamp(sequence: int) -> int:
    """An update's cell timestamp: above the export's 0, a whole millisecond (see the module docstring)."""
    return (sequence + 1) * 1000


def log_prefix(model: str) -> bytes:
    return LOG_PREFIX + model.encode() + b"#"


def log_key(model: str, position: int) -> bytes:
    return log_prefix(model) + b"%016x" % position


def sequence_key(model: str, entity_id: bytes) -> bytes:
    return SEQUENCE_PREFIX + model.encode() + b"#" + entity_id


class Collided(Exception):
    """Another writer changed the state row between this writer's read and its compare-and-set."""


# Full-jitter exponential backoff: each pause is uniform in [0, d], d = 5 ms doubling up to 1 s.
CAS_RETRY = gretry.Retry(predicate=gretry.if_exception_type(Collided), initial=0.005, maximum=1.0,
                         multiplier=2.0, timeout=CAS_TIMEOUT)


def batch_digest(ids: list[bytes]) -> bytes:
    """A hash naming a batch of ids (their lengths and their bytes, so the sequence is unambiguous)."""
    digest = hashlib.blake2b(struct.pack(f">{len(ids)}I", *map(len, ids)), digest_size=16)
    digest.update(b"".join(ids))
    return digest.hexdigest().encode()


class BigtableSnapshotWriter(SnapshotWriter):
    """Batched MutateRows into one snapshot; the client retries transient errors.

    Rows are counted per batch (``write_columns`` call) under a tally row named by the batch's
    ids (``batch_digest``), written only after the flush: a bundle that fails before it is
    not counted, and a bundle retried after it (Dataflow retries a bundle whose commit failed)
    writes the same rows and the same tally rows again, so nothing is counted twice.
    """

    def __init__(self, store: "BigtableStore", model: str, snapshot: int) -> None:
        self._store = store
        self._prefix = snapshot_prefix(model, snapshot)
        self._tally_prefix = accepted_prefix(model, snapshot)
        self._tallies: dict[bytes, int] = {}
        self._batcher = store.table.mutations_batcher(
            flush_limit_mutation_count=WRITE_BATCH, flush_interval=1,
            flow_control_max_mutation_count=FLOW_CONTROL_MUTATIONS, flow_control_max_bytes=FLOW_CONTROL_BYTES,
            batch_operation_timeout=WRITE_TIMEOUT, batch_retryable_errors=RETRYABLE_WRITE_ERRORS,
        )

    def write_columns(self, ids: list[bytes], values: list[bytes]) -> int:
        check_columns(ids, values)  # the whole batch, before any of it is sent
        prefix = self._prefix
        for entity_id, value in zip(ids, values):
            # A fixed timestamp makes a retried write overwrite its own cell, not add a version.
            self._batcher.append(RowMutationEntry(data_key(prefix, entity_id), [SetCell(DATA_FAMILY, b"v", value, timestamp_micros=0)]))
        if ids:
            digest = batch_digest(ids)
            self._tallies[digest] = len(ids)  # the same batch twice holds the same rows once
        # Bigtable overwrites silently; duplicate keys are caught by the export's source check.
        return 0

    def close(self) -> None:
        """Flush, then record how many rows this writer had accepted (only once they all were)."""
        try:
            self._batcher.close()
        except Exception as exc:
            raise StoreError(f"writing to Bigtable failed: {exc}") from exc
        if self._tallies:
            entries = [RowMutationEntry(self._tally_prefix + digest, [SetCell(META_FAMILY, b"n", struct.pack(">Q", rows), timestamp_micros=0)])
                       for digest, rows in self._tallies.items()]
            for start in range(0, len(entries), WRITE_BATCH):
                self._store._call(self._store.table.bulk_mutate_rows, entries[start:start + WRITE_BATCH])
            self._tallies = {}


class BigtableStore(SnapshotStore):
    def __init__(self, project: str, instance: str, table: str, readonly: bool = False,
                 read_timeout: float = settings.READ_TIMEOUT, hedge_after: float = settings.HEDGE_AFTER,
                 create: bool = True) -> None:
        """``read_timeout``: the deadline of each read (retries included); ``hedge_after``: the
        latest a slow read gets a hedge (the API's async reads only: see bigtable_reads.py)."""
        self.project, self.instance_id, self.table_id = project, instance, table
        self.url = f"bigtable://{project}/{instance}/{table}"
        self.readonly = readonly
        self.read_timeout = read_timeout
        self._deadline = {"operation_timeout": read_timeout, "attempt_timeout": read_timeout}  # for every sync read
        self.reads = BudgetedReads(read_timeout, hedge_after)  # how the API's reads are made
        self.read_stats = self.reads.stats
        self._client = BigtableDataClient(project=project)
        self.table = self._client.get_table(instance, table)
        self._async_table: Any = None
        self._async_client: Any = None
        # Without create, a missing table or instance surfaces as StoreMissing at the first call.
        self.created = self._ensure_table() if create and not readonly else False

    @classmethod
    def from_url(cls, url: str, readonly: bool = False, read_timeout: float = settings.READ_TIMEOUT,
                 hedge_after: float = settings.HEDGE_AFTER, create: bool = True) -> "BigtableStore":
        parts = url.removeprefix("bigtable://").strip("/").split("/")
        if len(parts) != 3 or not all(parts):
            raise StoreError(f"bad Bigtable URL {url!r}: use bigtable://PROJECT/INSTANCE/TABLE")
        return cls(*parts, readonly=readonly, read_timeout=read_timeout, hedge_after=hedge_after, create=create)

    # ---- administration ----------------------------------------------------------------
    def _admin_table(self) -> Any:
        from google.cloud.bigtable import Client

        return Client(project=self.project, admin=True).instance(self.instance_id).table(self.table_id)

    def _ensure_table(self) -> bool:
        """Create the table when it does not exist; True when this call created it."""
        from google.cloud.bigtable import column_family

        try:
            table = self._admin_table()
            if not table.exists():
                keep_one = column_family.MaxVersionsGCRule(1)
                table.create(column_families={DATA_FAMILY: keep_one, META_FAMILY: keep_one})
                return True
        except gexc.AlreadyExists:
            pass
        except gexc.PermissionDenied:
            pass  # the writer role may lack table admin; the table must then exist already
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"Bigtable at {self.url} did not answer: {exc}") from exc
        return False

    def _remove(self) -> None:
        try:
            self._admin_table().delete()
        except gexc.GoogleAPICallError as exc:  # the failure being reported is the export's
            log.warning("could not delete the table %s this failed export created: %s", self.url, exc)

    def close(self) -> None:
        self._client.close()

    # ---- primitives --------------------------------------------------------------------
    def _state_from_row(self, row: Any) -> tuple[bytes | None, ModelState | None]:
        if row is None:
            return None, None
        version = state = None
        for cell in row.get_cells(META_FAMILY):
            if cell.qualifier == b"v":
                version = cell.value
            elif cell.qualifier == b"state":
                state = ModelState.from_dict(json.loads(cell.value))
        return version, state

    def _update_state(self, model: str, update: StateUpdate) -> ModelState:
        try:
            return CAS_RETRY(self._compare_and_set)(STATE_PREFIX + model.encode(), update)
        except gexc.RetryError:
            raise StoreError(
                f"could not update model {model!r} in {self.url}: other writers kept changing it for "
                f"{CAS_TIMEOUT:.0f} s; retry when fewer exports or GCs run at once"
            ) from None

    def _compare_and_set(self, key: bytes, update: StateUpdate) -> ModelState:
        """One read-modify-write of the state row; raises Collided if another writer got there first."""
        version, state = self._state_from_row(self._call(self.table.read_row, key, row_filter=LATEST))
        new_state = update(state)
        payload = json.dumps(new_state.to_dict()).encode()
        new_version = b"%d" % (int(version) + 1 if version else 1)
        write = [DeleteAllFromFamily(META_FAMILY), SetCell(META_FAMILY, b"v", new_version), SetCell(META_FAMILY, b"state", payload)]
        has_version = rf.RowFilterChain([rf.FamilyNameRegexFilter(META_FAMILY), rf.ColumnQualifierRegexFilter(b"v")])
        if version is None:  # no row yet: write only if nobody created it meanwhile
            written = not self._call(self.table.check_and_mutate_row, key, has_version, false_case_mutations=write)
        else:
            same = rf.RowFilterChain([has_version, rf.ValueRegexFilter(version)])
            written = self._call(self.table.check_and_mutate_row, key, same, true_case_mutations=write)
        if not written:
            raise Collided()
        return new_state

    def _delete_data(self, model: str, snapshot: int) -> None:
        self._delete_prefix(snapshot_prefix(model, snapshot))
        self._delete_prefix(accepted_prefix(model, snapshot))

    def _delete_prefix(self, prefix: bytes) -> None:
        try:
            self._admin_table().drop_by_prefix(prefix)
            return
        except gexc.PermissionDenied:
            pass  # no table-admin right: delete row by row, which bigtable.user may do
        query = ReadRowsQuery(row_ranges=[_prefix_range(prefix)], row_filter=rf.RowFilterChain([rf.StripValueTransformerFilter(True), LATEST]))
        keys = [row.row_key for row in self._call(self.table.read_rows, query)]
        for start in range(0, len(keys), WRITE_BATCH):
            entries = [RowMutationEntry(k, [DeleteAllFromRow()]) for k in keys[start:start + WRITE_BATCH]]
            self._call(self.table.bulk_mutate_rows, entries)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"Bigtable at {self.url} did not answer: {exc}") from exc
        except gexc.NotFound as exc:
            raise no_store(self.url) from exc

    def state(self, model: str) -> ModelState | None:
        return self._state_from_row(self._call(self.table.read_row, STATE_PREFIX + model.encode(), row_filter=LATEST))[1]

    def models(self) -> list[str]:
        query = ReadRowsQuery(row_ranges=[_prefix_range(STATE_PREFIX)], row_filter=rf.RowFilterChain([rf.StripValueTransformerFilter(True), LATEST]))
        return [row.row_key[len(STATE_PREFIX):].decode() for row in self._call(self.table.read_rows, query)]

    # ---- write side --------------------------------------------------------------------
    def writer(self, model: str, snapshot: int) -> BigtableSnapshotWriter:
        self._require_writable("write")
        self._snapshot(self.state(model), model, snapshot)
        return BigtableSnapshotWriter(self, model, snapshot)

    # ---- read side (sync) --------------------------------------------------------------

    def get(self, model: str, snapshot: int, entity_id: bytes) -> bytes | None:
        row = self._call(self.table.read_row, data_key(snapshot_prefix(model, snapshot), entity_id), row_filter=LATEST, **self._deadline)
        return (row.cells[0].value or None) if row is not None and row.cells else None  # b"": a deleted id

    def get_many(self, model: str, snapshot: int, ids: Sequence[bytes]) -> list[bytes | None]:
        prefix = snapshot_prefix(model, snapshot)
        keys = [data_key(prefix, i) for i in ids]
        rows = self._call(self.table.read_rows, ReadRowsQuery(row_keys=list(set(keys)), row_filter=LATEST), **self._deadline)
        found = {row.row_key: row.cells[0].value for row in rows if row.cells and row.cells[0].value}  # b"": deleted
        return [found.get(k) for k in keys]

    def rows_accepted(self, model: str, snapshot: int) -> int:
        query = ReadRowsQuery(row_ranges=[_prefix_range(accepted_prefix(model, snapshot))], row_filter=LATEST)
        return sum(struct.unpack(">Q", row.cells[0].value)[0] for row in self._call(self.table.read_rows, query) if row.cells)

    def count(self, model: str, snapshot: int) -> int:
        query = ReadRowsQuery(row_ranges=[_prefix_range(snapshot_prefix(model, snapshot))],
                              row_filter=rf.RowFilterChain([LIVE, rf.StripValueTransformerFilter(True)]))
        return sum(1 for _ in self._call(self.table.read_rows, query))

    def items(self, model: str, snapshot: int) -> Iterable[tuple[bytes, bytes]]:
        prefix = snapshot_prefix(model, snapshot)
        for row in self._call(self.table.read_rows, ReadRowsQuery(row_ranges=[_prefix_range(prefix)], row_filter=LIVE)):
            yield row.row_key[len(prefix) + 3:], row.cells[0].value

    # ---- updates (see the module docstring for the protocol) ------------------------------
    def _apply_updates(self, model: str, updates: Sequence[Update]) -> UpdateResult:
        state = self.state(model)
        info = state.current_info() if state else None
        if info is None:
            raise StoreError(f"model {model!r} has no published snapshot in {self.url} to update; run `predserve export` first")
        columns = snapshot_columns(info.metadata)
        ids = []
        for index, update in enumerate(updates):  # every update is checked before any is written
            try:
                check_update_columns(update, columns)
                ids.append(encode_id(update.id))
            except StoreError as exc:
                raise UpdateRejected(index, str(exc)) from None
        last = self._sequences(model, ids)
        chosen: list[tuple[bytes, Update, bytes | None]] = []
        for entity_id, update in zip(ids, updates):
            if last.get(entity_id, -1) >= update.sequence:
                continue
            last[entity_id] = update.sequence
            chosen.append((entity_id, update, update.encoded))
        result = UpdateResult(ignored=len(updates) - len(chosen), snapshot=info.id)
        if not chosen:
            result.position = self.update_position(model)
            return result
        self._write_bodies(model, info.id, [(i, u.id, u.sequence, p) for i, u, p in chosen])
        end = self._allocate(model, len(chosen))
        first = end - len(chosen) + 1
        applied_at = now()
        self._bulk([RowMutationEntry(log_key(model, first + n), [SetCell(META_FAMILY, b"v", encode_entry(u, p, applied_at), timestamp_micros=0)])
                    for n, (_, u, p) in enumerate(chosen)])
        moved = self.state(model)
        if moved is not None and moved.current not in (None, info.id):  # a publish or rollback switched meanwhile
            self._write_bodies(model, moved.current, [(i, u.id, u.sequence, p) for i, u, p in chosen])
            result.snapshot = moved.current
        self._bulk([RowMutationEntry(sequence_key(model, i), [SetCell(META_FAMILY, b"s", struct.pack(">Q", first + n),
                                                                      timestamp_micros=cell_timestamp(u.sequence))])
                    for n, (i, u, _) in enumerate(chosen)])
        result.applied, result.position = len(chosen), end
        return result

    def _sequences(self, model: str, ids: list[bytes]) -> dict[bytes, int]:
        """Each id's last applied sequence (ids never updated are absent)."""
        keys = {sequence_key(model, i): i for i in ids}
        rows = self._call(self.table.read_rows, ReadRowsQuery(row_keys=list(keys), row_filter=LATEST))
        return {keys[row.row_key]: row.cells[0].timestamp_micros // 1000 - 1 for row in rows if row.cells}

    def _write_bodies(self, model: str, snapshot: int, rows: list[tuple[bytes, str, int, bytes | None]]) -> None:
        """(id bytes, id, sequence, prediction JSON or None) -> cells at the sequence's timestamp."""
        prefix = snapshot_prefix(model, snapshot)
        self._bulk([RowMutationEntry(data_key(prefix, entity_id), [SetCell(
            DATA_FAMILY, b"v", b"" if prediction is None else render_body(model, snapshot, text, prediction),
            timestamp_micros=cell_timestamp(sequence))]) for entity_id, text, sequence, prediction in rows])

    def _bulk(self, entries: list[RowMutationEntry]) -> None:
        for start in range(0, len(entries), WRITE_BATCH):
            try:
                self._call(self.table.bulk_mutate_rows, entries[start:start + WRITE_BATCH])
            except StoreUnavailable:
                raise
            except gexc.GoogleAPICallError as exc:
                raise StoreError(f"writing updates to Bigtable failed: {exc}") from exc
            except Exception as exc:  # MutationsExceptionGroup: some rows failed after the client's retries
                raise StoreError(f"writing updates to Bigtable failed: {exc}") from exc

    def _allocate(self, model: str, count: int) -> int:
        """Hand out ``count`` log positions with one atomic increment; returns the last of them."""
        row = self._call(self.table.read_modify_write_row, LOG_HEAD_PREFIX + model.encode(), IncrementRule(META_FAMILY, b"n", count))
        return struct.unpack(">q", row.cells[0].value)[0]

    def update_position(self, model: str) -> int:
        row = self._call(self.table.read_row, LOG_HEAD_PREFIX + model.encode(), row_filter=LATEST)
        return struct.unpack(">q", row.cells[0].value)[0] if row is not None and row.cells else 0

    def log_entries(self, model: str, after: int, limit: int | None = None) -> list[LogEntry]:
        prefix = log_prefix(model)
        query = ReadRowsQuery(row_ranges=[RowRange(start_key=log_key(model, after + 1), end_key=_prefix_range(prefix).end_key)],
                              row_filter=LATEST, limit=limit)
        return [decode_entry(int(row.row_key[len(prefix):], 16), row.cells[0].value)
                for row in self._call(self.table.read_rows, query) if row.cells]

    def _replay(self, model: str, snapshot: int, entries: list[LogEntry]) -> None:
        self._write_bodies(model, snapshot, [(e.id.encode(), e.id, e.sequence, e.prediction) for e in entries])

    def _switch(self, model: str, target: int, log_from: int, update: SwitchUpdate) -> ModelState:
        head = self.update_position(model)
        seen = self.log_entries(model, log_from)
        self._replay(model, target, seen)  # (a)
        state = self._update_state(model, lambda current: update(current, head))  # (b)
        replayed = {e.position for e in seen}
        self._replay(model, target, [e for e in self.log_entries(model, log_from) if e.position not in replayed])  # (c)
        return state

    def _trim_log(self, model: str, upto: int) -> None:
        query = ReadRowsQuery(row_ranges=[RowRange(start_key=log_prefix(model), end_key=log_key(model, upto + 1))],
                              row_filter=rf.RowFilterChain([rf.StripValueTransformerFilter(True), LATEST]))
        self._bulk([RowMutationEntry(row.row_key, [DeleteAllFromRow()]) for row in self._call(self.table.read_rows, query)])

    # ---- attachments ---------------------------------------------------------------------
    def _put_attachment(self, model: str, snapshot: int, name: str, data: bytes) -> None:
        key = ATTACHMENT_PREFIX + snapshot_prefix(model, snapshot) + name.encode()
        self._call(self.table.mutate_row, key, SetCell(META_FAMILY, b"v", data, timestamp_micros=0))

    def _get_attachment(self, model: str, snapshot: int, name: str) -> bytes | None:
        row = self._call(self.table.read_row, ATTACHMENT_PREFIX + snapshot_prefix(model, snapshot) + name.encode(), row_filter=LATEST)
        return row.cells[0].value if row is not None and row.cells else None

    def _delete_attachments(self, model: str, snapshot: int) -> None:
        prefix = ATTACHMENT_PREFIX + snapshot_prefix(model, snapshot)
        keys_only = rf.RowFilterChain([rf.StripValueTransformerFilter(True), LATEST])
        for row in self._call(self.table.read_rows, ReadRowsQuery(row_ranges=[_prefix_range(prefix)], row_filter=keys_only)):
            self._call(self.table.mutate_row, row.row_key, DeleteAllFromRow())

    # ---- read side (async, for the API) ------------------------------------------------
    def _atable(self) -> Any:
        if self._async_table is None:  # created inside the running event loop
            self._async_client = BigtableDataClientAsync(project=self.project)
            self._async_table = self._async_client.get_table(self.instance_id, self.table_id)
        return self._async_table

    async def _aread(self, read: Any, *args: Any, **kwargs: Any) -> Any:
        """``await read(*args, **kwargs)`` under the read deadline, retried (bigtable_reads.py); 503 reasons named."""
        def attempt(timeout: float) -> Any:
            return read(*args, operation_timeout=timeout, attempt_timeout=timeout, retryable_errors=(), **kwargs)

        try:
            return await self.reads.read(attempt)
        except gexc.NotFound as exc:
            raise StoreError(f"Bigtable table {self.url} does not exist") from exc
        except UNAVAILABLE + (gexc.Aborted,) as exc:
            last = exc.__cause__ if isinstance(exc, gexc.RetryError) and exc.__cause__ is not None else exc
            if isinstance(last, (gexc.ServiceUnavailable, gexc.Aborted)):
                raise StoreUnavailable(f"Bigtable could not be reached ({last.message})", reason="unavailable") from exc
            raise StoreUnavailable(f"Bigtable did not answer within {self.read_timeout * 1000:.0f} ms",
                                   reason="timeout") from exc

    async def aget(self, model: str, snapshot: int, entity_id: bytes) -> bytes | None:
        row = await self._aread(self._atable().read_row, data_key(snapshot_prefix(model, snapshot), entity_id), row_filter=LATEST)
        return (row.cells[0].value or None) if row is not None and row.cells else None  # b"": a deleted id

    async def aget_many(self, model: str, snapshot: int, ids: Sequence[bytes]) -> list[bytes | None]:
        prefix = snapshot_prefix(model, snapshot)
        keys = [data_key(prefix, i) for i in ids]
        if not keys:
            return []
        rows = await self._aread(self._atable().read_rows, ReadRowsQuery(row_keys=list(set(keys)), row_filter=LATEST))
        found = {row.row_key: row.cells[0].value for row in rows if row.cells and row.cells[0].value}  # b"": deleted
        return [found.get(k) for k in keys]

    async def astate(self, model: str) -> ModelState | None:
        row = await self._aread(self._atable().read_row, STATE_PREFIX + model.encode(), row_filter=LATEST)
        return self._state_from_row(row)[1]

    async def amodels(self) -> list[str]:
        query = ReadRowsQuery(row_ranges=[_prefix_range(STATE_PREFIX)], row_filter=rf.RowFilterChain([rf.StripValueTransformerFilter(True), LATEST]))
        rows = await self._aread(self._atable().read_rows, query)
        return [row.row_key[len(STATE_PREFIX):].decode() for row in rows]
