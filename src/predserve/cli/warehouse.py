"""Warehouse commands: ``sql`` (BigQuery ML SQL on DuckDB) and ``load`` (a file into a table)."""

from __future__ import annotations

from pathlib import Path

import click

from predserve.cli.app import WAREHOUSE_HELP, main
from predserve.cli.output import print_table


@main.command()
@click.option("-w", "--warehouse", required=True, help=WAREHOUSE_HELP)
@click.option("-f", "--file", "sql_file", type=click.Path(exists=True, dir_okay=False), help="read the SQL from a file")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.argument("statement", required=False)
def sql(warehouse: str, sql_file: str | None, fmt: str, statement: str | None) -> None:
    """Run BigQuery ML SQL (one statement or a ;-separated script) on a warehouse.

    \b
    predserve sql -w wh.duckdb "CREATE MODEL churn OPTIONS(model_type='logistic_reg',
        input_label_cols=['churned']) AS SELECT * FROM users"
    predserve sql -w wh.duckdb "SELECT * FROM ML.EVALUATE(MODEL churn)"
    predserve models -w wh.duckdb
    """
    from predserve.warehouse import Warehouse

    if (statement is None) == (sql_file is None):
        raise click.UsageError("give a STATEMENT or -f FILE (one of them)")
    text = Path(sql_file).read_text() if sql_file else statement
    with Warehouse(warehouse) as wh:
        print_table(wh.sql(text or ""), fmt)


@main.command()
@click.option("-w", "--warehouse", required=True, help="warehouse: a DuckDB file path")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
def models(warehouse: str, fmt: str) -> None:
    """List the warehouse's models: name, type, label, training rows, when created.

    The stored model and its options stay out; SELECT options FROM _predserve.models WHERE
    name = 'M' shows one model's options."""
    from predserve.warehouse import Warehouse
    from predserve.warehouse.models import catalog

    if not Path(warehouse).is_file():
        raise click.ClickException(f"no warehouse at {warehouse}: create one with `predserve load` or `predserve sql`")
    with Warehouse(warehouse, read_only=True) as wh:
        listing = catalog.listing(wh.con)
    if listing.num_rows == 0 and fmt == "table":
        click.echo(f"no models in {warehouse} yet; create one with CREATE MODEL (predserve sql)")
        return
    print_table(listing, fmt)


@main.command()
@click.option("-w", "--warehouse", required=True, help=WAREHOUSE_HELP)
@click.option("--replace", is_flag=True, help="replace the table if it exists")
@click.argument("table")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def load(warehouse: str, replace: bool, table: str, file: str) -> None:
    """Load a CSV or Parquet FILE into warehouse TABLE (dataset.table creates the dataset)."""
    from predserve.warehouse.loading import load_file

    with_rows = load_file(warehouse, table, file, replace=replace)
    click.echo(f"loaded {with_rows} rows into {table}")
