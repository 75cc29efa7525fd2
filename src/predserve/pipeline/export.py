"""The export job: warehouse predictions -> a new store snapshot -> gates -> publish.

    source.prepare()          run the query once -> work items + key statistics (rows, NULL/duplicate keys)
      beside it, a thread:    import Beam (job.py) and check the pipeline options; a bad option
                              cancels the query, so it is reported as soon as Beam is loaded
    store.create_snapshot()   a new, invisible snapshot id
    Beam pipeline             work items -> Arrow tables -> JSON bodies -> rows in the snapshot
      beside it, a thread:    source.profile() -> the columns' distributions + the drift sample's ids
                              (started before the Beam import is joined, so it overlaps that too)
    store.rows_accepted()     the rows written, as the store counted them (no runner metrics)
    drift                     vs the current snapshot: profile distances + the sample's bodies compared
    gates                     empty? NULL/duplicate keys? row count drop? prediction columns changed? drift?
    store.publish()           replays the updates logged since the export started into the new snapshot,
                              then one atomic pointer switch, profile and drift in the metadata; then GC
                              keeps the last K snapshots (and any that was current within the grace period)
    source.cleanup()          always: the staging directory or temporary BigQuery table goes

Anything that fails before the publish discards the new snapshot; the current one keeps
serving. A driver killed outright leaves an unfinished snapshot and a staging directory that
the next GC (or export) collects, or a temporary BigQuery table that expires.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Iterator, Sequence

from predserve import settings
from predserve.errors import ExportError
from predserve.keys import key_columns
from predserve.pipeline import drift as drifts
from predserve.pipeline.gates import GatePolicy, GateResult, check_drift_gates, check_gates
from predserve.pipeline.sources import Source, SourceStats, WarehouseSource
from predserve.store import open_store
from predserve.store.reports import Drift, Profile, snapshot_report

log = logging.getLogger("predserve.pipeline")
Progress = Callable[[int, int, float], None]  # (rows written, rows expected, seconds elapsed)


def open_source(warehouse: str, query: str, key: str | Sequence[str]) -> Source:
    """The source ``warehouse`` names: ``bigquery://PROJECT/DATASET``, else a DuckDB file."""
    if warehouse.startswith("bigquery://"):
        with quiet_beam_import():  # the BigQuery source reads with a Beam DoFn
            from predserve.pipeline.bigquery import BigQuerySource

        return BigQuerySource(warehouse, query, key)
    return WarehouseSource(warehouse, query, key)


@contextmanager
def quiet_beam_import() -> Iterator[None]:
    """Beam warns at import about optional file systems and clients predserve does not use
    (``WARNING:root:apitools not found ...``), which to a user reads as something broken."""
    root = logging.getLogger()
    guard = logging.NullHandler()  # so that a library's bare logging.warning() cannot configure the root logger
    root.addHandler(guard)
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
        root.removeHandler(guard)


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
    profile: Profile | None = None
    drift: Drift | None = None

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "snapshot": self.snapshot, "rows": self.rows, "published": self.published,
            "seconds": round(self.seconds, 3), "rows_per_second": round(self.rows_per_second),
            "store": self.store, "gates": [g.to_dict() for g in self.gates], "collected_snapshots": self.collected,
            "profile": _json(self.profile), "drift": _json(self.drift),
        }


def _json(record: Profile | Drift | None) -> dict[str, Any] | None:
    return record.to_json() if record is not None else None


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
    keep: int = settings.KEEP,
    grace: float = settings.GRACE,
    max_age: float | None = None,
    default_prediction: dict[str, Any] | None = None,
    progress: Progress | None = None,
    profile: bool = True,
) -> ExportSummary:
    """Export one model's predictions into a new snapshot and publish it if every gate passes.

    ``profile=False`` skips the profile, and with it the drift gates (the benchmark's baseline).
    """
    if (query is None) == (table is None):
        raise ExportError("give exactly one of --query SQL or --table NAME")
    query = query if query is not None else _table_query(warehouse, table or "")
    policy = policy or GatePolicy()
    keys = key_columns(key)  # "user_id" or "user_id,country" (a composite key: keys.py)
    key = ",".join(keys)
    started = time.time()
    source = open_source(warehouse, query, keys)
    beam = BeamStartup(beam_args, on_failure=source.cancel)
    store = open_store(store_url, read_timeout=drifts.READ_TIMEOUT)  # the one command that creates a store
    snapshot = None
    failed = False
    try:
        # Before the query runs: updates logged after this are replayed into the new snapshot
        # when it publishes, so no update is lost to, or overwritten by, this export's data.
        log_from = store.update_position(model)
        stats = _prepare(source, beam)
        schema = [(f.name, str(f.type)) for f in stats.schema if f.name not in keys] if stats.schema is not None else []
        _check_metadata_columns(policy.metadata_columns, schema)
        snapshot = store.create_snapshot(model, {"source": warehouse, "query": query, "key": key}, log_from=log_from).id
        with ThreadPoolExecutor(1, thread_name_prefix="profile") as pool:  # leaving waits for it, even on errors
            profiling = pool.submit(source.profile) if profile and stats.rows else None
            job, options, runner = beam.result()
            sink = job.ExportToSnapshot(store_url, model, snapshot, keys, ordered=job.writes_in_order(options, runner))
            written = _write_rows(job, source, options, runner, store, sink, stats.rows, started, progress)
            new_profile, sample = profiling.result() if profiling is not None else (None, [])
        store.finish_snapshot(model, snapshot, written)
        if sample:
            store.write_attachment(model, snapshot, drifts.SAMPLE_ATTACHMENT, drifts.encode_sample(sample))
        current = store.current(model)
        drift = _drift(store, model, current, snapshot, new_profile, sample, policy, schema)
        gates = check_gates(stats, written, schema, current, policy)
        if new_profile is not None:
            gates += check_drift_gates(drift, current, policy)
        summary = ExportSummary(model, snapshot, written, False, time.time() - started, store.url, gates, [], new_profile, drift)
        blocking = [g for g in gates if g.blocks]
        if blocking:  # discarded now, with the refusal on the model's timeline
            _discard_quietly(store, model, snapshot, [(g.name, g.detail) for g in blocking])
            raise GateRefused(summary, blocking)
        metadata = {"schema": schema, "max_age": max_age, "source_rows": stats.rows, "default_prediction": default_prediction,
                    "profile": _json(new_profile), "drift": _json(drift)}
        store.publish(model, snapshot, metadata, overridden=[g.name for g in gates if g.overridden and not g.passed])
        summary.published = True
        summary.collected = [sid for _, sid in store.gc(model, keep=keep, grace=grace)]
        summary.seconds = time.time() - started
        return summary
    except BaseException:
        if snapshot is not None:
            _discard_quietly(store, model, snapshot)
        failed = True
        raise
    finally:
        source.cleanup()
        if failed:  # a store this export created goes with it: a failed export leaves nothing new
            store.close_or_remove_new()
        else:
            store.close()


def _drift(store: Any, model: str, current: Any, snapshot: int, profile: Profile | None,
           sample: list[str], policy: GatePolicy, schema: list[tuple[str, str]]) -> Drift | None:
    """The new snapshot's drift against the current one (None without two profiles to compare)."""
    baseline = snapshot_report(current.metadata).profile if current is not None else None
    if profile is None or baseline is None:
        return None
    kinds = {name: column.kind for name, column in profile.columns.items()}
    compared = drifts.compare_sample(store, model, current.id, snapshot, kinds, new_ids=sample,
                                     tolerance=policy.drift_limits.move_tolerance, lists=drifts.list_fields(profile))
    temporal = [name for name, arrow_type in schema if arrow_type.startswith(TEMPORAL_TYPES)]
    return drifts.measure(baseline, profile, current.id, compared, policy.drift_limits, policy.metadata_columns, temporal)


# Arrow type names of dates, times and timestamps: never a drift signal (reported, not gated).
TEMPORAL_TYPES = ("timestamp", "date", "time")


class GateRefused(ExportError):
    """A publish gate refused the snapshot; ``summary`` says which and why."""

    def __init__(self, summary: ExportSummary, blocking: list[GateResult]) -> None:
        self.summary = summary
        reasons = "; ".join(f"{g.name}: {g.detail}" for g in blocking)
        super().__init__(f"snapshot {summary.snapshot} of model {summary.model!r} was not published: {reasons}")


def _discard_quietly(store: Any, model: str, snapshot: int, refused: Sequence[tuple[str, str]] = ()) -> None:
    """Drop the failed export's snapshot (``refused``: the gates that refused it, for the model's
    timeline); if even that fails, GC will (the error in flight wins)."""
    try:
        state = store.state(model)
        info = state.snapshots.get(snapshot) if state else None
        if info is not None and info.state != "published":
            store.discard(model, snapshot, refused)
    except Exception as exc:  # the original failure is the one to report
        log.warning("could not discard unpublished snapshot %s of %s (%s); `predserve gc` will", snapshot, model, exc)


def _check_metadata_columns(names: Sequence[str], schema: list[tuple[str, str]]) -> None:
    unknown = [n for n in names if n not in {c for c, _ in schema}]
    if unknown and schema:
        raise ExportError(f"--metadata-columns names {', '.join(unknown)}, not among the prediction columns: "
                          f"{', '.join(c for c, _ in schema)}")


def _table_query(warehouse: str, table: str) -> str:
    """``--table NAME``: every row of it (BigQuery table paths are quoted whole, as a project may hold a '-')."""
    if warehouse.startswith("bigquery://") and not table.startswith("`"):
        table = f"`{table}`"
    return f"SELECT * FROM {table}"


class BeamStartup:
    """Imports Beam (``job.py``) and checks the pipeline options in a thread of its own.

    Beam's import is Python holding the GIL; the query that ``prepare`` runs is DuckDB, which
    releases it, so on two cores the two overlap. A bad option calls ``on_failure`` (the
    source's ``cancel``) instead of waiting for the query to end."""

    def __init__(self, beam_args: Sequence[str], on_failure: Callable[[], None]) -> None:
        self._args, self._on_failure = list(beam_args), on_failure
        self._result: tuple[ModuleType, Any, Any] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="predserve-beam-startup", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with quiet_beam_import():
                from predserve.pipeline import job
            self._result = (job, *job.pipeline_options(self._args))
        except BaseException as exc:  # raised by result(), in the caller's thread
            self._error = exc
            self._on_failure()

    def result(self) -> tuple[ModuleType, Any, Any]:
        """(the job module, the pipeline options, the runner); raises the options' error."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def _prepare(source: Source, beam: BeamStartup) -> SourceStats:
    """``source.prepare()``; when it failed because a bad pipeline option cancelled it, that option's error."""
    try:
        return source.prepare()
    except Exception:
        beam.result()
        raise


def _write_rows(job: ModuleType, source: Source, options: Any, runner: Any, store: Any, sink: Any,
                expected: int, started: float, progress: Progress | None) -> int:
    """Run the pipeline (unless there is nothing to read); return the rows the store accepted."""
    if expected:
        with _Progress(store, sink.model, sink.snapshot, expected, started, progress):
            job.run_pipeline(source, options, runner, sink)
    written = int(store.rows_accepted(sink.model, sink.snapshot))
    if progress is not None:
        progress(written, expected, time.time() - started)
    return written


class _Progress:
    """Reports rows written every half second from the store's own count, while the pipeline runs."""

    def __init__(self, store: Any, model: str, snapshot: int, expected: int, started: float, report: Progress | None) -> None:
        self.store, self.model, self.snapshot, self.expected, self.started, self.report = store, model, snapshot, expected, started, report
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "_Progress":
        if self.report is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        assert self.report is not None
        while not self._stop.wait(0.5):
            try:
                written = self.store.rows_accepted(self.model, self.snapshot)
            except Exception:  # progress is best effort; the export's own errors are reported elsewhere
                continue
            self.report(written, self.expected, time.time() - self.started)
