"""Running the serving app under Granian: worker processes, limits for slow clients, logs.

Granian (a Rust HTTP server, hyper underneath) was chosen over uvicorn by measurement and for
its HTTP/1 header-read timeout, which uvicorn lacks (see docs/benchmarks.md and
docs/operations.md). The configuration reaches the workers as a Python object: each worker
builds the app with ``create_app(config)`` and opens the store after it starts.
"""

from __future__ import annotations

import faulthandler
import logging
import socket
import tempfile
from contextlib import ExitStack
from dataclasses import replace
from functools import partial

from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP1Settings
from granian.server import Server

from predserve.errors import PredserveError
from predserve.serving.app import create_app
from predserve.serving.config import ServeConfig, ServerOptions
from predserve.serving.logs import ACCESS_FORMAT, log_config
from predserve.store import open_store

log = logging.getLogger("predserve.serving")


class ServeError(PredserveError):
    """The server cannot start (the port is taken)."""


def check_store(config: ServeConfig) -> None:
    """Open an embedded store once before the workers start, so a missing or damaged store stops
    ``predserve serve`` with its reason. (A network store is checked by each worker: a gRPC
    channel must not be created before ``fork``.)"""
    if not config.network_store:
        open_store(config.store_url, readonly=True).close()


def check_port(host: str, port: int) -> None:
    """Refuse a port another server listens on. Granian's workers bind with SO_REUSEPORT, which
    would let a second server share the port silently, each answering part of the requests;
    a bind without SO_REUSEPORT fails on such a port (SO_REUSEADDR only lets it past the
    TIME_WAIT connections a previous server left, as every server's bind does)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}; is another server running there? "
                             "Stop it or choose another --port") from None


def build_server(options: ServerOptions) -> Server:
    """Granian with predserve's limits and logs (configuring logging is part of building it)."""
    return Server(
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


def run_server(config: ServeConfig, options: ServerOptions) -> None:
    """Serve until SIGINT or SIGTERM (then finish the requests in flight and stop)."""
    # A fatal signal (a SIGBUS from an LMDB file truncated between the store's size check and
    # its read) is logged with the Python traceback; forked workers inherit the handler.
    faulthandler.enable()
    check_store(config)
    check_port(options.host, options.port)
    server = build_server(options)  # configures logging
    for warning in config.warnings():
        log.warning(warning)
    with ExitStack() as cleanup:
        if options.workers > 1:  # the workers' traffic samples meet here for the console (traffic.py)
            shared = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="predserve-traffic-"))
            config = replace(config, workers=options.workers, traffic_dir=shared)
        server.serve(target_loader=partial(create_app, config), wrap_loader=False)
