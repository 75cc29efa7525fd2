"""Snapshot commands: list (``snapshots``), compare (``diff``), ``rollback`` and ``gc``."""

from __future__ import annotations

import json
from typing import Any

import click

from predserve.cli.app import STORE_HELP, main
from predserve.cli.output import format_time
from predserve import settings


@main.command()
@click.option("--store", required=True, help=STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.argument("model")
def snapshots(store: str, as_json: bool, model: str) -> None:
    """List MODEL's snapshots and which one is current."""
    from predserve.store import open_store

    with open_store(store, readonly=True) as st:
        state = st.state(model)
        updates = st.updates_since_publish(model, state) if state is not None else 0
    if state is None:
        raise click.ClickException(f"model {model!r} has no snapshots in {store}")
    rows = [{**s.to_dict(), "current": s.id == state.current} for s in sorted(state.snapshots.values(), key=lambda s: s.id)]
    if as_json:
        click.echo(json.dumps({"model": model, "current": state.current, "updates_since_publish": updates,
                               "snapshots": rows, "events": state.events}, indent=2))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    # Fits 80 columns: one time (published, or created while unpublished), the current snapshot
    # starred, the updates in the line below; --json has everything.
    view = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, caption="* current", caption_justify="left")
    for name, justify in [("snapshot", "left"), ("state", "left"), ("rows", "right"), ("time (UTC)", "left"),
                          ("drift", "left"), ("changed", "right")]:
        view.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for r in rows:
        when = _short_time(r["published_at"] or r["created_at"])
        view.add_row(f"{r['id']} *" if r["current"] else str(r["id"]), r["state"], f"{r['rows']:,}", when,
                     *_drift_cells(r["metadata"]).values())
    Console().print(view)
    if state.current is not None:
        click.echo(f"{updates:,} updates (push / stream) applied to snapshot {state.current} since its publish")


def _short_time(ts: float | None) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def _drift_cells(metadata: dict[str, Any]) -> dict[str, str]:
    """The snapshots table's drift columns: the largest distance (vs which snapshot), the largest
    changed fraction (read from the snapshot's typed report, whatever version wrote it).

    ``--json`` has every figure (each snapshot's metadata holds its profile and drift)."""
    from predserve.store.reports import largest, snapshot_report

    drift = snapshot_report(metadata).drift
    top = largest(drift)
    if drift is None or top is None:
        return {"drift": "", "changed": ""}
    changed = [c.changed for c in drift.columns.values() if c.changed is not None and not c.metadata]
    return {"drift": f"{top[1].distance:.4f} vs {drift.baseline}", "changed": f"{max(changed):.1%}" if changed else ""}


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
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        render(Console(), result)


@main.command()
@click.option("--store", required=True, help=STORE_HELP)
@click.argument("model")
@click.argument("snapshot", type=int, required=False)
def rollback(store: str, model: str, snapshot: int | None) -> None:
    """Point MODEL back at SNAPSHOT, or at the previously published snapshot."""
    from predserve.store import open_store

    with open_store(store, create=False) as st:
        info = st.rollback(model, snapshot)
    click.secho(f"{model} now serves snapshot {info.id} ({info.rows:,} row{'' if info.rows == 1 else 's'})", fg="green")


@main.command()
@click.option("--store", required=True, help=STORE_HELP)
@click.option("--keep", default=settings.KEEP, show_default=True, help="published snapshots to keep per model")
@click.option("--stale-after", default=settings.STALE_AFTER, show_default=True, help="seconds after which an unfinished snapshot is abandoned")
@click.option("--grace", default=settings.GRACE, show_default=True,
              help="seconds after it stops being current during which a snapshot is never deleted (servers cache the pointer for 1 s)")
@click.argument("model", required=False)
def gc(store: str, keep: int, stale_after: float, grace: float, model: str | None) -> None:
    """Delete old snapshots (keeping the last KEEP) and abandoned unfinished ones, and the
    staging directories of exports that were killed.

    A snapshot that was current within the last GRACE seconds is kept whatever KEEP says, so a
    server still reading it through its cached pointer never answers 404."""
    import time

    from predserve.pipeline.staging import remove_abandoned_staging
    from predserve.store import open_store
    from predserve.store.snapshots import kept_by_grace

    with open_store(store, create=False) as st:
        deleted = st.gc(model, keep=keep, stale_after=stale_after, grace=grace)
        held = [(name, sid, until) for name in ([model] if model else st.models()) if (state := st.state(name))
                for sid, until in kept_by_grace(state, keep, grace)]
    staging = remove_abandoned_staging(stale_after=stale_after)
    if not deleted and not staging:
        click.echo("nothing deleted" if held else "nothing to collect")
    for name, sid in deleted:
        click.echo(f"deleted {name} snapshot {sid}")
    for name, sid, until in held:
        click.echo(f"kept {name} snapshot {sid} for the grace period, until {format_time(until)} "
                   f"({until - time.time():.0f} s from now: it was current less than {grace:g} s ago and servers "
                   "may still read it); --grace 0 deletes it now")
    for path in staging:
        click.echo(f"removed abandoned export staging directory {path}")
