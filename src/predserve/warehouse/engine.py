"""The warehouse: BigQuery ML SQL on an embedded DuckDB file.

``Warehouse(path).sql(text)`` reads a script once with predserve's dialect (sql/dialect.py) and
runs each statement by its node type: DECLARE and SET (sql/scripting.py), CREATE / ALTER / DROP
MODEL (here), DESCRIBE (in BigQuery's type names), and every other statement as a query. A
query's ML table functions are computed first, outermost first, each registered as an Arrow
relation under a placeholder name (ML.PREDICT as a reader that scores batch by batch, so it
streams), and so is each INFORMATION_SCHEMA view (sql/information_schema.py); the input query of
an ML function carries the CTEs it uses from around the call. Then script variables are
replaced by their values, BigQuery's UNNEST semantics applied, and sqlglot writes the tree as
DuckDB SQL.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import duckdb
import numpy as np
import pyarrow as pa
import sqlglot.expressions as exp

from predserve.errors import ModelError, PredserveError, SQLError
from predserve.warehouse.ml.functions import HANDLERS, MLCall, read_settings
from predserve.warehouse.models import catalog
from predserve.warehouse.models.options import alter_options, literal_value, resolve_options, warm_start_options
from predserve.warehouse.models.preprocessing import window_expression
from predserve.warehouse.models.trained import TrainedModel
from predserve.warehouse.models.training import train
from predserve.warehouse.sql import hashing, information_schema
from predserve.warehouse.sql.dialect import ML_NODES, AlterModel, Statement, ml_function_name, parse_script, parse_table_name
from predserve.warehouse.sql.messages import engine_message
from predserve.warehouse.sql.names import model_name
from predserve.warehouse.sql.scopes import Scopes, visible_ctes
from predserve.warehouse.sql.scripting import Script
from predserve.warehouse.sql.syntax import PROCEDURAL_MESSAGE
from predserve.warehouse.sql.translate import refuse_geography, to_duckdb

if TYPE_CHECKING:
    from duckdb.sqltypes import DuckDBPyType

PREDICT_BATCH_ROWS = 65_536
EMPTY = pa.table({})
_placeholder_ids = count(1)


class Warehouse:
    """An embedded DuckDB warehouse file that speaks BigQuery ML SQL."""

    def __init__(self, path: str | Path = ":memory:", read_only: bool = False) -> None:
        self.path = str(path)
        try:
            self.con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.Error as exc:
            raise SQLError(f"cannot open warehouse {self.path}: {engine_message(exc)}") from None
        hashing.register(self.con)  # BigQuery's FARM_FINGERPRINT, which ML.HASH_BUCKETIZE uses
        if not read_only:
            catalog.ensure_catalog(self.con)
        # Errors raised while DuckDB pulls ML.PREDICT batches reach us wrapped in a DuckDB
        # error; the original is kept here to be raised instead.
        self._failures: list[PredserveError] = []
        self._placeholders: dict[str, str] = {}  # registered relation -> "ML.PREDICT(MODEL m)"

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Warehouse":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- public API -------------------------------------------------------------------
    def sql(self, text: str) -> pa.Table:
        """Run one statement or a ``;``-separated script; return the last statement's result."""
        statements = parse_script(text)
        if not statements:
            raise SQLError("no SQL statement given")
        script = Script()
        result = EMPTY
        for statement in statements:
            with self._reported(statement):
                result = self._run(statement.tree, script)
        return result

    def model(self, name: str) -> TrainedModel:
        return self._load_model(model_name(parse_table_name(name)))

    def copy_to_parquet(self, query: str, directory: str | Path, rows_per_file: int = 250_000) -> list[Path]:
        """Write a query's result as Parquet shards under ``directory`` (the export's local source)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        statement = _one_query(query)
        with self._reported(statement), self._prepared(self.con, statement.tree, Script()) as duck_sql:
            target = str(directory).replace("'", "''")
            self.con.execute(
                f"COPY ({duck_sql}) TO '{target}' (FORMAT PARQUET, FILE_SIZE_BYTES '16MB', "
                f"ROW_GROUP_SIZE {rows_per_file}, OVERWRITE_OR_IGNORE, FILENAME_PATTERN 'part-{{i}}')"
            )
        return sorted(directory.glob("*.parquet"))

    def reader(self, query: str, batch_rows: int = PREDICT_BATCH_ROWS) -> pa.RecordBatchReader:
        """Stream a query's result as Arrow record batches."""
        statement = _one_query(query)
        with self._reported(statement):
            return self._reader(statement.tree, Script(), batch_rows)

    # ---- statements, by node type -----------------------------------------------------------
    def _run(self, tree: exp.Expression, script: Script) -> pa.Table:
        if isinstance(tree, exp.Declare):
            script.declare(tree, lambda e: self._evaluate(e, script), _duckdb_type)
            return EMPTY
        if isinstance(tree, exp.Set):
            script.set(tree, lambda e: self._evaluate(e, script))
            return EMPTY
        script.statement_started()
        if isinstance(tree, exp.Create) and str(tree.args.get("kind", "")).upper() == "MODEL":
            return self._create_model(tree, script)
        if isinstance(tree, exp.Drop) and str(tree.args.get("kind", "")).upper() == "MODEL":
            return self._drop_model(tree)
        if isinstance(tree, AlterModel):
            return self._alter_model(tree, script)
        if isinstance(tree, exp.Describe):
            return information_schema.describe(self._query(tree, script))
        if isinstance(tree, exp.Command):
            raise SQLError(PROCEDURAL_MESSAGE.format(word=tree.name.upper()))
        return self._query(tree, script)

    def _query(self, tree: exp.Expression, script: Script) -> pa.Table:
        with self._prepared(self.con, tree, script) as duck_sql:
            relation = self.con.sql(duck_sql)
            return relation.to_arrow_table() if relation is not None else EMPTY

    def _create_model(self, tree: exp.Create, script: Script) -> pa.Table:
        name = model_name(tree.this)
        raw, transform = _model_options(tree)
        query = tree.expression
        if query is None:
            raise SQLError(f"CREATE MODEL {name} needs a training query: ... OPTIONS(...) AS SELECT ... "
                           "(imported and remote models are not supported)")
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
            previous = self._load_model(name)
            options = warm_start_options(previous.options, raw)
        table = self._query(query, script)
        model = train(name, options, table, transform, previous)
        catalog.save(self.con, model, replace=replace)
        return EMPTY

    def _drop_model(self, tree: exp.Drop) -> pa.Table:
        tables = tree.args.get("tables") or [tree.this]
        for table in tables:
            catalog.drop(self.con, model_name(table), bool(tree.args.get("exists")))
        return EMPTY

    def _alter_model(self, tree: AlterModel, script: Script) -> pa.Table:
        name = model_name(tree.this)
        if tree.args.get("exists") and not catalog.exists(self.con, name):
            return EMPTY
        model = catalog.load(self.con, name)  # an expired model can still be given a new expiration
        values = {}
        for prop in tree.expressions:
            key = _option_name(prop)
            value = prop.args["value"]
            # expiration_timestamp is an expression (TIMESTAMP '...', TIMESTAMP_ADD(...)): evaluate it
            values[key] = self._evaluate([value], script)[0][0] if key.lower() == "expiration_timestamp" \
                else literal_value(value, key)
        model.options.update(alter_options(values))
        catalog.save(self.con, model, replace=True)
        return EMPTY

    def _load_model(self, name: str) -> TrainedModel:
        model = catalog.load(self.con, name)
        expires = model.options.get("expiration_timestamp")
        if expires and datetime.fromisoformat(expires) <= datetime.now(timezone.utc):
            raise ModelError(f"model {name} expired at {expires} (ALTER MODEL set its expiration_timestamp); "
                             "train it again with CREATE OR REPLACE MODEL")
        return model

    # ---- queries ---------------------------------------------------------------------------
    @contextmanager
    def _prepared(self, con: duckdb.DuckDBPyConnection, tree: exp.Expression, script: Script) -> Iterator[str]:
        """Register the statement's ML relations on ``con``; yield its DuckDB SQL."""
        names: list[str] = []
        try:
            yield self._to_duckdb(con, tree, script, names)
        finally:
            for name in names:
                con.unregister(name)

    def _reader(self, tree: exp.Expression, script: Script, batch_rows: int = PREDICT_BATCH_ROWS) -> pa.RecordBatchReader:
        """A query's rows as a stream, on a cursor of its own (its ML relations live with it)."""
        cursor = self.con.cursor()
        return cursor.sql(self._to_duckdb(cursor, tree, script, [])).to_arrow_reader(batch_rows)

    def _evaluate(self, expressions: list[exp.Expression], script: Script) -> list[tuple[Any, DuckDBPyType]]:
        """Values of expressions (variables' values, ML settings), each with its DuckDB type."""
        select = exp.Select(expressions=[e.copy().as_(f"v{i}") for i, e in enumerate(expressions)])
        with self._prepared(self.con, select, script) as duck_sql:
            relation = self.con.sql(duck_sql)
            rows = relation.fetchall()
            return list(zip(rows[0] if rows else (None,) * len(expressions), relation.types))

    def _to_duckdb(self, con: duckdb.DuckDBPyConnection, tree: exp.Expression, script: Script, names: list[str]) -> str:
        for node in [n for n in tree.find_all(*ML_NODES) if not _inside_ml_function(n)]:
            placement = node.parent
            if not isinstance(placement, exp.Table):
                raise SQLError(f"ML.{ml_function_name(node)} is a table function: use it in FROM, as in "
                               f"SELECT * FROM ML.{ml_function_name(node)}(MODEL ...)")
            name = f"__predserve_ml_{next(_placeholder_ids)}"
            con.register(name, self._ml_relation(node, script))
            names.append(name)
            self._placeholders[name] = f"ML.{ml_function_name(node)}(MODEL {node.this.sql('bigquery')})"
            placement.replace(exp.Table(this=exp.to_identifier(name), alias=placement.args.get("alias")))
        for table in [t for t in tree.find_all(exp.Table) if information_schema.view_name(t)]:
            name = f"__predserve_info_{next(_placeholder_ids)}"
            con.register(name, information_schema.rows(con, table))
            names.append(name)
            self._placeholders[name] = f"INFORMATION_SCHEMA.{information_schema.view_name(table)}"
            table.replace(exp.Table(this=exp.to_identifier(name), alias=table.args.get("alias")))
        scopes = Scopes(con)
        tree = script.substitute(tree, scopes)
        scopes.explode_struct_unnests(tree)
        return transpile(tree)

    def _ml_relation(self, node: exp.Expression, script: Script) -> pa.Table | pa.RecordBatchReader:
        function = ml_function_name(node)
        model = self._load_model(model_name(node.this))
        settings = read_settings(function, node.args.get("params_struct"),
                                 lambda values: [v for v, _ in self._evaluate(values, script)])
        rows = None
        if node.args.get("expression") is not None:
            query = _input_query(node)
            rows = lambda: self._reader(query, script)  # noqa: E731
        thresholds = None
        if node.args.get("thresholds") is not None:
            thresholds = self._generate_array(function, node.args["thresholds"], script)
        return HANDLERS[function](MLCall(function, model, settings, rows, self._failures, thresholds))

    def _generate_array(self, function: str, node: exp.Expression, script: Script) -> list[float]:
        """GENERATE_ARRAY(start, end [, step]) of numbers, as BigQuery computes it: start, start +
        step, ... up to end (inclusive)."""
        if not isinstance(node, exp.GenerateSeries):
            raise SQLError(f"ML.{function}: the thresholds must be GENERATE_ARRAY(start, end, step)")
        parts = [node.args.get("start"), node.args.get("end"), node.args.get("step") or exp.Literal.number(1)]
        start, end, step = (value for value, _ in self._evaluate(parts, script))
        if any(not isinstance(v, (int, float, Decimal)) or isinstance(v, bool) for v in (start, end, step)) or not step:
            raise SQLError(f"ML.{function}: GENERATE_ARRAY needs numbers and a step other than 0, got "
                           f"{node.sql('bigquery')}")
        start, end, step = float(start), float(end), float(step)
        count = int(np.floor((end - start) / step + 1e-9)) + 1
        return (start + step * np.arange(max(count, 0))).tolist()

    @contextmanager
    def _reported(self, statement: Statement) -> Iterator[None]:
        """Errors name the statement and say what went wrong in the user's terms."""
        self._failures.clear()
        self._placeholders.clear()
        try:
            yield
        except PredserveError as exc:
            raise type(exc)(f"{statement.describe()}: {engine_message(exc, self._placeholders)}") from None
        except duckdb.Error as exc:
            cause: PredserveError = self._failures[0] if self._failures else SQLError(engine_message(exc, self._placeholders))
            raise type(cause)(f"{statement.describe()}: {engine_message(cause, self._placeholders)}") from None
        except pa.ArrowException as exc:
            raise SQLError(f"{statement.describe()}: {engine_message(exc, self._placeholders)}") from None


# ---- trees ----------------------------------------------------------------------------------
def transpile(tree: exp.Expression) -> str:
    """A BigQuery tree (ML functions already replaced) as DuckDB SQL: BigQuery ML's preprocessing
    functions in a plain query become window aggregates over its rows, then the one translation."""
    return to_duckdb(tree.transform(window_expression))


def _inside_ml_function(node: exp.Expression) -> bool:
    parent = node.parent
    while parent is not None:
        if isinstance(parent, ML_NODES):
            return True
        parent = parent.parent
    return False


def _input_query(node: exp.Expression) -> exp.Expression:
    """An ML function's input as a query of its own, with the CTEs it uses from around the call."""
    argument = node.args["expression"]
    query = exp.Select(expressions=[exp.Star()], from_=exp.From(this=argument.copy())) if isinstance(argument, exp.Table) \
        else argument.this.copy()
    levels = list(visible_ctes(node))
    visible: dict[str, exp.CTE] = {}
    for ctes in levels:  # innermost WITH first: an inner CTE hides an outer one of the same name
        for cte in ctes:
            visible.setdefault(cte.alias.lower(), cte)
    needed: set[str] = set()
    pending = [query]
    while pending:
        for table in pending.pop().find_all(exp.Table):
            key = table.name.lower()
            if table.args.get("db") is None and key in visible and key not in needed:
                needed.add(key)
                pending.append(visible[key].this)
    if not needed:
        return query
    ordered = [cte.copy() for ctes in reversed(levels) for cte in ctes
               if visible.get(cte.alias.lower()) is cte and cte.alias.lower() in needed]
    return exp.Select(expressions=[exp.Star()], from_=exp.From(this=exp.Subquery(this=query)),
                      with_=exp.With(expressions=ordered))


def _model_options(tree: exp.Create) -> tuple[dict[str, Any], list[exp.Expression] | None]:
    """CREATE MODEL's OPTIONS as Python values, and its TRANSFORM expressions."""
    raw: dict[str, Any] = {}
    transform: list[exp.Expression] | None = None
    properties = tree.args.get("properties")
    for prop in properties.expressions if properties else []:
        if isinstance(prop, exp.TransformModelProperty):
            transform = list(prop.expressions)
            continue
        if not isinstance(prop, exp.Property):
            raise SQLError(f"CREATE MODEL: {prop.sql('bigquery')} is not supported; the clauses are TRANSFORM(...) and OPTIONS(...)")
        key = _option_name(prop)
        if key.lower() in {k.lower() for k in raw}:
            raise SQLError(f"OPTIONS gives {key} twice")
        raw[key] = literal_value(prop.args["value"], key)
    return raw, transform


def _option_name(prop: exp.Expression) -> str:
    return prop.this.name if hasattr(prop.this, "name") else str(prop.this)


def _duckdb_type(kind: exp.DataType) -> DuckDBPyType:
    refuse_geography(kind)
    try:
        return duckdb.sqltype(to_duckdb(kind))
    except duckdb.Error:
        raise SQLError(f"type {kind.sql('bigquery')} is not supported for variables") from None


def _one_query(query: str) -> Statement:
    statements = parse_script(query)
    if len(statements) != 1 or not isinstance(statements[0].tree, exp.Query):
        raise SQLError("expected one query (SELECT ...), the rows to read")
    return statements[0]

