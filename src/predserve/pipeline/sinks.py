"""Writing rendered rows into an unpublished store snapshot, from any Beam worker.

Each DoFn instance opens the store itself (in ``setup``, after the worker process starts),
so nothing unpicklable crosses to workers: only the store URL, model and snapshot id.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from predserve.pipeline.render import BodyRenderer

NAMESPACE = "predserve"


class RenderAndWrite(beam.DoFn):
    """Render an Arrow table of predictions into JSON bodies and write them to the snapshot."""

    def __init__(self, store_url: str, model: str, snapshot: int, key: str) -> None:
        self.store_url, self.model, self.snapshot, self.key = store_url, model, snapshot, key
        self.rows_written = Metrics.counter(NAMESPACE, "rows_written")
        self.duplicates = Metrics.counter(NAMESPACE, "duplicate_ids")

    def setup(self) -> None:
        from predserve.store import open_store

        self._store = open_store(self.store_url)
        self._renderer = BodyRenderer(self.model, self.snapshot, self.key)

    def start_bundle(self) -> None:
        self._writer = self._store.writer(self.model, self.snapshot)

    def finish_bundle(self) -> None:
        # Flush here, not in teardown: a failure in finish_bundle fails (and retries) the
        # bundle, so rows counted as written are rows the store has accepted.
        self._writer.close()

    def process(self, table: pa.Table):  # type: ignore[no-untyped-def]
        ids, bodies = self._renderer.render(table)
        duplicates = self._writer.write_columns(ids, bodies)
        self.rows_written.inc(len(ids) - duplicates)
        if duplicates:
            self.duplicates.inc(duplicates)
        return []

    def teardown(self) -> None:
        store = getattr(self, "_store", None)
        if store is not None:
            store.close()


class ExportToSnapshot(beam.PTransform):
    """Composite transform: Arrow tables of predictions -> rows in store snapshot ``snapshot``."""

    def __init__(self, store_url: str, model: str, snapshot: int, key: str) -> None:
        super().__init__()
        self.store_url, self.model, self.snapshot, self.key = store_url, model, snapshot, key

    def expand(self, tables: beam.PCollection) -> beam.PCollection:
        return tables | "RenderAndWrite" >> beam.ParDo(RenderAndWrite(self.store_url, self.model, self.snapshot, self.key))
