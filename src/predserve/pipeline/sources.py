"""Where the export reads prediction rows from.

- ``WarehouseSource`` (local): DuckDB runs the query (typically over ML.PREDICT) and writes
  Parquet shards; Beam reads them with ``ReadFromParquetBatched`` as Arrow tables. Key
  statistics (rows, NULL keys, duplicate keys) come from one DuckDB aggregate over the shards.
- ``BigQuerySource`` (``bigquery://PROJECT/DATASET``): Beam's ``ReadFromBigQuery`` with
  DIRECT_READ; the statistics are the same aggregate run in BigQuery. Not exercised in CI
  (no BigQuery here); see docs/pipeline.md.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apache_beam as beam
import duckdb
import pyarrow as pa

from predserve.errors import ExportError


@dataclass
class SourceStats:
    rows: int
    null_keys: int
    duplicate_keys: int
    duplicate_examples: list[Any] = field(default_factory=list)
    schema: pa.Schema | None = None


def _stats_sql(relation: str, key: str) -> str:
    k = '"' + key.replace('"', '""') + '"'
    return f"SELECT count(*), count(*) - count({k}), count({k}) - count(DISTINCT {k}) FROM {relation}"


def _duplicates_sql(relation: str, key: str) -> str:
    k = '"' + key.replace('"', '""') + '"'
    return f"SELECT {k} FROM {relation} WHERE {k} IS NOT NULL GROUP BY {k} HAVING count(*) > 1 ORDER BY {k} LIMIT 5"


class WarehouseSource:
    """Prediction rows from a local DuckDB warehouse, staged as Parquet shards."""

    def __init__(self, warehouse: str, query: str, key: str, workdir: str | None = None) -> None:
        self.warehouse, self.query, self.key = warehouse, query, key
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="predserve-export-"))
        self.pattern = str(self.workdir / "*.parquet")

    def prepare(self) -> SourceStats:
        from predserve.warehouse import Warehouse

        if not Path(self.warehouse).exists():
            raise ExportError(f"warehouse {self.warehouse} does not exist; create it with `predserve sql -w {self.warehouse} ...`")
        with Warehouse(self.warehouse, read_only=True) as wh:
            shards = wh.copy_to_parquet(self.query, self.workdir)
        con = duckdb.connect()
        relation = "read_parquet('{}')".format(self.pattern.replace("'", "''"))
        if not shards:
            return SourceStats(0, 0, 0)
        schema = con.sql(f"SELECT * FROM {relation} LIMIT 0").to_arrow_table().schema
        if self.key not in schema.names:
            raise ExportError(f"key column {self.key!r} is not among the query's columns: {', '.join(schema.names)}")
        rows, nulls, dups = con.sql(_stats_sql(relation, self.key)).fetchall()[0]
        examples = [r[0] for r in con.sql(_duplicates_sql(relation, self.key)).fetchall()] if dups else []
        return SourceStats(rows, nulls, dups, examples, schema)

    def read(self) -> beam.PTransform:
        return beam.io.ReadFromParquetBatched(self.pattern)

    def cleanup(self) -> None:
        for shard in self.workdir.glob("*.parquet"):
            shard.unlink()
        try:
            self.workdir.rmdir()
        except OSError:
            pass


class BigQuerySource:
    """Prediction rows from BigQuery (``bigquery://PROJECT/DATASET``)."""

    def __init__(self, url: str, query: str, key: str) -> None:
        rest = url.removeprefix("bigquery://").strip("/").split("/")
        if len(rest) != 2 or not all(rest):
            raise ExportError(f"bad BigQuery warehouse URL {url!r}: use bigquery://PROJECT/DATASET")
        self.project, self.dataset = rest
        self.query, self.key = query, key

    def prepare(self) -> SourceStats:
        try:
            from google.cloud import bigquery
        except ImportError:
            raise ExportError("the BigQuery source needs `pip install 'predserve[gcp]'`") from None
        client = bigquery.Client(project=self.project)
        config = bigquery.QueryJobConfig(default_dataset=f"{self.project}.{self.dataset}")
        relation = f"({self.query})"
        rows, nulls, dups = list(client.query(_stats_sql(relation, self.key).replace('"', "`"), job_config=config).result())[0]
        examples = []
        if dups:
            examples = [r[0] for r in client.query(_duplicates_sql(relation, self.key).replace('"', "`"), job_config=config).result()]
        return SourceStats(rows, nulls, dups, examples, None)

    def read(self) -> beam.PTransform:
        return _ReadBigQueryAsArrow(self.project, self.dataset, self.query)

    def cleanup(self) -> None:
        pass


class _ReadBigQueryAsArrow(beam.PTransform):
    def __init__(self, project: str, dataset: str, query: str) -> None:
        super().__init__()
        self.project, self.dataset, self.query = project, dataset, query

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "ReadFromBigQuery" >> beam.io.ReadFromBigQuery(
                query=self.query, use_standard_sql=True, method=beam.io.ReadFromBigQuery.Method.DIRECT_READ,
                project=self.project,
            )
            | "Batch" >> beam.BatchElements(min_batch_size=1000, max_batch_size=50_000)
            | "ToArrow" >> beam.Map(pa.Table.from_pylist)
        )


def open_source(warehouse: str, query: str, key: str) -> WarehouseSource | BigQuerySource:
    if warehouse.startswith("bigquery://"):
        return BigQuerySource(warehouse, query, key)
    return WarehouseSource(warehouse, query, key)
