"""Writing rendered rows into an unpublished store snapshot, from any Beam worker.

Each DoFn instance opens the store itself (in ``setup``, after the worker process starts),
so nothing unpicklable crosses to workers: only the store URL, model and snapshot id.

The rows written are counted by the store, not by Beam metrics (which the DaskRunner does not
report): each bundle's writer records what the store accepted when it flushes, and the
driver reads the total with ``store.rows_accepted``. The DoFn outputs nothing, so the
pipeline stays one straight line with a single leaf, which is all the DaskRunner computes.

Rendering and writing overlap: each DoFn hands its rendered bytes to one writer thread (a
queue of ``WRITE_AHEAD`` tables), so DuckDB renders the next table while the store writes
this one. LMDB takes one writer at a time anyway; its C code and DuckDB's both release the
GIL, so the two use both cores of a small machine.
"""

from __future__ import annotations

import queue
import threading

import apache_beam as beam
import pyarrow as pa

from predserve.pipeline.render import BodyRenderer

WRITE_AHEAD = 2  # rendered tables waiting for the writer thread (bounds the memory of a bundle)


class BackgroundWriter:
    """Writes (ids, bodies) batches with a store writer in a thread of its own, in order.

    ``submit`` blocks while WRITE_AHEAD batches wait; ``close`` writes what is left, flushes
    the store writer and raises the first error the thread met (so a failed write fails the
    bundle, as it would in the caller's thread)."""

    def __init__(self, writer: object) -> None:
        self._writer = writer
        self._queue: queue.Queue = queue.Queue(WRITE_AHEAD)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="predserve-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._writer.write_columns(*batch)  # type: ignore[attr-defined]
                except BaseException as exc:  # reported by submit/close, in the bundle's thread
                    self._error = exc

    def submit(self, ids: list[bytes], bodies: list[bytes]) -> None:
        if self._error is not None:
            self._queue.put(None)  # the thread ends; close() finds it ended
            raise self._error
        self._queue.put((ids, bodies))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        self._writer.close()  # type: ignore[attr-defined]


class RenderAndWrite(beam.DoFn):
    """Render an Arrow table of predictions into JSON bodies and write them to the snapshot."""

    def __init__(self, store_url: str, model: str, snapshot: int, key: str | tuple[str, ...]) -> None:
        self.store_url, self.model, self.snapshot, self.key = store_url, model, snapshot, key

    def setup(self) -> None:
        from predserve.store import open_store

        self._store = open_store(self.store_url, create=False)  # the export's driver created it
        self._renderer = BodyRenderer(self.model, self.snapshot, self.key)

    def start_bundle(self) -> None:
        self._writer = BackgroundWriter(self._store.writer(self.model, self.snapshot))

    def finish_bundle(self) -> None:
        # Flush here, not in teardown: a failure in finish_bundle fails (and retries) the
        # bundle, so rows the store counts as accepted are rows it holds.
        self._writer.close()

    def process(self, table: pa.Table):  # type: ignore[no-untyped-def]
        self._writer.submit(*self._renderer.render(table))
        return []

    def teardown(self) -> None:
        store = getattr(self, "_store", None)
        if store is not None:
            store.close()


class ExportToSnapshot(beam.PTransform):
    """Composite transform: Arrow tables of predictions -> rows in store snapshot ``snapshot``."""

    def __init__(self, store_url: str, model: str, snapshot: int, key: str | tuple[str, ...]) -> None:
        super().__init__()
        self.store_url, self.model, self.snapshot, self.key = store_url, model, snapshot, key

    def expand(self, tables: beam.PCollection) -> beam.PCollection:
        return tables | "RenderAndWrite" >> beam.ParDo(RenderAndWrite(self.store_url, self.model, self.snapshot, self.key))
