"""The serving side's cached view of each model's current snapshot.

Resolving the pointer on every request would cost a store round trip (a network call on
Bigtable), so each model's state is cached for ``ttl`` seconds (default 1 s): a publish or
rollback becomes visible within that time without a restart. Reading a slightly old pointer
is safe because GC keeps the last few published snapshots intact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from predserve.store.base import ModelState, SnapshotInfo


@dataclass(frozen=True)
class CurrentSnapshot:
    model: str
    info: SnapshotInfo
    state: ModelState
    max_age: float | None
    default_prediction: bytes | None  # the JSON of the model's fallback prediction, if any

    @property
    def id(self) -> int:
        return self.info.id

    def age(self, now: float | None = None) -> float:
        return (now or time.time()) - (self.info.published_at or self.info.created_at)

    def is_stale(self, now: float | None = None) -> bool:
        return self.max_age is not None and self.age(now) > self.max_age


def _current(model: str, state: ModelState | None) -> CurrentSnapshot | None:
    info = state.current_info() if state else None
    if info is None or state is None:
        return None
    default = info.metadata.get("default_prediction")
    return CurrentSnapshot(
        model=model, info=info, state=state, max_age=info.metadata.get("max_age"),
        default_prediction=orjson.dumps(default) if default is not None else None,
    )


class PointerCache:
    def __init__(self, store: Any, ttl: float = 1.0) -> None:
        self.store = store
        self.ttl = ttl
        self._cache: dict[str, tuple[float, CurrentSnapshot | None]] = {}

    async def get(self, model: str) -> CurrentSnapshot | None:
        hit = self._cache.get(model)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        current = _current(model, await self.store.astate(model))
        if len(self._cache) > 10_000:  # unknown names must not grow the cache forever
            self._cache.clear()
        self._cache[model] = (now, current)
        return current
