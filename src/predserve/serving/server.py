"""Running the serving app under Granian: worker processes, limits for slow clients, logs.

Granian (a Rust HTTP server, hyper underneath) was chosen over uvicorn by measurement and for
its HTTP/1 header-read timeout, which uvicorn lacks (see docs/benchmarks.md and
docs/operations.md). The configuration reaches the workers as a Python object: each worker
builds the app with ``create_app(config)`` and opens the store after it starts.
"""

from __future__ import annotations

import logging
from functools import partial

from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP1Settings
from granian.server import Server

from predserve.serving.app import create_app
from predserve.serving.config import ServeConfig, ServerOptions
from predserve.serving.logs import ACCESS_FORMAT, log_config
from predserve.store import open_store

log = logging.getLogger("predserve.serving")


def check_store(config: ServeConfig) -> None:
    """Open an embedded store once before the workers start, so a missing or damaged store stops
    ``predserve serve`` with its reason. (A network store is checked by each worker: a gRPC
    channel must not be created before ``fork``.)"""
    if not config.network_store:
        open_store(config.store_url, readonly=True).close()


def build_server(config: ServeConfig, options: ServerOptions) -> Server:
    server = Server(
        "predserve.serving.app:create_app",
        address=options.host,
        port=options.port,
        interface=Interfaces.ASGI,
        workers=options.workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=False,
        backlog=options.backlog,
        backpressure=options.max_connections,  # Granian holds a permit per open connection
        http1_settings=HTTP1Settings(header_read_timeout=round(options.header_timeout * 1000)),
        log_dictconfig=log_config(options.access_log),
        log_access=options.access_log,
        log_access_format=ACCESS_FORMAT,
        respawn_failed_workers=True,
        workers_kill_timeout=10,
    )
    return server


def run_server(config: ServeConfig, options: ServerOptions) -> None:
    """Serve until SIGINT or SIGTERM (then finish the requests in flight and stop)."""
    check_store(config)
    server = build_server(config, options)  # configures logging
    for warning in config.warnings():
        log.warning(warning)
    server.serve(target_loader=partial(create_app, config), wrap_loader=False)
