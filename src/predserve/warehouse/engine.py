"""The warehouse: BigQuery ML SQL on an embedded DuckDB file.

``Warehouse(path).sql(text)`` runs one statement or a script. Model statements (CREATE MODEL,
DROP MODEL) are handled here; every other statement has its ML.* calls replaced by
registered Arrow relations and is transpiled from BigQuery SQL to DuckDB by sqlglot.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pyarrow as pa
import sqlglot
import sqlglot.expressions as exp
from sqlglot.errors import ParseError
from sqlglot.tokens import TokenType

from predserve.errors import ModelError, PredserveError, SQLError
from predserve.warehouse import catalog
from predserve.warehouse.models import TrainedModel, train, weights_table
from predserve.warehouse.options import literal_value, resolve_options, warm_start_options
from predserve.warehouse.preprocessing import window_expression
from predserve.warehouse.parsing import MLCall, Statement, extract_ml_calls, object_name, split_statements

PREDICT_BATCH_ROWS = 65_536
EMPTY = pa.table({})


def transpile(sql: str) -> str:
    """BigQuery SQL -> DuckDB SQL. ``project.dataset.table`` becomes ``dataset.table``."""
    try:
        trees = [t for t in sqlglot.parse(sql, read="bigquery") if t is not None]
    except ParseError as exc:
        err = exc.errors[0] if exc.errors else {}
        where = f" at line {err.get('line')}, column {err.get('col')}" if err.get("line") else ""
        raise SQLError(f"syntax error{where}: {err.get('description', exc)}") from None
    if len(trees) != 1:
        raise SQLError(f"expected one statement, found {len(trees)}")
    # BigQuery ML's preprocessing functions in a plain query: window aggregates over its rows.
    tree = trees[0].transform(window_expression)
    for table in tree.find_all(exp.Table):
        if table.args.get("catalog") is not None:
            table.set("catalog", None)
    return tree.sql(dialect="duckdb")


class Warehouse:
    """An embedded DuckDB warehouse file that speaks BigQuery ML SQL."""

    def __init__(self, path: str | Path = ":memory:", read_only: bool = False) -> None:
        self.path = str(path)
        try:
            self.con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.Error as exc:
            raise SQLError(f"cannot open warehouse {self.path}: {exc}") from None
        if not read_only:
            catalog.ensure_catalog(self.con)
        # Errors raised while DuckDB pulls ML.PREDICT batches reach us wrapped in a DuckDB
        # error with a Python traceback; the original is kept here to be raised instead.
        self._stream_errors: list[PredserveError] = []

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Warehouse":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- public API -------------------------------------------------------------------
    def sql(self, text: str) -> pa.Table:
        """Run one statement or a ``;``-separated script; return the last statement's result."""
        statements = split_statements(text)
        if not statements:
            raise SQLError("no SQL statement given")
        result = EMPTY
        for number, statement in enumerate(statements, 1):
            self._stream_errors.clear()
            try:
                result = self._run(statement)
            except PredserveError as exc:
                raise type(exc)(f"{_describe(statement, number, len(statements))}: {exc}") from None
            except duckdb.Error as exc:
                cause: Exception = self._stream_errors[0] if self._stream_errors else SQLError(str(exc))
                raise type(cause)(f"{_describe(statement, number, len(statements))}: {cause}") from None
        return result

    def model(self, name: str) -> TrainedModel:
        return catalog.load(self.con, object_name(name))

    def copy_to_parquet(self, query: str, directory: str | Path, rows_per_file: int = 250_000) -> list[Path]:
        """Write a query's result as Parquet shards under ``directory`` (the export's local source)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with self._prepared(self.con, query) as duck_sql:
            try:
                target = str(directory).replace("'", "''")
                self.con.execute(
                    f"COPY ({duck_sql}) TO '{target}' (FORMAT PARQUET, FILE_SIZE_BYTES '16MB', "
                    f"ROW_GROUP_SIZE {rows_per_file}, OVERWRITE_OR_IGNORE, FILENAME_PATTERN 'part-{{i}}')"
                )
            except duckdb.Error as exc:
                raise SQLError(f"export query failed: {exc}") from None
        return sorted(directory.glob("*.parquet"))

    def reader(self, query: str, batch_rows: int = PREDICT_BATCH_ROWS) -> pa.RecordBatchReader:
        """Stream a query's result as Arrow record batches."""
        cursor = self.con.cursor()
        duck_sql = self._register(cursor, query)
        return cursor.sql(duck_sql).to_arrow_reader(batch_rows)

    # ---- statements --------------------------------------------------------------------
    def _run(self, statement: Statement) -> pa.Table:
        words = [t.text.upper() for t in statement.tokens[:6]]
        if words[:1] == ["CREATE"] and "MODEL" in words:
            return self._create_model(statement)
        if words[:2] == ["DROP", "MODEL"]:
            return self._drop_model(statement)
        return self._query(statement.text)

    def _query(self, sql: str) -> pa.Table:
        with self._prepared(self.con, sql) as duck_sql:
            relation = self.con.sql(duck_sql)
            return relation.to_arrow_table() if relation is not None else EMPTY

    def _create_model(self, statement: Statement) -> pa.Table:
        head, query = _split_create_model(statement)
        tree = sqlglot.parse_one(head + " AS SELECT 1", read="bigquery")
        if not isinstance(tree, exp.Create) or str(tree.args.get("kind", "")).upper() != "MODEL":
            raise SQLError("could not read the CREATE MODEL statement; expected CREATE [OR REPLACE] MODEL name OPTIONS(...) AS query")
        name = ".".join(p.name for p in tree.this.parts) if isinstance(tree.this, exp.Table) else tree.this.sql()
        properties = tree.args.get("properties")
        raw: dict[str, Any] = {}
        transform: list[exp.Expression] | None = None
        for prop in properties.expressions if properties else []:
            if isinstance(prop, exp.TransformModelProperty):
                transform = list(prop.expressions)
                continue
            key = prop.this.name if hasattr(prop.this, "name") else str(prop.this)
            raw[key] = literal_value(prop.args["value"], key)
        options = resolve_options(raw)
        replace, if_not_exists = bool(tree.args.get("replace")), bool(tree.args.get("exists"))
        if replace and if_not_exists:
            raise SQLError("use either OR REPLACE or IF NOT EXISTS, not both")
        if if_not_exists and catalog.exists(self.con, name):
            return EMPTY
        previous = None
        if options.get("warm_start"):
            if not catalog.exists(self.con, name):
                raise ModelError(f"warm_start=TRUE continues training model {name}, which does not exist; train it once without warm_start")
            if not replace:
                raise ModelError(f"model {name} exists: a warm start is CREATE OR REPLACE MODEL {name} OPTIONS(warm_start=TRUE, ...)")
            previous = catalog.load(self.con, name)
            options = warm_start_options(previous.options, raw)
        table = self._query(query)
        model = train(name, options, table, transform, previous)
        catalog.save(self.con, model, replace=replace)
        return EMPTY

    def _drop_model(self, statement: Statement) -> pa.Table:
        words = [t.text for t in statement.tokens[2:]]
        if_exists = [w.upper() for w in words[:2]] == ["IF", "EXISTS"]
        name = object_name("".join(words[2:] if if_exists else words))
        if not name:
            raise SQLError("DROP MODEL needs a model name")
        catalog.drop(self.con, name, if_exists)
        return EMPTY

    # ---- ML.* relations ----------------------------------------------------------------
    @contextmanager
    def _prepared(self, con: duckdb.DuckDBPyConnection, sql: str) -> Iterator[str]:
        """Register the statement's ML.* relations on ``con``; yield the DuckDB SQL."""
        names: list[str] = []
        try:
            yield self._register(con, sql, names)
        finally:
            for name in names:
                con.unregister(name)

    def _register(self, con: duckdb.DuckDBPyConnection, sql: str, names: list[str] | None = None) -> str:
        rewritten, calls = extract_ml_calls(sql)
        duck_sql = transpile(rewritten)
        for call in calls:
            con.register(call.placeholder, self._ml_relation(call))
            if names is not None:
                names.append(call.placeholder)
        return duck_sql

    def _settings(self, call: MLCall) -> dict[str, Any]:
        if not call.settings_sql:
            return {}
        value = self.con.sql(transpile(f"SELECT {call.settings_sql} AS s")).fetchall()[0][0]
        return {k.lower(): v for k, v in (value or {}).items()}

    def _ml_relation(self, call: MLCall) -> pa.Table | pa.RecordBatchReader:
        model = catalog.load(self.con, call.model)
        settings = self._settings(call)
        if call.function == "PREDICT":
            if call.source_sql is None:
                raise ModelError(f"ML.PREDICT(MODEL {call.model}, ...) needs input rows: TABLE name or (query)")
            return self._predict_stream(model, call.source_sql, settings.get("threshold"))
        if call.function == "EVALUATE":
            if call.source_sql is None:
                return model.evaluation_table()
            table = self._query(call.source_sql)
            return pa.Table.from_pylist([model.evaluate(table, settings.get("threshold"))])
        if call.function == "TRAINING_INFO":
            return pa.Table.from_pylist([{"training_run": 0, **row} for row in model.training_info])  # older models lack training_run
        if call.function == "FEATURE_INFO":
            return pa.Table.from_pylist(model.feature_info)
        return weights_table(model, standardize=bool(settings.get("standardize", False)))

    def _predict_stream(self, model: TrainedModel, source_sql: str, threshold: float | None) -> pa.RecordBatchReader:
        source = self.reader(source_sql)
        schema = model.predict_batch(pa.RecordBatch.from_pylist([], schema=source.schema), threshold).schema

        def batches() -> Iterator[pa.RecordBatch]:
            for batch in source:
                try:
                    yield model.predict_batch(batch, threshold)
                except PredserveError as exc:
                    self._stream_errors.append(exc)
                    raise

        return pa.RecordBatchReader.from_batches(schema, batches())


def _split_create_model(statement: Statement) -> tuple[str, str]:
    """Cut ``CREATE MODEL ... AS query`` at its top-level AS into (head, query)."""
    depth = 0
    for tok in statement.tokens:
        if tok.token_type == TokenType.L_PAREN:
            depth += 1
        elif tok.token_type == TokenType.R_PAREN:
            depth -= 1
        elif tok.token_type == TokenType.ALIAS and depth == 0:
            start = tok.start - statement.offset
            return statement.text[:start], statement.text[tok.end + 1 - statement.offset:]
    raise SQLError("CREATE MODEL needs a training query: CREATE MODEL name OPTIONS(...) AS SELECT ...")


def _describe(statement: Statement, number: int, total: int) -> str:
    snippet = " ".join(statement.text.split())
    snippet = snippet if len(snippet) <= 80 else snippet[:77] + "..."
    where = f"statement {number} of {total}" if total > 1 else "statement"
    return f"{where} ({snippet!r})"
