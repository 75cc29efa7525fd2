"""``predserve demo``: the whole flow on generated data."""

from __future__ import annotations

from pathlib import Path

import click

from predserve import settings
from predserve.cli.app import main
from predserve.cli.output import quiet_beam_logging


@main.command()
@click.option("--dir", "directory", default="demo-data", show_default=True, help="where the warehouse, store and keys go")
@click.option("--rows", default=200_000, show_default=True, help="synthetic users to generate (at least 100,000)")
@click.option("--port", default=settings.PORT, show_default=True, help="API port (a free one is picked if taken)")
@click.option("--no-serve", is_flag=True, help="exit after printing the predictions instead of serving")
def demo(directory: str, rows: int, port: int, no_serve: bool) -> None:
    """The whole flow on generated data: train, predict, export, serve, query."""
    quiet_beam_logging()
    from predserve.demo import run_demo

    if rows < 100_000:
        raise click.BadParameter("the demo generates at least 100,000 users", param_hint="--rows")
    run_demo(Path(directory), rows=rows, port=port, serve=not no_serve)
