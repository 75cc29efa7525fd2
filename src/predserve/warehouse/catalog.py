"""Models live inside the warehouse file, in the ``_predserve.models`` table.

One row per model name holds the pickled ``TrainedModel`` and a few readable columns, so
``SELECT * FROM _predserve.models`` lists them. CREATE OR REPLACE swaps the row inside one
transaction: readers see the old model or the new one.
"""

from __future__ import annotations

import json
import pickle
from datetime import datetime, timezone

import duckdb

from predserve.errors import ModelError
from predserve.warehouse.models import TrainedModel

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
    options = json.dumps(model.options, default=str)
    created = datetime.fromtimestamp(model.created_at, tz=timezone.utc)
    payload = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
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


def exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute(f"SELECT count(*) FROM {TABLE} WHERE name = ?", [name]).fetchall()[0][0])


def load(con: duckdb.DuckDBPyConnection, name: str) -> TrainedModel:
    rows = con.execute(f"SELECT payload FROM {TABLE} WHERE name = ?", [name]).fetchall()
    if not rows:
        known = [r[0] for r in con.execute(f"SELECT name FROM {TABLE} ORDER BY name").fetchall()]
        hint = f" Known models: {', '.join(known)}." if known else " No models exist yet; create one with CREATE MODEL."
        raise ModelError(f"model {name} does not exist.{hint}")
    model = pickle.loads(rows[0][0])
    assert isinstance(model, TrainedModel)
    return model


def drop(con: duckdb.DuckDBPyConnection, name: str, if_exists: bool) -> None:
    if not exists(con, name):
        if if_exists:
            return
        raise ModelError(f"cannot drop model {name}: it does not exist (use DROP MODEL IF EXISTS)")
    con.execute(f"DELETE FROM {TABLE} WHERE name = ?", [name])
