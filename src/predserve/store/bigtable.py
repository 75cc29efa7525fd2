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

Every snapshot is one contiguous key range (``model#snapshot#``), so deleting it is one
DropRowRange. Inside it a 2-hex-digit hash bucket spreads sequential ids (1, 2, 3, ...) over
256 sub-ranges, so a bulk write does not hammer one tablet. The state row changes with a
CheckAndMutateRow on its version: an atomic compare-and-set, so publishes are atomic and
concurrent writers cannot lose each other's updates. A writer that loses the race reads the
row again after a randomised, exponentially growing pause (``google.api_core.retry``: full
jitter, 5 ms doubling up to 1 s), for up to ``CAS_TIMEOUT`` seconds.

The API reads with the async data client and a short deadline (default 50 ms): a slow or
absent Bigtable gives a 503, not a hung request. Set ``BIGTABLE_EMULATOR_HOST`` to use the
emulator; otherwise Application Default Credentials are used.
"""

from __future__ import annotations

import hashlib
import json
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

from predserve.errors import StoreError, StoreUnavailable
from predserve.store.base import ModelState, SnapshotWriter, check_columns
from predserve.store.snapshots import SnapshotStore, StateUpdate

DATA_FAMILY, META_FAMILY = "p", "m"
STATE_PREFIX = b"#state#"
ACCEPTED_PREFIX = b"#accepted#"
CAS_TIMEOUT = 60.0  # seconds a state update keeps retrying lost compare-and-sets
ATTACHMENT_PREFIX = b"#attachment#"
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
    def __init__(self, project: str, instance: str, table: str, readonly: bool = False, read_timeout: float = 0.05) -> None:
        self.project, self.instance_id, self.table_id = project, instance, table
        self.url = f"bigtable://{project}/{instance}/{table}"
        self.readonly = readonly
        self.read_timeout = read_timeout
        self._deadline = {"operation_timeout": read_timeout, "attempt_timeout": read_timeout}  # for every read
        self._client = BigtableDataClient(project=project)
        self.table = self._client.get_table(instance, table)
        self._async_table: Any = None
        self._async_client: Any = None
        if not readonly:
            self._ensure_table()

    @classmethod
    def from_url(cls, url: str, readonly: bool = False, read_timeout: float = 0.05) -> "BigtableStore":
        parts = url.removeprefix("bigtable://").strip("/").split("/")
        if len(parts) != 3 or not all(parts):
            raise StoreError(f"bad Bigtable URL {url!r}: use bigtable://PROJECT/INSTANCE/TABLE")
        return cls(*parts, readonly=readonly, read_timeout=read_timeout)

    # ---- administration ----------------------------------------------------------------
    def _admin_table(self) -> Any:
        from google.cloud.bigtable import Client

        return Client(project=self.project, admin=True).instance(self.instance_id).table(self.table_id)

    def _ensure_table(self) -> None:
        from google.cloud.bigtable import column_family

        try:
            table = self._admin_table()
            if not table.exists():
                keep_one = column_family.MaxVersionsGCRule(1)
                table.create(column_families={DATA_FAMILY: keep_one, META_FAMILY: keep_one})
        except gexc.AlreadyExists:
            pass
        except gexc.PermissionDenied:
            pass  # the writer role may lack table admin; the table must then exist already
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"Bigtable at {self.url} did not answer: {exc}") from exc

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
            raise StoreError(f"Bigtable table {self.url} does not exist; run an export (writer role) to create it") from exc

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
        return row.cells[0].value if row is not None and row.cells else None

    def get_many(self, model: str, snapshot: int, ids: Sequence[bytes]) -> list[bytes | None]:
        prefix = snapshot_prefix(model, snapshot)
        keys = [data_key(prefix, i) for i in ids]
        rows = self._call(self.table.read_rows, ReadRowsQuery(row_keys=list(set(keys)), row_filter=LATEST), **self._deadline)
        found = {row.row_key: row.cells[0].value for row in rows if row.cells}
        return [found.get(k) for k in keys]

    def rows_accepted(self, model: str, snapshot: int) -> int:
        query = ReadRowsQuery(row_ranges=[_prefix_range(accepted_prefix(model, snapshot))], row_filter=LATEST)
        return sum(struct.unpack(">Q", row.cells[0].value)[0] for row in self._call(self.table.read_rows, query) if row.cells)

    def count(self, model: str, snapshot: int) -> int:
        query = ReadRowsQuery(row_ranges=[_prefix_range(snapshot_prefix(model, snapshot))],
                              row_filter=rf.RowFilterChain([rf.StripValueTransformerFilter(True), LATEST]))
        return sum(1 for _ in self._call(self.table.read_rows, query))

    def items(self, model: str, snapshot: int) -> Iterable[tuple[bytes, bytes]]:
        prefix = snapshot_prefix(model, snapshot)
        for row in self._call(self.table.read_rows, ReadRowsQuery(row_ranges=[_prefix_range(prefix)], row_filter=LATEST)):
            yield row.row_key[len(prefix) + 3:], row.cells[0].value

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

    async def _acall(self, coro_fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await coro_fn(*args, **kwargs)
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"Bigtable did not answer within {self.read_timeout * 1000:.0f} ms") from exc
        except gexc.NotFound as exc:
            raise StoreError(f"Bigtable table {self.url} does not exist") from exc

    async def aget(self, model: str, snapshot: int, entity_id: bytes) -> bytes | None:
        table = self._atable()
        row = await self._acall(table.read_row, data_key(snapshot_prefix(model, snapshot), entity_id), row_filter=LATEST, **self._deadline)
        return row.cells[0].value if row is not None and row.cells else None

    async def aget_many(self, model: str, snapshot: int, ids: Sequence[bytes]) -> list[bytes | None]:
        prefix = snapshot_prefix(model, snapshot)
        keys = [data_key(prefix, i) for i in ids]
        if not keys:
            return []
        rows = await self._acall(self._atable().read_rows, ReadRowsQuery(row_keys=list(set(keys)), row_filter=LATEST), **self._deadline)
        found = {row.row_key: row.cells[0].value for row in rows if row.cells}
        return [found.get(k) for k in keys]

    async def astate(self, model: str) -> ModelState | None:
        row = await self._acall(self._atable().read_row, STATE_PREFIX + model.encode(), row_filter=LATEST, **self._deadline)
        return self._state_from_row(row)[1]

    async def amodels(self) -> list[str]:
        query = ReadRowsQuery(row_ranges=[_prefix_range(STATE_PREFIX)], row_filter=rf.RowFilterChain([rf.StripValueTransformerFilter(True), LATEST]))
        rows = await self._acall(self._atable().read_rows, query, **self._deadline)
        return [row.row_key[len(STATE_PREFIX):].decode() for row in rows]
