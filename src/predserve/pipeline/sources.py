"""Where the export reads prediction rows from, and the one shape every source reads in.

A source prepares on the driver (runs the query once, counts rows and NULL/duplicate keys,
lists small *work items*) and then reads in the pipeline as

    Create(work items) | Reshuffle | ParDo(item -> Arrow tables)

which every Beam runner can execute: the DaskRunner, for one, translates no Beam ``Read``
(``ReadFromParquet`` and ``ReadFromBigQuery`` would read nothing there).

- ``WarehouseSource`` (a DuckDB file): DuckDB runs the query (typically over ML.PREDICT) into
  Parquet shards in a staging directory; a work item is one Parquet row group.
- ``BigQuerySource`` (``bigquery://PROJECT/DATASET``, in ``pipeline/bigquery.py``): the query
  is materialised once into a temporary table; a work item is one Storage Read API stream.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from predserve.errors import ExportError
from predserve.identifiers import Dialect
from predserve.keys import key_columns, key_sql
from predserve.pipeline.profile import compute_profile, to_duckdb
from predserve.pipeline.render import id_sql
from predserve.pipeline.staging import create_staging_dir, remove_abandoned_staging
from predserve.store.reports import Profile

if TYPE_CHECKING:
    import apache_beam as beam

# Rows per Parquet row group, so per work item: small enough that a 100k-row export still
# gives every worker something to do, large enough that per-item overhead stays negligible.
ROW_GROUP_ROWS = 50_000
# DuckDB's memory while it stages the query's rows and counts their keys (it spills the rest of
# its sort and of its distinct count under the staging directory), so the export's peak memory
# does not grow with the row count.
STAGING_MEMORY_LIMIT = "2GB"


@dataclass
class SourceStats:
    rows: int
    null_keys: int
    duplicate_keys: int
    duplicate_examples: list[Any] = field(default_factory=list)
    schema: pa.Schema | None = None


class Source(Protocol):
    def prepare(self) -> SourceStats:
        """Run the query once; statistics of exactly the rows ``read`` will yield."""

    def read(self) -> "beam.PTransform":
        """PBegin -> PCollection of ``pa.Table`` (``job.ReadWorkItems``)."""

    def profile(self) -> tuple[Profile, list[str]]:
        """The profile of the rows ``read`` yields, and the drift sample's ids (profile.py).

        Called after ``prepare``, in a thread of its own while the pipeline runs."""

    def cancel(self) -> None:
        """Make a ``prepare`` running in another thread stop soon (it raises); a no-op where it cannot."""

    def cleanup(self) -> None:
        """Remove what ``prepare`` created; called whether the export succeeded or not."""


def stats_sql(relation: str, key: str | Sequence[str], dialect: Dialect = "duckdb") -> str:
    """Rows, NULL keys and duplicate keys of ``relation`` in one aggregate (DuckDB or BigQuery).

    A composite key is checked whole: its id (``keys.key_sql``) is NULL when any of its
    columns is, and two rows share it only when they share every column."""
    k = key_sql(key_columns(key), dialect)
    return f"SELECT count(*), count(*) - count({k}), count({k}) - count(DISTINCT {k}) FROM {relation}"


def duplicates_sql(relation: str, key: str | Sequence[str], dialect: Dialect = "duckdb") -> str:
    k = key_sql(key_columns(key), dialect)
    return f"SELECT {k} AS id FROM {relation} WHERE {k} IS NOT NULL GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT 5"


def check_key(columns: Sequence[str], key: str | Sequence[str]) -> None:
    for column in key_columns(key):
        if column not in columns:
            raise ExportError(f"key column {column!r} is not among the query's columns: {', '.join(columns)}")


class WarehouseSource:
    """Prediction rows from a local DuckDB warehouse, staged as Parquet shards.

    Workers read the shards from the staging directory, so they must share the driver's file
    system (DirectRunner, or Dask workers on the same machine).
    """

    def __init__(self, warehouse: str, query: str, key: str | Sequence[str]) -> None:
        self.warehouse, self.query, self.key = warehouse, query, key_columns(key)
        self.workdir: Path | None = None
        self.items: list[tuple[str, int]] = []
        self.schema: pa.Schema | None = None
        self._cancelled = threading.Event()
        self._running: duckdb.DuckDBPyConnection | None = None  # the connection prepare() is using

    def prepare(self) -> SourceStats:
        # Imported when used: an export from BigQuery (and the API, which reads pipeline.drift) never loads the warehouse.
        from predserve.warehouse import Warehouse

        if not Path(self.warehouse).exists():
            raise ExportError(f"warehouse {self.warehouse} does not exist; create it with `predserve sql -w {self.warehouse} ...`")
        remove_abandoned_staging()  # left by exports that were killed outright
        self.workdir = create_staging_dir()
        spill = self.workdir / "spill"  # where DuckDB spills what exceeds STAGING_MEMORY_LIMIT
        with Warehouse(self.warehouse, read_only=True) as wh:
            quoted = str(spill).replace("'", "''")
            wh.con.execute(f"SET memory_limit = '{STAGING_MEMORY_LIMIT}'; SET temp_directory = '{quoted}'")
            self._running = wh.con
            try:
                self._check_cancelled()
                shards = wh.copy_to_parquet(self.query, self.workdir / "shards", rows_per_file=ROW_GROUP_ROWS, order_by=self._id_order)
            finally:
                self._running = None
        self._check_cancelled()
        if not shards:
            return SourceStats(0, 0, 0)
        self.items = [(str(s), i) for s in shards for i in range(pq.ParquetFile(s).num_row_groups)]
        # The same limit for the key statistics: COUNT(DISTINCT id) of 100M ids is a 4 GB hash table otherwise.
        con = duckdb.connect(config={"memory_limit": STAGING_MEMORY_LIMIT, "temp_directory": str(spill)})
        relation = self._relation()
        schema = self.schema = con.sql(f"SELECT * FROM {relation} LIMIT 0").to_arrow_table().schema
        rows, nulls, dups = con.sql(stats_sql(relation, self.key)).fetchall()[0]
        examples = [r[0] for r in con.sql(duplicates_sql(relation, self.key)).fetchall()] if dups else []
        return SourceStats(rows, nulls, dups, examples, schema)

    def cancel(self) -> None:
        self._cancelled.set()
        running = self._running
        if running is not None:
            running.interrupt()  # DuckDB's way to stop a query from another thread

    def _check_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise ExportError("the export's query was cancelled")

    def _id_order(self, columns: list[str]) -> str:
        """Rows are staged in id order: each work item is then one range of ids, which the LMDB
        writer stores densely (store/lmdb.py)."""
        check_key(columns, self.key)
        return id_sql(self.key)

    def _relation(self) -> str:
        assert self.workdir is not None
        return "read_parquet('{}')".format(str(self.workdir / "shards" / "*.parquet").replace("'", "''"))

    def read(self) -> "beam.PTransform":
        from predserve.pipeline.job import ReadWorkItems, read_row_group

        return ReadWorkItems(self.items, read_row_group)

    def profile(self) -> tuple[Profile, list[str]]:
        """DuckDB over the staged shards, in a connection of its own and on one core: it runs in a
        thread beside the pipeline, which has work for the others."""
        assert self.schema is not None
        con = duckdb.connect(config={"threads": 1})
        try:
            con.sql(f"CREATE VIEW export_rows AS SELECT * FROM {self._relation()}")
            return compute_profile(lambda sql: con.sql(to_duckdb(sql)).fetchall(), self.schema, self.key, "export_rows")
        finally:
            con.close()

    def cleanup(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
