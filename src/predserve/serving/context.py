"""The serving context: everything a request needs, opened once per worker process.

A worker opens its context after it starts (the store must be opened in the process that
reads it: an LMDB environment must not cross ``fork``, a gRPC channel must be created in
the running event loop). Tests open one directly and hand it to ``create_app``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from predserve.iam import Registry
from predserve.serving.config import ServeConfig
from predserve.serving.errors import ApiError
from predserve.serving.metrics import ApiMetrics
from predserve.serving.pointers import CurrentSnapshot, PointerCache
from predserve.serving.traffic_share import TrafficShare
from predserve.store import SnapshotStore, open_store


@dataclass
class ServingContext:
    config: ServeConfig
    store: SnapshotStore
    pointers: PointerCache
    registry: Registry
    metrics: ApiMetrics
    keys: Registry | None = field(init=False)  # the registry requests are checked against; None without auth
    embedded: bool = field(init=False)  # the store is an embedded one (LMDB), see __post_init__
    # Where the workers exchange their traffic samples (several workers only, see traffic.py).
    traffic_share: TrafficShare | None = field(init=False)

    def __post_init__(self) -> None:
        self.keys = self.registry if self.config.auth else None
        # An embedded store answers in microseconds without waiting: the routes call its
        # blocking read and spare a coroutine per request (network stores: their async reads).
        self.embedded = not self.config.network_store
        self.traffic_share = TrafficShare(self.config.traffic_dir, self.config.workers) if self.config.traffic_dir else None

    @classmethod
    def open(cls, config: ServeConfig) -> "ServingContext":
        """Open the store read-only and load the service accounts."""
        store = open_store(config.store_url, readonly=True, **config.store_options())
        try:
            registry = Registry(config.iam_path)
        except BaseException:
            store.close()
            raise
        metrics = ApiMetrics(network_store=config.network_store, read_stats=store.read_stats)
        return cls(config, store, PointerCache(store, config.pointer_ttl), registry, metrics)

    def close(self) -> None:
        self.store.close()

    async def current(self, model: str) -> tuple[CurrentSnapshot, bool]:
        """The model's current snapshot and whether it is stale (refused here if so configured)."""
        snapshot = self.pointers.cached(model, time.perf_counter())
        return self.judge(model, await self.pointers.get(model) if snapshot is False else snapshot)

    def current_now(self, model: str, now: float) -> tuple[CurrentSnapshot, bool]:
        """``current`` on an embedded store, without a coroutine (a pointer not cached is read
        there and then: an embedded read does not wait). ``now``: the request's ``time.perf_counter()``."""
        snapshot = self.pointers.cached(model, now)
        return self.judge(model, self.pointers.read_now(model) if snapshot is False else snapshot)

    def judge(self, model: str, snapshot: CurrentSnapshot | None) -> tuple[CurrentSnapshot, bool]:
        """Whether the model has a current snapshot (404 if not) and if it is stale."""
        if snapshot is None:
            raise ApiError(404, f"model {model!r} has no published snapshot in this store")
        stale = time.time() > snapshot.stale_after
        if stale and self.config.stale == "refuse":
            raise ApiError(503, f"model {model!r}: snapshot {snapshot.id} is {snapshot.age():.0f}s old, "
                                f"over its max_age of {snapshot.max_age:.0f}s; re-run the export")
        return snapshot, stale

    async def published(self) -> list[CurrentSnapshot]:
        """The current snapshot of every model that has one."""
        snapshots = [await self.pointers.get(name) for name in await self.store.amodels()]
        return [snapshot for snapshot in snapshots if snapshot is not None]
