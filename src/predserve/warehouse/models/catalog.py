"""Models live inside the warehouse file, in the ``_predserve.models`` table.

One row per model name holds the model as data (``payload``: storage.py's versioned format,
never a pickle, so opening a downloaded warehouse file cannot run code) and a few readable
columns, which ``predserve models`` lists (``listing``).
CREATE OR REPLACE swaps the row inside one transaction: readers see the old model or the new one.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import duckdb
import pyarrow as pa

from predserve.errors import ModelError
from predserve.warehouse.models import storage
from predserve.warehouse.models.trained import TrainedModel

SCHEMA = "_predserve"
TABLE = f"{SCHEMA}.models"


def ensure_catalog(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {TABLE} (
            name VARCHAR PRIMARY KEY,
            model_type VARCHAR NOT NULL,
            label VARCHAR,
            created_at TIMESTAMPTZ NOT NULL,
            training_rows BIGINT,
            options JSON,
            payload BLOB NOT NULL
        )"""
    )


def save(con: duckdb.DuckDBPyConnection, model: TrainedModel, replace: bool) -> None:
    try:
        payload = storage.dump(model.to_data())
        options = json.dumps(model.options)
    except (storage.StoredModelError, TypeError, ValueError) as exc:
        raise ModelError(f"CREATE MODEL {model.name}: the trained model cannot be stored: {exc}") from None
    created = datetime.fromtimestamp(model.created_at, tz=timezone.utc)
    con.execute("BEGIN TRANSACTION")
    try:
        if replace:
            con.execute(f"DELETE FROM {TABLE} WHERE name = ?", [model.name])
        elif exists(con, model.name):
            raise ModelError(
                f"model {model.name} already exists; use CREATE OR REPLACE MODEL to replace it, "
                "or CREATE MODEL IF NOT EXISTS to keep it"
            )
        con.execute(
            f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
            [model.name, model.model_type, model.label, created, model.training_rows, options, payload],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def listing(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """The models as a person reads them, by name: the readable columns, never the payload
    (nor the options' JSON: ``SELECT options FROM _predserve.models WHERE name = ...``).
    A warehouse no model was ever created in has none."""
    if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = 'models'",
                       [SCHEMA]).fetchall()[0][0]:
        return pa.table({"name": pa.array([], pa.string())})
    return con.sql(f"SELECT name, model_type, label, training_rows, date_trunc('second', created_at) AS created_at "
                   f"FROM {TABLE} ORDER BY name").to_arrow_table()


def exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute(f"SELECT count(*) FROM {TABLE} WHERE name = ?", [name]).fetchall()[0][0])


def load(con: duckdb.DuckDBPyConnection, name: str) -> TrainedModel:
    """The stored model ``name``. A row this predserve cannot read (an older predserve's
    pickle, another format, damage, a payload over the size limit) is never executed: it is
    a ModelError that says how to re-create the model."""
    try:  # the payload leaves DuckDB only when its size is within the limit
        rows = con.execute(f"SELECT octet_length(payload), CASE WHEN octet_length(payload) <= ? THEN payload END "
                           f"FROM {TABLE} WHERE name = ?", [storage.MAX_PAYLOAD_BYTES, name]).fetchall()
    except duckdb.Error as exc:
        raise ModelError(f"cannot read model {name}: the table {TABLE} is not one predserve wrote ({exc})") from None
    if not rows:
        known = [r[0] for r in con.execute(f"SELECT name FROM {TABLE} ORDER BY name").fetchall()]
        hint = f" Known models: {', '.join(known)}." if known else " No models exist yet; create one with CREATE MODEL."
        raise ModelError(f"model {name} does not exist.{hint}")
    size, payload = rows[0]
    try:
        storage.check_size(size)
        return TrainedModel.from_data(name, storage.load(bytes(payload)))
    except storage.StoredModelError as exc:
        reason = str(exc)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError, RecursionError) as exc:
        reason = f"its payload is malformed ({type(exc).__name__}: {str(exc)[:200]})"
    raise ModelError(
        f"model {name} cannot be loaded: {reason}. Re-create it with CREATE OR REPLACE MODEL {name} "
        f"OPTIONS(...) AS <training query> (or remove it with DROP MODEL {name})"
    )


def drop(con: duckdb.DuckDBPyConnection, name: str, if_exists: bool) -> None:
    if not exists(con, name):
        if if_exists:
            return
        raise ModelError(f"cannot drop model {name}: it does not exist (use DROP MODEL IF EXISTS)")
    con.execute(f"DELETE FROM {TABLE} WHERE name = ?", [name])
