"""The export job: warehouse predictions -> a new store snapshot -> gates -> publish.

    source.prepare()          query -> staged shards + key statistics (rows, NULL/duplicate keys)
    store.create_snapshot()   a new, invisible snapshot id
    Beam pipeline             read Arrow batches -> render JSON bodies -> write into the snapshot
    gates                     empty? NULL/duplicate keys? row count drop? prediction columns changed?
    store.publish()           one atomic pointer switch; then GC keeps the last K snapshots
                              (and any that was current within the grace period)

Anything that fails before the publish discards the new snapshot; the current one keeps
serving. A driver killed outright leaves an unfinished snapshot that the next GC collects.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from predserve.errors import ExportError
from predserve.pipeline.gates import GatePolicy, GateResult, check_gates
from predserve.pipeline.sinks import NAMESPACE, ExportToSnapshot
from predserve.pipeline.sources import open_source
from predserve.store import open_store
from predserve.store.base import DEFAULT_GRACE, DEFAULT_KEEP

log = logging.getLogger("predserve.pipeline")
Progress = Callable[[int, int, float], None]  # (rows written, rows expected, seconds elapsed)


@dataclass
class ExportSummary:
    model: str
    snapshot: int
    rows: int
    published: bool
    seconds: float
    store: str
    gates: list[GateResult] = field(default_factory=list)
    collected: list[int] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "snapshot": self.snapshot, "rows": self.rows, "published": self.published,
            "seconds": round(self.seconds, 3), "rows_per_second": round(self.rows_per_second),
            "store": self.store, "gates": [g.to_dict() for g in self.gates], "collected_snapshots": self.collected,
        }


def run_export(
    *,
    warehouse: str,
    model: str,
    key: str,
    store_url: str,
    query: str | None = None,
    table: str | None = None,
    beam_args: Sequence[str] = (),
    policy: GatePolicy | None = None,
    keep: int = DEFAULT_KEEP,
    grace: float = DEFAULT_GRACE,
    max_age: float | None = None,
    default_prediction: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> ExportSummary:
    """Export one model's predictions into a new snapshot and publish it if every gate passes."""
    if (query is None) == (table is None):
        raise ExportError("give exactly one of --query SQL or --table NAME")
    query = query if query is not None else f"SELECT * FROM {table}"
    policy = policy or GatePolicy()
    started = time.time()
    source = open_source(warehouse, query, key)
    store = open_store(store_url)
    snapshot = None
    try:
        stats = source.prepare()
        schema = [(f.name, str(f.type)) for f in stats.schema if f.name != key] if stats.schema is not None else []
        snapshot = store.create_snapshot(model, {"source": warehouse, "query": query, "key": key}).id
        written = _run_pipeline(source, store_url, model, snapshot, key, beam_args, stats.rows, store, progress, started)
        store.finish_snapshot(model, snapshot, written)
        current = store.current(model)
        gates = check_gates(stats, written, schema, current, policy)
        summary = ExportSummary(model, snapshot, written, False, time.time() - started, store.url, gates)
        blocking = [g for g in gates if g.blocks]
        if blocking:
            raise GateRefused(summary, blocking)  # the handler below discards the snapshot
        metadata = {"schema": schema, "max_age": max_age, "source_rows": stats.rows, "default_prediction": default_prediction}
        store.publish(model, snapshot, metadata)
        summary.published = True
        summary.collected = [sid for _, sid in store.gc(model, keep=keep, grace=grace)]
        summary.seconds = time.time() - started
        return summary
    except BaseException:
        if snapshot is not None:
            _discard_quietly(store, model, snapshot)
        raise
    finally:
        source.cleanup()
        store.close()


class GateRefused(ExportError):
    """A publish gate refused the snapshot; ``summary`` says which and why."""

    def __init__(self, summary: ExportSummary, blocking: list[GateResult]) -> None:
        self.summary = summary
        reasons = "; ".join(f"{g.name}: {g.detail}" for g in blocking)
        super().__init__(f"snapshot {summary.snapshot} of model {summary.model!r} was not published: {reasons}")


def _discard_quietly(store: Any, model: str, snapshot: int) -> None:
    """Drop the failed export's snapshot; if even that fails, GC will (the error in flight wins)."""
    try:
        state = store.state(model)
        info = state.snapshots.get(snapshot) if state else None
        if info is not None and info.state != "published":
            store.discard(model, snapshot)
    except Exception as exc:  # the original failure is the one to report
        log.warning("could not discard unpublished snapshot %s of %s (%s); `predserve gc` will", snapshot, model, exc)


def _run_pipeline(
    source: Any, store_url: str, model: str, snapshot: int, key: str, beam_args: Sequence[str],
    expected: int, store: Any, progress: Progress | None, started: float,
) -> int:
    pipeline = beam.Pipeline(options=PipelineOptions(list(beam_args)))
    _ = pipeline | "Read" >> source.read() | "Export" >> ExportToSnapshot(store_url, model, snapshot, key)
    stop = threading.Event()
    watcher = None
    # Live progress needs a cheap count of rows written (LMDB's entry count); other
    # backends report once, at the end.
    if progress is not None and hasattr(store, "entries"):
        watcher = threading.Thread(target=_watch, args=(store.entries, expected, started, progress, stop), daemon=True)
        watcher.start()
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except Exception as exc:
        raise ExportError(f"the export pipeline failed: {exc}") from exc
    finally:
        stop.set()
        if watcher is not None:
            watcher.join()
    counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    totals = {c.key.metric.name: (c.committed if c.committed is not None else c.attempted) for c in counters}
    written = int(totals.get("rows_written", 0))
    if progress is not None:
        progress(written, expected, time.time() - started)
    return written


def _watch(entries: Callable[[], int], expected: int, started: float, progress: Progress, stop: threading.Event) -> None:
    """Report rows written every half second, from the store's entry count."""
    base = entries()
    while not stop.wait(0.5):
        progress(entries() - base, expected, time.time() - started)
