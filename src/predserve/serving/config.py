"""The serving configuration: one frozen value, built by ``predserve serve`` from its options.

Each option of ``predserve serve`` also reads an environment variable (``PREDSERVE_PORT``,
``PREDSERVE_POINTER_TTL``...; see ``predserve serve --help``); names, variables and defaults
are predserve.settings.SERVE's. The command line is the only place configuration is read
from: the resulting :class:`ServeConfig` travels to the worker processes as a Python object,
never through the environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from predserve.settings import serve_default

StalePolicy = Literal["mark", "refuse"]


@dataclass(frozen=True)
class ServeConfig:
    """What the application needs to answer requests (the same in every worker)."""

    store_url: str
    iam_path: str | None = None  # None: the registry's default (./predserve-iam.json)
    auth: bool = not serve_default("no_auth")
    stale: StalePolicy = serve_default("stale")  # a snapshot older than its max_age: mark it, or refuse with 503
    pointer_ttl: float = serve_default("pointer_ttl")  # seconds a model's current-snapshot pointer is cached
    max_batch: int = serve_default("max_batch")  # most ids per batchGet
    max_body: int = serve_default("max_body")  # bytes of request body accepted (batchGet, admin POSTs)
    body_timeout: float = serve_default("body_timeout")  # seconds a request body may take to arrive
    read_timeout: float = serve_default("read_timeout")  # seconds a network store (Bigtable) read may take, retries included
    hedge_after: float = serve_default("hedge_after")  # the latest a slow read of such a store gets a hedge
    # Set by the server, not by an option: the worker processes, and with more than one the
    # directory where they exchange their traffic samples for the console (see traffic.py).
    workers: int = 1
    traffic_dir: str | None = None

    @property
    def network_store(self) -> bool:
        return self.store_url.startswith("bigtable://")

    def store_options(self) -> dict[str, object]:
        """Options for ``open_store``: the read deadlines apply to network stores only."""
        return {"read_timeout": self.read_timeout, "hedge_after": self.hedge_after} if self.network_store else {}

    def warnings(self) -> list[str]:
        """Start-up warnings about a configuration that will refuse or expose every request."""
        if not self.auth:
            return ["authentication is OFF (--no-auth): anyone who can reach this port can read predictions"]
        from predserve.iam import Registry

        registry = Registry(self.iam_path)
        if not registry.path.exists():
            return [f"the service-account file {registry.path} does not exist: every request will get 401. "
                    "Create a key with `predserve iam create NAME --iam PATH`, or pass the right --iam"]
        return []


@dataclass(frozen=True)
class ServerOptions:
    """How the HTTP server runs: address, processes and the limits that protect it from slow clients."""

    host: str = serve_default("host")
    port: int = serve_default("port")
    workers: int = serve_default("workers")
    header_timeout: float = serve_default("header_timeout")  # seconds to receive a request's headers (also closes idle keep-alive connections)
    max_connections: int = serve_default("max_connections")  # connections a worker serves at once (idle keep-alive ones too); more wait
    backlog: int = 1024  # connections the kernel queues before they are accepted
    access_log: bool = serve_default("access_log")

    def __post_init__(self) -> None:
        if not 0.001 <= self.header_timeout <= 60:
            raise ValueError("the header timeout must be between 0.001 and 60 seconds (Granian's range)")

