"""The ``predserve`` group itself: its help, its error handling, and the help texts the commands share."""

from __future__ import annotations

import sys
from typing import Any

import click

from predserve.errors import PredserveError

WAREHOUSE_HELP = "warehouse: a DuckDB file path (created if missing)"
STORE_HELP = "store URL: PATH or lmdb://PATH (embedded), bigtable://PROJECT/INSTANCE/TABLE"


def fail(exc: Exception) -> None:
    click.secho(f"error: {exc}", fg="red", err=True)
    sys.exit(1)


class Group(click.Group):
    """Turns predserve's own errors into one red line and exit code 1 instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PredserveError as exc:
            fail(exc)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="predserve")
def main() -> None:
    """predserve: BigQuery ML SQL in a warehouse, a Beam export into a snapshot store,
    and a low-latency prediction API.

    \b
    The flow:  predserve sql (CREATE MODEL, ML.PREDICT)  ->  predserve export  ->  predserve serve
    Try it:    predserve demo
    """
