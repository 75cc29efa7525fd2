"""Updates between exports: ``push`` (JSON lines) and ``stream`` (Pub/Sub), each a thin call into predserve/updates/."""

from __future__ import annotations

import json
import sys

import click

from predserve.cli.app import STORE_HELP, main

# Exit status of `predserve push` when some lines did not land (bad lines, or their batch).
EXIT_NOT_ALL_LANDED = 1


@main.command()
@click.option("--store", required=True, help=STORE_HELP)
@click.option("--model", required=True, help="the model whose current snapshot gets the updates")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 100_000),
              help="lines applied per atomic batch")
@click.option("--skip-bad", is_flag=True, help="apply the good lines of a batch with bad ones (and report the bad ones) "
              "instead of applying nothing of that batch and stopping")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable summary")
@click.argument("file", type=click.File("rb"), default="-")
def push(store: str, model: str, batch_size: int, skip_bad: bool, as_json: bool, file: click.utils.LazyFile) -> None:
    """Apply updates to MODEL's current snapshot from FILE (or standard input, '-'): JSON lines,
    {"id": "42", "prediction": {...}} or {"id": "42", "delete": true}, each optionally with
    "sequence" (an integer ordering one id's updates; by default the time of the push).

    A bad line (not JSON, no id, a column the snapshot does not have, a prediction over 64 KiB)
    is reported with its line number and nothing of its batch is applied; the push stops there
    (everything before that batch landed). Exit status 0: every line landed; 1: some did not.
    """
    from predserve.updates.apply import open_update_store
    from predserve.updates.push import push as run_push

    with open_update_store(store, model) as st:
        report = run_push(st, model, file, batch_size=batch_size, skip_bad=skip_bad)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line, error in report.bad:
            click.secho(f"line {line}: {error}", fg="red", err=True)
        for first, last in report.not_applied:
            click.secho(f"lines {first}-{last} (their batch) were not applied", fg="red", err=True)
        if report.stopped_at is not None:
            click.secho(f"stopped at line {report.stopped_at}: fix the line(s) above and push again from there "
                        f"(tail -n +{report.stopped_at} FILE), or use --skip-bad", fg="yellow", err=True)
        snapshot = f" into snapshot {report.snapshot}" if report.snapshot is not None else ""
        click.echo(f"{model}: {report.applied:,} applied, {report.ignored:,} not newer than their id's last update, "
                   f"{len(report.bad):,} bad, {report.lines:,} lines read{snapshot}")
    if not report.complete:
        sys.exit(EXIT_NOT_ALL_LANDED)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--subscription", required=True, help="the Pub/Sub subscription to read, projects/PROJECT/subscriptions/NAME "
              "(PUBSUB_EMULATOR_HOST, when set, points the clients at an emulator)")
@click.option("--store", required=True, help=STORE_HELP)
@click.option("--model", required=True, help="the model whose current snapshot gets the updates")
@click.option("--dead-letter-topic", required=True,
              help="topic for bad messages (projects/PROJECT/topics/NAME), with the reason in their predserve_error attribute")
@click.option("--max-messages", default=1000, show_default=True, type=click.IntRange(1, 1000),
              help="messages pulled and applied per atomic batch (the local runner)")
@click.option("--poll-interval", default=0.05, show_default=True, type=click.FloatRange(0.001, 60),
              help="seconds between pulls of an empty subscription (the local runner)")
@click.pass_context
def stream(ctx: click.Context, subscription: str, store: str, model: str, dead_letter_topic: str,
           max_messages: int, poll_interval: float) -> None:
    """Apply updates from a Pub/Sub subscription to MODEL's current snapshot, as a streaming Beam
    job that runs until stopped. Each message is one update, shaped as a line of `predserve push`
    (without "sequence", its publish time orders it).

    Extra arguments are Beam pipeline options: by default the local DirectRunner (a message is
    acknowledged only after it is applied or dead-lettered); --runner DataflowRunner --project P
    --region R --temp_location gs://B/tmp runs it on Dataflow streaming (docs/pipeline.md).
    """
    import logging

    from predserve.updates.stream import run

    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("predserve").setLevel(logging.INFO)
    run(subscription, store, model, dead_letter_topic, ctx.args, max_messages=max_messages, poll_interval=poll_interval)
