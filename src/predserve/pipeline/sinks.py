"""Writing rendered rows into an unpublished store snapshot, from any Beam worker.

Each DoFn instance opens the store itself (in ``setup``, after the worker process starts),
so nothing unpicklable crosses to workers: only the store URL, model and snapshot id.

The rows written are counted by the store, not by Beam metrics (which the DaskRunner does not
report): each bundle's writer records what the store accepted when it flushes, and the
driver reads the total with ``store.rows_accepted``. The DoFn outputs nothing, so the
pipeline stays one straight line with a single leaf, which is all the DaskRunner computes.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa

from predserve.pipeline.render import BodyRenderer


class RenderAndWrite(beam.DoFn):
    """Render an Arrow table of predictions into JSON bodies and write them to the snapshot."""

    def __init__(self, store_url: str, model: str, snapshot: int, key: str | tuple[str, ...]) -> None:
        self.store_url, self.model, self.snapshot, self.key = store_url, model, snapshot, key

    def setup(self) -> None:
        from predserve.store import open_store

        self._store = open_store(self.store_url)
        self._renderer = BodyRenderer(self.model, self.snapshot, self.key)

    def start_bundle(self) -> None:
        self._writer = self._store.writer(self.model, self.snapshot)

    def finish_bundle(self) -> None:
        # Flush here, not in teardown: a failure in finish_bundle fails (and retries) the
        # bundle, so rows the store counts as accepted are rows it holds.
        self._writer.close()

    def process(self, table: pa.Table):  # type: ignore[no-untyped-def]
        ids, bodies = self._renderer.render(table)
        self._writer.write_columns(ids, bodies)
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
