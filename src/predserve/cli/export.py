"""``predserve export``: run the Beam export into a new snapshot, gate it, publish it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from predserve.cli.app import STORE_HELP, fail, main
from predserve import settings
from predserve.cli.output import quiet_beam_logging
from predserve.store.limits import DriftLimits

if TYPE_CHECKING:  # the records' module loads pydantic, which `predserve --help` does without
    from predserve.store.reports import Drift, Profile


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
@click.option("--keep", default=settings.KEEP, show_default=True, help="published snapshots kept for rollback")
@click.option("--grace", default=settings.GRACE, show_default=True, help="seconds a replaced snapshot is kept whatever --keep says (see `predserve gc`)")
@click.option("--max-age", type=float, help="seconds after which the API reports this snapshot as stale")
@click.option("--default-prediction", help="JSON object served (marked default) for ids not in the snapshot")
@click.option("--allow-empty", is_flag=True, help="publish even when no rows were exported")
@click.option("--allow-null-keys", is_flag=True, help="publish even when some rows had a NULL key (they are skipped)")
@click.option("--allow-duplicates", is_flag=True, help="publish even when keys repeat (the first row wins)")
@click.option("--max-row-drop", default=0.5, show_default=True, help="refuse when rows fall by more than this fraction vs the current snapshot")
@click.option("--allow-schema-change", is_flag=True, help="publish even when the prediction columns changed")
@click.option("--max-drift", type=click.FloatRange(0, 1), default=settings.MAX_DRIFT, show_default=True,
              help="refuse when a prediction column's distance from the current snapshot (Jensen-Shannon divergence "
                   "or L-infinity distance, 0..1) is above this")
@click.option("--max-changed-labels", type=click.FloatRange(0, 1), default=settings.MAX_CHANGED_LABELS, show_default=True,
              help="refuse when a label column changed for more than this fraction of the sampled ids")
@click.option("--column-max-drift", "column_max_drift", multiple=True, metavar="COLUMN=LIMIT", callback=_column_limits,
              help="--max-drift for one column (repeatable)")
@click.option("--column-max-changed-labels", "column_max_changed", multiple=True, metavar="COLUMN=LIMIT",
              callback=_column_limits, help="--max-changed-labels for one column (repeatable)")
@click.option("--max-moved-values", "max_moved", type=click.FloatRange(0, 1), default=settings.MAX_MOVED, show_default=True,
              help="refuse when a numeric prediction column moved by more than --move-tolerance for more than this "
                   "fraction of the sampled ids")
@click.option("--move-tolerance", type=click.FloatRange(0), default=settings.MOVE_TOLERANCE, show_default=True,
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
    quiet_beam_logging()
    from predserve.pipeline import GatePolicy, GateRefused, run_export

    policy = GatePolicy(
        allow_empty=allow_empty, allow_null_keys=allow_null_keys, allow_duplicates=allow_duplicates,
        max_row_drop=max_row_drop, allow_schema_change=allow_schema_change,
        drift_limits=DriftLimits(max_drift, max_changed_labels, max_moved, move_tolerance, column_max_drift,
                                 column_max_changed, column_max_moved),
        metadata_columns=tuple(c.strip() for c in metadata_columns.split(",") if c.strip()),
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
        fail(refused)
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


def _progress_printer() -> Any:
    """Progress at most once a second, and each count once: nothing while the count stands
    still, and the final count (reported by the pipeline's end and by the store) only once."""
    last = {"written": -1, "at": float("-inf")}

    def show(written: int, expected: int, elapsed: float) -> None:
        if written == last["written"] or (elapsed - last["at"] < 1.0 and written < expected):
            return
        last.update(written=written, at=elapsed)
        rate = written / elapsed if elapsed else 0
        click.echo(f"  {written:,}/{expected:,} rows written, {rate:,.0f} rows/s, {elapsed:.1f}s elapsed", err=True)

    return show


def _print_gates(gates: list[Any]) -> None:
    for gate in gates:
        mark = "pass" if gate.passed else ("overridden" if gate.overridden else "FAIL")
        click.echo(f"  gate {gate.name:<20} {mark:<10} {gate.detail}")


def _print_profile(profile: Profile | None, drift: Drift | None) -> None:
    """The profile's columns, and with a baseline each column's distance and sample figures."""
    if profile is None:
        return
    if drift is None:
        click.echo("  profile (no earlier profile to compare with):")
    else:
        s = drift.sample
        ids, in_both, appeared, gone = (s.ids, s.in_both, s.appeared, s.disappeared) if s is not None else (0, 0, 0, 0)
        click.echo(f"  drift vs snapshot {drift.baseline} ({ids:,} sampled ids: {in_both:,} in both, "
                   f"{appeared:,} appeared, {gone:,} disappeared):")
    width = max([28, *map(len, profile.columns)])  # list fields' names are long: recommendations[0].predicted_rating
    for name, column in profile.columns.items():
        line = f"    {name:<{width}} {column.kind:<13} NULL {column.nulls / (column.counted(profile.rows) or 1):6.1%}"
        figures = drift.columns.get(name) if drift is not None else None
        if figures is not None:
            line += f"  {figures.distance_text()}"
            if figures.changed is not None:
                line += f", {figures.changed:.1%} of sampled ids changed"
            if figures.moved is not None:
                line += f", {figures.moved:.1%} of sampled ids moved"
            if figures.mean_abs_change is not None:
                line += f", mean absolute change {figures.mean_abs_change:.4g}"
            if figures.metadata:
                line += f"  (metadata, {figures.metadata}: reported, not gated)"
        click.echo(line)
