"""How commands print tables and times for a person (or as JSON/CSV for a script)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # pyarrow is imported where a table is printed: `predserve serve` starts without it
    import pyarrow as pa


def print_table(table: pa.Table, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(table.to_pylist(), default=str, indent=2))
    elif fmt == "csv":
        import pyarrow as pa
        import pyarrow.csv as pacsv

        sink = pa.BufferOutputStream()
        pacsv.write_csv(_flatten_nested(table), sink)
        click.echo(sink.getvalue().to_pybytes().decode(), nl=False)
    else:
        from rich.console import Console
        from rich.table import Table

        if table.num_columns == 0:
            click.echo("OK")
            return
        view = Table(show_lines=False)
        for name in table.schema.names:
            view.add_column(name)
        for row in table.slice(0, 200).to_pylist():
            view.add_row(*[_cell(v) for v in row.values()])
        Console().print(view)
        if table.num_rows > 200:
            click.echo(f"... {table.num_rows - 200} more rows ({table.num_rows} in all); use --format csv for everything")
        else:
            click.echo(f"{table.num_rows} row{'s' if table.num_rows != 1 else ''}")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return "NULL" if value is None else str(value)


def _flatten_nested(table: pa.Table) -> pa.Table:
    """CSV cannot hold lists or structs: write them as JSON text."""
    import pyarrow as pa

    columns = []
    for col in table.columns:
        if pa.types.is_nested(col.type):
            col = pa.array([None if v is None else json.dumps(v, default=str) for v in col.to_pylist()], pa.string())
        columns.append(col)
    return pa.table(columns, names=table.schema.names)


def format_time(ts: float | None) -> str | None:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds") if ts else None


def quiet_beam_logging() -> None:
    """Beam logs a failed step with its traceback, and warns at import about optional file
    systems and clients predserve does not use (``WARNING:root:apitools not found ...``: Beam's
    own BigQuery client, where predserve reads BigQuery with google-cloud-bigquery), which to a
    user reads as something broken; the export and the demo report their own failures in one
    line. Called before the first import of Beam."""
    import logging

    logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
    root = logging.getLogger()
    guard = logging.NullHandler()  # so that a library's bare logging.warning() cannot configure the root logger
    root.addHandler(guard)
    logging.disable(logging.WARNING)
    try:
        import apache_beam  # noqa: F401
        import predserve.pipeline.export  # noqa: F401
    finally:
        logging.disable(logging.NOTSET)
        root.removeHandler(guard)
