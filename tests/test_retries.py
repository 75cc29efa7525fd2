"""Row counts that survive retried bundles (issue 21): a bundle that fails after its rows were
flushed is retried by the runner, writes the same rows again, and the store still counts
each row once, on LMDB and on the Bigtable emulator."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import create_runner

from predserve import Warehouse
from predserve.pipeline.job import build_pipeline
from predserve.pipeline.sinks import RenderAndWrite
from predserve.pipeline.sources import WarehouseSource
from predserve.store import open_store
from predserve.store.bigtable import batch_digest

ROWS = 20_000


class FailsOnceAfterTheFlush(RenderAndWrite):
    """The export's own write step, whose first bundle fails right after its rows were flushed
    (as a worker lost after its writes, before the runner recorded the bundle as done)."""

    def __init__(self, attempts: str, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.attempts = attempts

    def finish_bundle(self) -> None:
        super().finish_bundle()  # the rows are in the store, and counted
        with open(self.attempts, "a") as log:
            log.write("flushed\n")
        if Path(self.attempts).read_text().count("flushed") == 1:
            raise RuntimeError("injected failure after the flush")


def test_a_bundle_retried_after_its_flush_is_counted_once(store_url: str, tmp_path: Path) -> None:
    warehouse = tmp_path / "wh.duckdb"
    with Warehouse(warehouse) as wh:
        wh.sql(f"CREATE TABLE p AS SELECT x AS id, x * 2 AS score FROM UNNEST(GENERATE_ARRAY(1, {ROWS})) AS x")
    source = WarehouseSource(str(warehouse), "SELECT * FROM p", "id")
    attempts = tmp_path / "attempts"
    try:
        assert source.prepare().rows == ROWS
        with open_store(store_url) as store:
            snapshot = store.create_snapshot("m").id
            write = beam.ParDo(FailsOnceAfterTheFlush(str(attempts), store_url, "m", snapshot, ("id",)))
            # Beam's bundle-based DirectRunner retries a failed bundle, as Dataflow does
            build_pipeline(source, PipelineOptions([]), create_runner("BundleBasedDirectRunner"), write).run().wait_until_finish()
            assert attempts.read_text().count("flushed") == 2  # the bundle really ran twice
            assert store.rows_accepted("m", snapshot) == ROWS == store.count("m", snapshot)
    finally:
        source.cleanup()


def test_the_batch_digest_names_the_sequence_of_ids() -> None:
    assert batch_digest([b"ab", b"c"]) != batch_digest([b"a", b"bc"])  # the same bytes, other ids
    assert batch_digest([b"1", b"2"]) == batch_digest([b"1", b"2"]) != batch_digest([b"2", b"1"])
