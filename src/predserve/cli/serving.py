"""``predserve serve``: the prediction API, every option also read from its ``PREDSERVE_*`` variable."""

from __future__ import annotations

from typing import Any

import click

from predserve.cli.app import STORE_HELP, exit_now, main
from predserve.settings import IAM_FILE, SERVE


def serve_option(name: str, **kwargs: Any) -> Any:
    """The option of `predserve serve` for parameter ``name``: its flag, variables and default from settings.SERVE."""
    setting = SERVE[name]
    if setting.default is not None and not isinstance(setting.default, bool):
        kwargs.setdefault("default", setting.default)
    return click.option(setting.option, name, envvar=list(setting.envvars), show_envvar=True, show_default=True, **kwargs)


@main.command()
@serve_option("store", required=True, help=STORE_HELP)
@serve_option("host")
@serve_option("port", type=click.IntRange(1, 65535),
              help="TCP port; PORT (which Cloud Run sets) is read when PREDSERVE_PORT is not set")
@serve_option("workers", type=click.IntRange(1, 64), help="worker processes (each opens the store read-only)")
@serve_option("iam_path", help=f"service-account file (default: ./{IAM_FILE})")
@serve_option("no_auth", is_flag=True, help="serve without authentication (logs a warning)")
@serve_option("stale", type=click.Choice(["mark", "refuse"]),
              help="when a snapshot is older than its max_age: mark responses stale, or refuse with 503")
@serve_option("pointer_ttl", type=click.FloatRange(0, 10),
              help="seconds a model's current-snapshot pointer is cached: a publish or rollback shows within this time")
@serve_option("max_batch", type=click.IntRange(1), help="most ids per batchGet")
@serve_option("max_body", type=click.IntRange(1), help="most bytes of request body (batchGet and admin requests); 413 beyond")
@serve_option("read_timeout", type=click.FloatRange(0.001),
              help="seconds a network store (Bigtable) read may take, retries and hedge included; 503 beyond")
@serve_option("hedge_after", type=click.FloatRange(0),
              help="the latest a slow Bigtable read gets a second attempt racing it (sooner: the observed p95 "
                   "of reads); 0: no hedged reads")
@serve_option("header_timeout", type=click.FloatRange(0.001, 60),
              help="seconds a client has to send a request's headers; also how long an idle connection stays open")
@serve_option("body_timeout", type=click.FloatRange(0.001), help="seconds a client has to send a request's body; 408 beyond")
@serve_option("max_connections", type=click.IntRange(1),
              help="connections each worker serves at once, idle keep-alive ones included; more wait until one closes")
@serve_option("access_log", is_flag=True, help="log every request as a JSON line")
def serve(store: str, host: str, port: int, workers: int, iam_path: str | None, no_auth: bool, stale: str,
          pointer_ttl: float, max_batch: int, max_body: int, read_timeout: float, hedge_after: float, header_timeout: float,
          body_timeout: float, max_connections: int, access_log: bool) -> None:
    """Serve predictions over HTTP from STORE (opened read-only).

    Every option can also be set by the environment variable shown beside it.
    """
    from predserve.serving.config import ServeConfig, ServerOptions
    from predserve.serving.server import run_server

    config = ServeConfig(store, iam_path=iam_path, auth=not no_auth, stale=stale, pointer_ttl=pointer_ttl,  # type: ignore[arg-type]
                         max_batch=max_batch, max_body=max_body, body_timeout=body_timeout, read_timeout=read_timeout,
                         hedge_after=hedge_after)
    options = ServerOptions(host=host, port=port, workers=workers, header_timeout=header_timeout,
                            max_connections=max_connections, access_log=access_log)
    run_server(config, options)
    exit_now(0)  # stopped by SIGINT/SIGTERM, every worker gone: skip the interpreter's teardown
