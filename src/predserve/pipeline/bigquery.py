"""The BigQuery source (``-w bigquery://PROJECT/DATASET``), read over the Storage Read API.

    prepare()   CREATE TABLE `PROJECT.DATASET._predserve_export_<hex>` OPTIONS(expiration...) AS <query>
                (the query's only run; unqualified table names resolve against DATASET),
                then the key statistics on that table, then one Storage Read session on it
                whose Arrow schema is the export's schema
    read()      Create(read streams) | Reshuffle | ParDo(ReadStream): each stream's Arrow record
                batches, grouped into tables like the Parquet source's
    cleanup()   DROP the temporary table, whether the export succeeded or not; its expiration
                removes it even if the driver is killed outright

Endpoints: the client libraries' defaults with Application Default Credentials; with
``BIGQUERY_EMULATOR_HOST=HOST:PORT`` (REST) and ``BIGQUERY_STORAGE_EMULATOR_HOST=HOST:PORT``
(Storage Read, gRPC) set, those endpoints with anonymous credentials and no TLS. The driver
reads the variables; workers get the Storage endpoint with their work, not from their own
environment.
"""

from __future__ import annotations

import logging
import math
import os
import uuid
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import apache_beam as beam
import pyarrow as pa

from predserve.errors import ExportError
from predserve.identifiers import quote_identifier
from predserve.keys import key_columns
from predserve.pipeline.profile import compute_profile
from predserve.pipeline.sources import (
    ROW_GROUP_ROWS,
    ReadWorkItems,
    SourceStats,
    check_key,
    duplicates_sql,
    stats_sql,
)
from predserve.store.reports import Profile

log = logging.getLogger("predserve.pipeline")
REST_EMULATOR, STORAGE_EMULATOR = "BIGQUERY_EMULATOR_HOST", "BIGQUERY_STORAGE_EMULATOR_HOST"
TEMP_TABLE_PREFIX = "_predserve_export_"
TEMP_TABLE_HOURS = 24  # longer than any export; a killed driver's table is gone within a day
MAX_STREAMS = 1000
API_TIMEOUT = 120.0  # seconds any one API call (with its retries) may take, so a dead endpoint fails


def _gcp_libraries() -> tuple[Any, Any]:
    try:
        from google.cloud import bigquery, bigquery_storage_v1
    except ImportError:
        raise ExportError("reading from BigQuery needs its client libraries: pip install 'predserve[gcp]'") from None
    return bigquery, bigquery_storage_v1


@contextmanager
def google_errors(what: str) -> Iterator[None]:
    """Google client errors as ExportErrors that say what was refused and why."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exceptions

    try:
        yield
    except auth_exceptions.DefaultCredentialsError:
        raise ExportError(
            "no Google Cloud credentials for BigQuery: run `gcloud auth application-default login` or set "
            f"GOOGLE_APPLICATION_CREDENTIALS (for an emulator, set {REST_EMULATOR} and {STORAGE_EMULATOR})"
        ) from None
    except gexc.GoogleAPICallError as exc:
        raise ExportError(f"{what}: {exc.message}") from None
    except gexc.RetryError as exc:
        raise ExportError(f"{what}: BigQuery did not answer within {API_TIMEOUT:.0f} s ({exc.cause})") from None


def _emulator_endpoint(variable: str) -> str | None:
    value = os.environ.get(variable, "").strip()
    return value or None


def rest_client(project: str) -> Any:
    """A BigQuery REST client: the emulator at $BIGQUERY_EMULATOR_HOST, else ADC and Google's endpoint."""
    bigquery, _ = _gcp_libraries()
    host = _emulator_endpoint(REST_EMULATOR)
    if host is None:
        return bigquery.Client(project=project)
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    endpoint = host if "://" in host else f"http://{host}"
    return bigquery.Client(project=project, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=endpoint))


def read_client(emulator_host: str | None) -> Any:
    """A Storage Read client: an insecure channel to ``emulator_host``, else ADC and Google's endpoint."""
    _, storage = _gcp_libraries()
    if emulator_host is None:
        return storage.BigQueryReadClient()
    import grpc
    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport

    return storage.BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=grpc.insecure_channel(emulator_host)))


class ReadStream(beam.DoFn):
    """One work item: a Storage Read stream -> Arrow tables of up to ``batch_rows`` rows."""

    def __init__(self, arrow_schema: bytes, emulator_host: str | None, batch_rows: int = ROW_GROUP_ROWS) -> None:
        self.arrow_schema, self.emulator_host, self.batch_rows = arrow_schema, emulator_host, batch_rows

    def setup(self) -> None:
        self._client = read_client(self.emulator_host)
        self._schema = pa.ipc.read_schema(pa.py_buffer(self.arrow_schema))

    def process(self, stream: str) -> Iterator[pa.Table]:  # type: ignore[override]
        pending: list[pa.RecordBatch] = []
        rows = 0
        # ReadRowsStream resumes at the last offset when a transient error breaks the stream.
        for response in self._client.read_rows(stream, timeout=API_TIMEOUT):
            serialized = response.arrow_record_batch.serialized_record_batch
            if not serialized:
                continue
            batch = pa.ipc.read_record_batch(pa.py_buffer(serialized), self._schema)
            pending.append(batch)
            rows += batch.num_rows
            if rows >= self.batch_rows:
                yield pa.Table.from_batches(pending, self._schema)
                pending, rows = [], 0
        if pending:
            yield pa.Table.from_batches(pending, self._schema)

    def teardown(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.transport.close()


class BigQuerySource:
    """Prediction rows from BigQuery: the query materialised once, read over the Storage Read API."""

    def __init__(self, url: str, query: str, key: str | Sequence[str]) -> None:
        rest = url.removeprefix("bigquery://").strip("/").split("/")
        if len(rest) != 2 or not all(rest):
            raise ExportError(f"bad BigQuery warehouse URL {url!r}: use bigquery://PROJECT/DATASET")
        self.project, self.dataset = rest
        self.query, self.key = query.strip().rstrip(";").strip(), key_columns(key)
        self.table = f"{self.project}.{self.dataset}.{TEMP_TABLE_PREFIX}{uuid.uuid4().hex[:16]}"
        self.relation = quote_identifier(self.table, "bigquery")  # the table in SQL: one quoted path
        self.schema: pa.Schema | None = None
        self.streams: list[str] = []
        self.arrow_schema = b""
        self._client: Any = None
        self._created = False

    def prepare(self) -> SourceStats:
        self._bigquery, _ = _gcp_libraries()
        with google_errors("cannot reach BigQuery"):
            self._client = rest_client(self.project)
        self._created = True  # from here on, cleanup drops the table (a no-op if it never came to be)
        config = self._bigquery.QueryJobConfig(default_dataset=f"{self.project}.{self.dataset}")
        self._run(
            f"CREATE TABLE {self.relation}\n"
            f"OPTIONS (expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL {TEMP_TABLE_HOURS} HOUR))\n"
            f"AS\n{self.query}\n",
            config,
        )
        schema = self.schema = self._open_read_session()
        check_key(schema, self.key)
        rows, nulls, dups = self._run(stats_sql(self.relation, self.key, dialect="bigquery"))[0]
        examples = [r[0] for r in self._run(duplicates_sql(self.relation, self.key, dialect="bigquery"))] if dups else []
        if rows and not self.streams:
            raise ExportError(f"BigQuery returned no read streams for {rows} rows of {self.table}")
        return SourceStats(int(rows), int(nulls), int(dups), examples, schema)

    def _open_read_session(self) -> pa.Schema:
        """One Storage Read session on the temporary table: its streams are the work items."""
        from google.cloud.bigquery_storage_v1 import types

        project, dataset, table = self.table.split(".")
        with google_errors(f"BigQuery refused a read session on {self.table}"):
            rows = self._client.get_table(self.table, timeout=API_TIMEOUT).num_rows or 0
            client = read_client(_emulator_endpoint(STORAGE_EMULATOR))
        try:
            with google_errors(f"BigQuery refused a read session on {self.table}"):
                session = client.create_read_session(
                    parent=f"projects/{self.project}",
                    read_session=types.ReadSession(
                        table=f"projects/{project}/datasets/{dataset}/tables/{table}", data_format=types.DataFormat.ARROW,
                    ),
                    max_stream_count=min(MAX_STREAMS, max(1, math.ceil(rows / ROW_GROUP_ROWS))),
                    timeout=API_TIMEOUT,
                )
        finally:
            client.transport.close()
        self.streams = [s.name for s in session.streams]
        self.arrow_schema = bytes(session.arrow_schema.serialized_schema)
        schema = pa.ipc.read_schema(pa.py_buffer(self.arrow_schema))
        return schema.remove_metadata()

    def _run(self, sql: str, config: Any = None, what: str = "the export query") -> list[Any]:
        with google_errors(f"BigQuery refused {what}"):
            retry = self._bigquery.DEFAULT_RETRY.with_timeout(API_TIMEOUT)
            job = self._client.query(sql, job_config=config, retry=retry, timeout=API_TIMEOUT)
            return list(job.result(retry=retry))

    def read(self) -> beam.PTransform:
        return ReadWorkItems(self.streams, ReadStream(self.arrow_schema, _emulator_endpoint(STORAGE_EMULATOR)))

    def profile(self) -> tuple[Profile, list[str]]:
        """The profile's statements as BigQuery jobs on the temporary table."""
        assert self.schema is not None, "prepare() opens the read session first"

        def run(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(row.values()) for row in self._run(sql, what="the profile query")]

        return compute_profile(run, self.schema, self.key, self.relation)

    def cleanup(self) -> None:
        if not self._created:
            return
        try:
            self._client.delete_table(self.table, not_found_ok=True, timeout=API_TIMEOUT)
        except Exception as exc:  # the export's own outcome is what to report; the table expires anyway
            log.warning("could not drop the temporary table %s (%s); it expires within %d hours", self.table, exc, TEMP_TABLE_HOURS)
        finally:
            self._client.close()
