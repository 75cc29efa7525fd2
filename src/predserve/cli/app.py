"""The ``predserve`` group itself: its help, its error handling, and the help texts the commands share."""

from __future__ import annotations

import logging
import os
import signal
import threading
import sys
from typing import Any

import click

from predserve.errors import PredserveError

WAREHOUSE_HELP = "warehouse: a DuckDB file path (created if missing)"
STORE_HELP = "store URL: PATH or lmdb://PATH (embedded), bigtable://PROJECT/INSTANCE/TABLE"


def fail(exc: Exception) -> None:
    click.secho(f"error: {exc}", fg="red", err=True)
    sys.exit(1)


# Exit statuses after SIGINT and SIGTERM: 128 + the signal's number, as a shell reports them.
EXIT_INTERRUPTED, EXIT_TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM, so a command unwinds as it does on Ctrl-C."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated()


def exit_now(code: int) -> None:
    """End the process once a command has cleaned up after itself, without the interpreter's
    teardown: with Beam, pyarrow and scikit-learn loaded that takes 0.5-2 s on a busy machine,
    and a stopped command should be gone within a second. Output is flushed first."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


class Group(click.Group):
    """Turns predserve's own errors into one red line and exit code 1 instead of a traceback.

    SIGTERM unwinds a command the way Ctrl-C (SIGINT) does, instead of Python's default of
    ending the process on the spot: the command's cleanup runs, so the children it started
    (the demo's server and its workers, an export's staging files) stop or go with it, and
    then the process ends at once. `predserve serve` installs Granian's own handlers, which
    stop its workers."""

    def invoke(self, ctx: click.Context) -> Any:
        previous = _unwind_on_sigterm()
        try:
            return super().invoke(ctx)
        except PredserveError as exc:
            fail(exc)
        except KeyboardInterrupt:
            exit_now(EXIT_INTERRUPTED)
        except Terminated:
            exit_now(EXIT_TERMINATED)
        finally:
            if previous is not None:  # a command run in process (tests, a library caller) leaves no handler behind
                signal.signal(signal.SIGTERM, previous)


def _unwind_on_sigterm() -> Any:
    """Make SIGTERM raise Terminated while a command runs; returns the handler it replaced, or None
    when it left things as they were (another handler is set, or this is not the main thread,
    where Python allows no handler)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    return signal.signal(signal.SIGTERM, _terminated)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="predserve")
def main() -> None:
    """predserve: BigQuery ML SQL in a warehouse, a Beam export into a snapshot store,
    and a low-latency prediction API.

    \b
    The flow:  predserve sql (CREATE MODEL, ML.PREDICT)  ->  predserve export  ->  predserve serve
    Try it:    predserve demo
    """
