"""The Beam side of the export: the source's read shape, the pipeline's one line, running it.

Only this module, ``sinks.py``, ``options.py`` and the BigQuery source import Beam. Importing
it costs about 1.3 s of CPU, more than DuckDB takes to stage a million rows, so ``export.py``
imports this module (and checks the pipeline options) in a thread while the query runs.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineRunner

from predserve.errors import ExportError
from predserve.pipeline.options import pipeline_options
from predserve.pipeline.sinks import ExportToSnapshot

__all__ = ["ExportToSnapshot", "ReadWorkItems", "build_pipeline", "pipeline_options", "read_row_group", "run_pipeline",
           "writes_in_order"]


class ReadWorkItems(beam.PTransform):
    """``Create(items) | Reshuffle | ParDo(read)``: the source shape that runs on every runner."""

    def __init__(self, items: Sequence[Any], read: beam.DoFn | Callable[[Any], Iterator[pa.Table]]) -> None:
        super().__init__()
        self.items, self.read = list(items), read

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        read = beam.ParDo(self.read) if isinstance(self.read, beam.DoFn) else beam.FlatMap(self.read)
        return (
            pbegin
            | "WorkItems" >> beam.Create(self.items, reshuffle=False)
            | "Spread" >> beam.Reshuffle()
            | "ReadItems" >> read
        )


def read_row_group(item: tuple[str, int]) -> Iterator[pa.Table]:
    """One work item of the warehouse source: a Parquet row group as an Arrow table."""
    path, index = item
    yield pq.ParquetFile(path).read_row_group(index)


def writes_in_order(options: PipelineOptions, runner: PipelineRunner) -> bool:
    """Whether the sink's tables arrive one at a time in the work items' order: on Beam's
    DirectRunner with one worker (its Reshuffle keeps a Create's order), whose writes then come
    in id order from the sorted staging. Any other runner writes in parallel, out of order."""
    from apache_beam.options.pipeline_options import DirectOptions
    from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner, SwitchingDirectRunner

    one_worker = options.view_as(DirectOptions).direct_num_workers == 1
    return type(runner) in (SwitchingDirectRunner, BundleBasedDirectRunner) and one_worker  # (DaskRunner subclasses one)


def build_pipeline(source: Any, options: PipelineOptions, runner: PipelineRunner, sink: beam.PTransform) -> beam.Pipeline:
    """One straight line from source to sink, with a single leaf: the DaskRunner computes only
    the last step's output, so a second branch would silently never run there."""
    pipeline = beam.Pipeline(runner=runner, options=options)
    _ = pipeline | "Read" >> source.read() | "Export" >> sink
    return pipeline


def run_pipeline(source: Any, options: PipelineOptions, runner: PipelineRunner, sink: beam.PTransform) -> None:
    result = None
    try:
        result = build_pipeline(source, options, runner, sink).run()
        result.wait_until_finish()
    except Exception as exc:
        raise ExportError(f"the export pipeline failed: {exc}") from exc
    finally:
        _close_runner_client(result)


def _close_runner_client(result: Any) -> None:
    """The DaskRunner leaves its ``distributed.Client`` connected to the scheduler; close it."""
    client = getattr(result, "client", None)
    if client is not None:
        client.close()
