"""The ``predserve`` command line: one subcommand per step of the flow."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from predserve.errors import PredserveError
from predserve.store.base import DEFAULT_GRACE
from predserve.pipeline.drift import DEFAULT_MAX_CHANGED_LABELS, DEFAULT_MAX_DRIFT, DEFAULT_MAX_MOVED, DEFAULT_MOVE_TOLERANCE

if TYPE_CHECKING:  # pyarrow is imported where a table is printed: `predserve serve` starts without it
    import pyarrow as pa

WAREHOUSE_HELP = "warehouse: a DuckDB file path (created if missing)"
STORE_HELP = "store URL: PATH or lmdb://PATH (embedded), bigtable://PROJECT/INSTANCE/TABLE"


def _fail(exc: Exception) -> None:
    click.secho(f"error: {exc}", fg="red", err=True)
    sys.exit(1)


class Group(click.Group):
    """Turns predserve's own errors into one red line and exit code 1 instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PredserveError as exc:
            _fail(exc)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="predserve")
def main() -> None:
    """predserve: BigQuery ML SQL in a warehouse, a Beam export into a snapshot store,
    and a low-latency prediction API.

    \b
    The flow:  predserve sql (CREATE MODEL, ML.PREDICT)  ->  predserve export  ->  predserve serve
    Try it:    predserve demo
    """


# ---- warehouse ------------------------------------------------------------------------------
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
    predserve sql -w wh.duckdb "SELECT name, model_type, created_at FROM _predserve.models"
    """
    from predserve.warehouse import Warehouse

    if (statement is None) == (sql_file is None):
        raise click.UsageError("give a STATEMENT or -f FILE (one of them)")
    text = Path(sql_file).read_text() if sql_file else statement
    with Warehouse(warehouse) as wh:
        print_table(wh.sql(text or ""), fmt)


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


# ---- export ---------------------------------------------------------------------------------
def _column_limits(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, float]:
    """``COLUMN=LIMIT`` options as {column: limit}, each limit between 0 and 1."""
    limits = {}
    for value in values:
        column, sep, limit = value.rpartition("=")
        try:
            number = float(limit)
        except ValueError:
            number = -1.0
        if not sep or not column or not 0 <= number <= 1:
            raise click.BadParameter(f"{value!r} is not COLUMN=LIMIT with a LIMIT between 0 and 1", ctx, param)
        limits[column] = number
    return limits


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("-w", "--warehouse", required=True, help="the warehouse's DuckDB file, or bigquery://PROJECT/DATASET")
@click.option("--model", required=True, help="model name the predictions are served under")
@click.option("--key", required=True, help="column holding the id clients look up (e.g. user_id), or several separated "
              "by commas (user_id,country): the id is their values joined by '|', a '|' or '\\' in a value escaped with '\\'")
@click.option("--query", help="SQL whose rows are exported, e.g. SELECT ... FROM ML.PREDICT(MODEL m, TABLE users)")
@click.option("--table", help="export every row of this table instead of a query")
@click.option("--store", required=True, help=STORE_HELP)
@click.option("--keep", default=3, show_default=True, help="published snapshots kept for rollback")
@click.option("--grace", default=DEFAULT_GRACE, show_default=True, help="seconds a replaced snapshot is kept whatever --keep says (see `predserve gc`)")
@click.option("--max-age", type=float, help="seconds after which the API reports this snapshot as stale")
@click.option("--default-prediction", help="JSON object served (marked default) for ids not in the snapshot")
@click.option("--allow-empty", is_flag=True, help="publish even when no rows were exported")
@click.option("--allow-null-keys", is_flag=True, help="publish even when some rows had a NULL key (they are skipped)")
@click.option("--allow-duplicates", is_flag=True, help="publish even when keys repeat (the first row wins)")
@click.option("--max-row-drop", default=0.5, show_default=True, help="refuse when rows fall by more than this fraction vs the current snapshot")
@click.option("--allow-schema-change", is_flag=True, help="publish even when the prediction columns changed")
@click.option("--max-drift", type=click.FloatRange(0, 1), default=DEFAULT_MAX_DRIFT, show_default=True,
              help="refuse when a prediction column's distance from the current snapshot (Jensen-Shannon divergence "
                   "or L-infinity distance, 0..1) is above this")
@click.option("--max-changed-labels", type=click.FloatRange(0, 1), default=DEFAULT_MAX_CHANGED_LABELS, show_default=True,
              help="refuse when a label column changed for more than this fraction of the sampled ids")
@click.option("--column-max-drift", "column_max_drift", multiple=True, metavar="COLUMN=LIMIT", callback=_column_limits,
              help="--max-drift for one column (repeatable)")
@click.option("--column-max-changed-labels", "column_max_changed", multiple=True, metavar="COLUMN=LIMIT",
              callback=_column_limits, help="--max-changed-labels for one column (repeatable)")
@click.option("--max-moved-values", "max_moved", type=click.FloatRange(0, 1), default=DEFAULT_MAX_MOVED, show_default=True,
              help="refuse when a numeric prediction column moved by more than --move-tolerance for more than this "
                   "fraction of the sampled ids")
@click.option("--move-tolerance", type=click.FloatRange(0), default=DEFAULT_MOVE_TOLERANCE, show_default=True,
              help="how far a sampled id's value may move, in standard deviations of the column, before it counts as moved")
@click.option("--column-max-moved-values", "column_max_moved", multiple=True, metavar="COLUMN=LIMIT",
              callback=_column_limits, help="--max-moved-values for one column (repeatable)")
@click.option("--metadata-columns", default="", metavar="A,B",
              help="columns that are not predictions (e.g. model_version): their drift is reported, not gated")
@click.option("--allow-drift", is_flag=True, help="publish even when the predictions drifted (a known, intended shift)")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable summary")
@click.pass_context
def export(ctx: click.Context, warehouse: str, model: str, key: str, query: str | None, table: str | None, store: str,
           keep: int, grace: float, max_age: float | None, default_prediction: str | None, allow_empty: bool, allow_null_keys: bool,
           allow_duplicates: bool, max_row_drop: float, allow_schema_change: bool, max_drift: float,
           max_changed_labels: float, column_max_drift: dict[str, float], column_max_changed: dict[str, float],
           max_moved: float, move_tolerance: float, column_max_moved: dict[str, float], metadata_columns: str,
           allow_drift: bool, as_json: bool) -> None:
    """Export predictions into a new store snapshot with an Apache Beam pipeline, then publish it.

    Extra arguments are Beam pipeline options, e.g. --runner DataflowRunner --project P
    --region R --temp_location gs://B/tmp; --runner dask --dask_client_address tcp://HOST:PORT;
    or --direct_num_workers 2 --direct_running_mode multi_processing. The default runner is
    the local DirectRunner.
    """
    _quiet_beam_logging()
    from predserve.pipeline import GatePolicy, GateRefused, run_export

    policy = GatePolicy(
        allow_empty=allow_empty, allow_null_keys=allow_null_keys, allow_duplicates=allow_duplicates,
        max_row_drop=max_row_drop, allow_schema_change=allow_schema_change, max_drift=max_drift,
        max_changed_labels=max_changed_labels, column_max_drift=column_max_drift,
        column_max_changed_labels=column_max_changed, max_moved=max_moved, move_tolerance=move_tolerance,
        column_max_moved=column_max_moved, metadata_columns=tuple(c.strip() for c in metadata_columns.split(",") if c.strip()),
        allow_drift=allow_drift,
    )
    default = None
    if default_prediction is not None:
        try:
            default = json.loads(default_prediction)
        except ValueError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--default-prediction")
        if not isinstance(default, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--default-prediction")
    progress = None if as_json else _progress_printer()
    try:
        summary = run_export(
            warehouse=warehouse, model=model, key=key, store_url=store, query=query, table=table,
            beam_args=ctx.args, policy=policy, keep=keep, grace=grace, max_age=max_age, default_prediction=default, progress=progress,
        )
    except GateRefused as refused:
        if as_json:
            click.echo(json.dumps(refused.summary.to_dict(), indent=2))
        else:
            _print_gates(refused.summary.gates)
            _print_profile(refused.summary.profile, refused.summary.drift)
        _fail(refused)
        return
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
        return
    _print_gates(summary.gates)
    _print_profile(summary.profile, summary.drift)
    click.secho(
        f"published snapshot {summary.snapshot} of {model}: {summary.rows:,} rows in {summary.seconds:.1f}s "
        f"({summary.rows_per_second:,.0f} rows/s)", fg="green",
    )
    if summary.collected:
        click.echo(f"garbage-collected snapshots: {', '.join(map(str, summary.collected))}")


def _quiet_beam_logging() -> None:
    """Beam logs a failed step with its traceback, and warns at import about optional file
    systems predserve does not use; the export reports its own failures in one line."""
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


def _progress_printer() -> Any:
    last = [0.0]

    def show(written: int, expected: int, elapsed: float) -> None:
        if elapsed - last[0] < 1.0 and written < expected:
            return
        last[0] = elapsed
        rate = written / elapsed if elapsed else 0
        click.echo(f"  {written:,}/{expected:,} rows written, {rate:,.0f} rows/s, {elapsed:.1f}s elapsed", err=True)

    return show


def _print_gates(gates: list[Any]) -> None:
    for gate in gates:
        mark = "pass" if gate.passed else ("overridden" if gate.overridden else "FAIL")
        click.echo(f"  gate {gate.name:<20} {mark:<10} {gate.detail}")


def _print_profile(profile: dict[str, Any] | None, drift: dict[str, Any] | None) -> None:
    """The profile's columns, and with a baseline each column's distance and sample figures."""
    if profile is None:
        return
    from predserve.pipeline.drift import METRIC_NAMES, where

    columns = (drift or {}).get("columns", {})
    sample = (drift or {}).get("sample") or {}
    if drift is None:
        click.echo("  profile (no earlier profile to compare with):")
    else:
        click.echo(f"  drift vs snapshot {drift['baseline']} ({sample.get('ids', 0):,} sampled ids: {sample.get('in_both', 0):,} in both, "
                   f"{sample.get('appeared', 0):,} appeared, {sample.get('disappeared', 0):,} disappeared):")
    rows = profile["rows"] or 1
    for name, column in profile["columns"].items():
        line = f"    {name:<28} {column['kind']:<13} NULL {column['nulls'] / rows:6.1%}"
        figures = columns.get(name)
        if figures is not None:
            line += f"  {METRIC_NAMES[figures['metric']]} {figures['distance']:.4f}{where(figures)}"
            if "changed" in figures:
                line += f", {figures['changed']:.1%} of sampled ids changed"
            if "moved" in figures:
                line += f", {figures['moved']:.1%} of sampled ids moved"
            if "mean_abs_change" in figures:
                line += f", mean absolute change {figures['mean_abs_change']:.4g}"
            if figures.get("metadata"):
                line += f"  (metadata, {figures['metadata']}: reported, not gated)"
        click.echo(line)


# ---- store ----------------------------------------------------------------------------------
@main.command()
@click.option("--store", required=True, help=STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.argument("model")
def snapshots(store: str, as_json: bool, model: str) -> None:
    """List MODEL's snapshots and which one is current."""
    from predserve.store import open_store

    with open_store(store, readonly=True) as st:
        state = st.state(model)
    if state is None:
        raise click.ClickException(f"model {model!r} has no snapshots in {store}")
    rows = [{**s.to_dict(), "current": s.id == state.current} for s in sorted(state.snapshots.values(), key=lambda s: s.id)]
    if as_json:
        click.echo(json.dumps({"model": model, "current": state.current, "snapshots": rows, "events": state.events}, indent=2))
        return
    import pyarrow as pa

    print_table(pa.Table.from_pylist([
        {"snapshot": r["id"], "state": r["state"], "current": "*" if r["current"] else "", "rows": r["rows"],
         "created_at": _time(r["created_at"]), "published_at": _time(r["published_at"]),
         **_drift_cells(r["metadata"].get("drift"))}
        for r in rows
    ]), "table")


def _drift_cells(drift: dict[str, Any] | None) -> dict[str, str]:
    """The snapshots table's drift columns: the largest distance (vs which snapshot), the largest changed fraction.

    ``--json`` has every figure (each snapshot's metadata holds its profile and drift)."""
    from predserve.pipeline.drift import largest

    top = largest(drift)
    if drift is None or top is None:
        return {"drift": "", "changed": ""}
    changed = [f["changed"] for f in drift["columns"].values() if "changed" in f and not f.get("metadata")]
    return {"drift": f"{top[1]['distance']:.4f} vs {drift['baseline']}", "changed": f"{max(changed):.1%}" if changed else ""}


def _time(ts: float | None) -> str | None:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds") if ts else None


@main.command()
@click.option("--store", required=True, help=STORE_HELP)
@click.option("--examples", default=3, show_default=True, help="sampled ids whose prediction changed to show, with both bodies")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.argument("model")
@click.argument("a", type=int, required=False)
@click.argument("b", type=int, required=False)
def diff(store: str, examples: int, as_json: bool, model: str, a: int | None, b: int | None) -> None:
    """Compare two snapshots of MODEL: each column's distributions side by side, their distance,
    and sampled ids whose prediction changed, with both bodies.

    \b
    predserve diff --store S churn          the previously published snapshot vs the current one
    predserve diff --store S churn 4        snapshot 4 vs the current one
    predserve diff --store S churn 4 6      snapshot 4 vs snapshot 6
    """
    from rich.console import Console

    from predserve.pipeline.diff import compare_snapshots, render
    from predserve.pipeline.drift import READ_TIMEOUT
    from predserve.store import open_store

    with open_store(store, readonly=True, read_timeout=READ_TIMEOUT) as st:
        result = compare_snapshots(st, model, a, b, examples)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        render(Console(), result)


@main.command()
@click.option("--store", required=True, help=STORE_HELP)
@click.argument("model")
@click.argument("snapshot", type=int, required=False)
def rollback(store: str, model: str, snapshot: int | None) -> None:
    """Point MODEL back at SNAPSHOT, or at the previously published snapshot."""
    from predserve.store import open_store

    with open_store(store) as st:
        info = st.rollback(model, snapshot)
    click.secho(f"{model} now serves snapshot {info.id} ({info.rows:,} rows)", fg="green")


@main.command()
@click.option("--store", required=True, help=STORE_HELP)
@click.option("--keep", default=3, show_default=True, help="published snapshots to keep per model")
@click.option("--stale-after", default=24 * 3600.0, show_default=True, help="seconds after which an unfinished snapshot is abandoned")
@click.option("--grace", default=DEFAULT_GRACE, show_default=True,
              help="seconds after it stops being current during which a snapshot is never deleted (servers cache the pointer for 1 s)")
@click.argument("model", required=False)
def gc(store: str, keep: int, stale_after: float, grace: float, model: str | None) -> None:
    """Delete old snapshots (keeping the last KEEP) and abandoned unfinished ones, and the
    staging directories of exports that were killed.

    A snapshot that was current within the last GRACE seconds is kept whatever KEEP says, so a
    server still reading it through its cached pointer never answers 404."""
    from predserve.pipeline.staging import remove_abandoned_staging
    from predserve.store import open_store

    with open_store(store) as st:
        deleted = st.gc(model, keep=keep, stale_after=stale_after, grace=grace)
    staging = remove_abandoned_staging(stale_after=stale_after)
    if not deleted and not staging:
        click.echo("nothing to collect")
    for name, sid in deleted:
        click.echo(f"deleted {name} snapshot {sid}")
    for path in staging:
        click.echo(f"removed abandoned export staging directory {path}")


# ---- serving --------------------------------------------------------------------------------
def serve_option(*declarations: str, envvar: str, **kwargs: Any) -> Any:
    """An option of `predserve serve`, also read from the environment variable ``envvar``."""
    return click.option(*declarations, envvar=envvar, show_envvar=True, show_default=True, **kwargs)


@main.command()
@serve_option("--store", envvar="PREDSERVE_STORE", required=True, help=STORE_HELP)
@serve_option("--host", envvar="PREDSERVE_HOST", default="127.0.0.1")
@serve_option("--port", envvar=["PREDSERVE_PORT", "PORT"], default=8000, type=click.IntRange(1, 65535),
              help="TCP port; PORT (which Cloud Run sets) is read when PREDSERVE_PORT is not set")
@serve_option("--workers", envvar="PREDSERVE_WORKERS", default=1, type=click.IntRange(1, 64),
              help="worker processes (each opens the store read-only)")
@serve_option("--iam", "iam_path", envvar="PREDSERVE_IAM", help="service-account file (default: ./predserve-iam.json)")
@serve_option("--no-auth", envvar="PREDSERVE_NO_AUTH", is_flag=True, help="serve without authentication (logs a warning)")
@serve_option("--stale", envvar="PREDSERVE_STALE", type=click.Choice(["mark", "refuse"]), default="mark",
              help="when a snapshot is older than its max_age: mark responses stale, or refuse with 503")
@serve_option("--pointer-ttl", envvar="PREDSERVE_POINTER_TTL", default=1.0, type=click.FloatRange(0, 10),
              help="seconds a model's current-snapshot pointer is cached: a publish or rollback shows within this time")
@serve_option("--max-batch", envvar="PREDSERVE_MAX_BATCH", default=1000, type=click.IntRange(1), help="most ids per batchGet")
@serve_option("--max-body", envvar="PREDSERVE_MAX_BODY", default=1 << 20, type=click.IntRange(1),
              help="most bytes of request body (batchGet and admin requests); 413 beyond")
@serve_option("--read-timeout", envvar="PREDSERVE_READ_TIMEOUT", default=0.05, type=click.FloatRange(0.001),
              help="seconds a network store (Bigtable) read may take; 503 beyond")
@serve_option("--header-timeout", envvar="PREDSERVE_HEADER_TIMEOUT", default=5.0, type=click.FloatRange(0.001, 60),
              help="seconds a client has to send a request's headers; also how long an idle connection stays open")
@serve_option("--body-timeout", envvar="PREDSERVE_BODY_TIMEOUT", default=10.0, type=click.FloatRange(0.001),
              help="seconds a client has to send a request's body; 408 beyond")
@serve_option("--max-connections", envvar="PREDSERVE_MAX_CONNECTIONS", default=1024, type=click.IntRange(1),
              help="connections each worker serves at once, idle keep-alive ones included; more wait until one closes")
@serve_option("--access-log", envvar="PREDSERVE_ACCESS_LOG", is_flag=True, help="log every request as a JSON line")
def serve(store: str, host: str, port: int, workers: int, iam_path: str | None, no_auth: bool, stale: str,
          pointer_ttl: float, max_batch: int, max_body: int, read_timeout: float, header_timeout: float,
          body_timeout: float, max_connections: int, access_log: bool) -> None:
    """Serve predictions over HTTP from STORE (opened read-only).

    Every option can also be set by the environment variable shown beside it.
    """
    from predserve.serving.config import ServeConfig, ServerOptions
    from predserve.serving.server import run_server

    config = ServeConfig(store, iam_path=iam_path, auth=not no_auth, stale=stale, pointer_ttl=pointer_ttl,  # type: ignore[arg-type]
                         max_batch=max_batch, max_body=max_body, body_timeout=body_timeout, read_timeout=read_timeout)
    options = ServerOptions(host=host, port=port, workers=workers, header_timeout=header_timeout,
                            max_connections=max_connections, access_log=access_log)
    run_server(config, options)


# ---- identity -------------------------------------------------------------------------------
@main.group()
def iam() -> None:
    """Service accounts and roles for the API (keys are shown once).

    Changes are serialised across processes by a lock file beside the registry
    (IAM_FILE.lock), and reach running servers within 1 s."""


IAM_OPTION = click.option("--iam", "iam_path", help="service-account file (default: $PREDSERVE_IAM or ./predserve-iam.json)")
ROLE_OPTION = click.option("--role", type=click.Choice(["reader", "admin"]), default="reader", show_default=True)
MODELS_OPTION = click.option("--models", help="for readers: comma-separated models it may read (default: all)")


def _models(value: str | None) -> list[str] | None:
    return [m.strip() for m in value.split(",") if m.strip()] if value else None


@iam.command("create")
@IAM_OPTION
@ROLE_OPTION
@MODELS_OPTION
@click.option("--key-only", is_flag=True, help="print only the key (for scripts)")
@click.argument("name")
def iam_create(iam_path: str | None, role: str, models: str | None, key_only: bool, name: str) -> None:
    """Create service account NAME with a role; prints its key once."""
    from predserve.iam import Registry

    account, key = Registry(iam_path).create(name, role, _models(models))
    if key_only:
        click.echo(key)
        return
    click.echo(f"created service account {account.name} with roles {json.dumps(account.roles)}")
    click.echo(f"key (shown only now; store it safely): {key}")


@iam.command("list")
@IAM_OPTION
def iam_list(iam_path: str | None) -> None:
    """List service accounts and their roles (never keys)."""
    from predserve.iam import Registry

    import pyarrow as pa

    accounts = Registry(iam_path).accounts()
    print_table(pa.Table.from_pylist(
        [{"name": a.name, "key_id": a.key_id, "roles": json.dumps(a.roles), "created_at": _time(a.created_at)} for a in accounts],
        schema=pa.schema([("name", pa.string()), ("key_id", pa.string()), ("roles", pa.string()), ("created_at", pa.string())]),
    ), "table")


@iam.command("grant")
@IAM_OPTION
@ROLE_OPTION
@MODELS_OPTION
@click.argument("name")
def iam_grant(iam_path: str | None, role: str, models: str | None, name: str) -> None:
    """Grant a role to service account NAME."""
    from predserve.iam import Registry

    account = Registry(iam_path).grant(name, role, _models(models))
    click.echo(f"{account.name} now has roles {json.dumps(account.roles)}")


@iam.command("revoke")
@IAM_OPTION
@click.option("--role", type=click.Choice(["reader", "admin"]), required=True)
@click.argument("name")
def iam_revoke(iam_path: str | None, role: str, name: str) -> None:
    """Take a role away from service account NAME."""
    from predserve.iam import Registry

    account = Registry(iam_path).revoke(name, role)
    click.echo(f"{account.name} now has roles {json.dumps(account.roles)}")


@iam.command("rotate")
@IAM_OPTION
@click.argument("name")
def iam_rotate(iam_path: str | None, name: str) -> None:
    """Replace NAME's key; prints the new key once.

    The old key fails at once for servers started afterwards, and within 1 s on running
    servers (each re-reads the file at most once per second)."""
    from predserve.iam import Registry

    click.echo(f"new key for {name} (shown only now): {Registry(iam_path).rotate(name)}")


@iam.command("delete")
@IAM_OPTION
@click.argument("name")
def iam_delete(iam_path: str | None, name: str) -> None:
    """Delete service account NAME; its key fails within 1 s on running servers."""
    from predserve.iam import Registry

    Registry(iam_path).delete(name)
    click.echo(f"deleted service account {name}")


# ---- demo -----------------------------------------------------------------------------------
@main.command()
@click.option("--dir", "directory", default="demo-data", show_default=True, help="where the warehouse, store and keys go")
@click.option("--rows", default=200_000, show_default=True, help="synthetic users to generate (at least 100,000)")
@click.option("--port", default=8000, show_default=True, help="API port (a free one is picked if taken)")
@click.option("--no-serve", is_flag=True, help="exit after printing the predictions instead of serving")
def demo(directory: str, rows: int, port: int, no_serve: bool) -> None:
    """The whole flow on generated data: train, predict, export, serve, query."""
    from predserve.demo import run_demo

    if rows < 100_000:
        raise click.BadParameter("the demo generates at least 100,000 users", param_hint="--rows")
    run_demo(Path(directory), rows=rows, port=port, serve=not no_serve)


if __name__ == "__main__":
    main()
