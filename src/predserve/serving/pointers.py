"""The serving side's cached view of each model's current snapshot.

Resolving the pointer on every request would cost a store round trip (a network call on
Bigtable), so each model's state is cached for ``ttl`` seconds (default 1 s, ``--pointer-ttl``):
a publish or rollback becomes visible within that time without a restart. Reading a slightly
old pointer is safe because the store's GC keeps every snapshot that was current within its
grace period, which must stay longer than this TTL (see docs/operations.md).

On a network store a pointer read takes a round trip (50 ms from a slow Bigtable): every
request arriving while its model's entry is re-read would wait for it. So there a background
task (``keep_fresh``) re-reads each published model's pointer every half TTL, and requests
read it themselves only when that failed (the store is down: they then get its 503).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Literal

import orjson

from predserve.errors import StoreError
from predserve.store import ModelState, SnapshotInfo, SnapshotStore

MAX_MODELS = 10_000  # names cached at once: unknown names must not grow the cache forever


@dataclass(frozen=True)
class CurrentSnapshot:
    model: str
    info: SnapshotInfo
    state: ModelState
    max_age: float | None
    default_prediction: bytes | None  # the JSON of the model's fallback prediction, if any
    stale_after: float  # the time.time() past which it is stale (infinity without a max_age)
    id: int  # info.id, as a field: a property would be a Python call on every request

    def age(self, now: float | None = None) -> float:
        return (now or time.time()) - (self.info.published_at or self.info.created_at)

    def is_stale(self, now: float | None = None) -> bool:
        return (now or time.time()) > self.stale_after


def current_snapshot(model: str, state: ModelState | None) -> CurrentSnapshot | None:
    """The published snapshot a model's state points at, with its serving metadata."""
    info = state.current_info() if state else None
    if info is None or state is None:
        return None
    default = info.metadata.get("default_prediction")
    max_age = info.metadata.get("max_age")
    return CurrentSnapshot(
        model=model, info=info, state=state, max_age=max_age,
        default_prediction=orjson.dumps(default) if default is not None else None,
        stale_after=math.inf if max_age is None else (info.published_at or info.created_at) + max_age,
        id=info.id,
    )


class PointerCache:
    """Each model's current snapshot (or None), re-read from the store once ``ttl`` has passed.

    ``cached`` answers from memory (the hot path: no coroutine); ``get`` reads the store on a miss,
    ``read_now`` too without a coroutine (embedded stores, whose reads do not wait).
    The entries are a plain dict of (expiry, pointer): a lookup in cachetools' TTLCache runs
    Python code (its timer, its links) costing ~4,500 instructions, a tenth of all the one-id
    route adds to a bare LMDB read (docs/benchmarks.md), where this costs a dict lookup.
    Expiries are on the ``time.perf_counter()`` clock, which the routes read once per request
    and hand to ``cached``. More than MAX_MODELS names (clients choose them) empty the dict.
    """

    def __init__(self, store: SnapshotStore, ttl: float = 1.0) -> None:
        self.store = store
        self.ttl = ttl
        self._cache: dict[str, tuple[float, CurrentSnapshot | None]] = {}  # model -> (perf_counter() expiry, pointer)

    def cached(self, model: str, now: float) -> CurrentSnapshot | None | Literal[False]:
        """The cached pointer at ``now`` (``time.perf_counter()``), or False when it must be read from the store."""
        entry = self._cache.get(model)
        if entry is None or entry[0] <= now:
            return False
        return entry[1]

    def remember(self, model: str, current: CurrentSnapshot | None) -> None:
        """Cache a pointer just read, for ``ttl`` seconds from now."""
        if self.ttl <= 0:
            return
        if len(self._cache) >= MAX_MODELS and model not in self._cache:
            self._cache.clear()
        self._cache[model] = (time.perf_counter() + self.ttl, current)

    async def get(self, model: str) -> CurrentSnapshot | None:
        current = self.cached(model, time.perf_counter())
        if current is not False:
            return current
        current = current_snapshot(model, await self.store.astate(model))
        self.remember(model, current)
        return current

    def read_now(self, model: str) -> CurrentSnapshot | None:
        """The pointer read from the store and remembered, without a coroutine: only for an
        embedded store, whose reads answer without waiting (a network store's would block the loop)."""
        current = current_snapshot(model, self.store.state(model))
        self.remember(model, current)
        return current

    async def keep_fresh(self) -> None:
        """Re-read every cached published model's pointer each half TTL, forever (a worker's task).

        Unknown names (cached as None) are left to expire: clients choose them, so re-reading
        them would let a client set this task's load. A failed read leaves the entry to expire.
        """
        if self.ttl <= 0:
            return
        while True:
            await asyncio.sleep(self.ttl / 2)
            for model, (_, current) in list(self._cache.items()):
                if current is None:
                    continue
                try:
                    self.remember(model, current_snapshot(model, await self.store.astate(model)))
                except StoreError:
                    pass
