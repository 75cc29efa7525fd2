"""Live traffic for the console: requests, errors and latency per route and model, per second.

``ApiMetrics.observe_request`` (the call that feeds the Prometheus histograms) also counts each
request here, into the current second's cell for its (route, model): a request count, the
4xx and 5xx among them, and the latency's bin (4 bins per doubling, so a percentile read from
them is within 19% of the exact one). Completed seconds go into a ring of the last
``WINDOW_SECONDS``; nothing is computed until the console asks (``traffic_report``).

Several worker processes each count their own requests; ``traffic_share.py`` brings the other
workers' seconds to the one answering the console, as lines of ``encode_second``.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections import deque
from typing import Any, Iterable

import orjson

WINDOW_SECONDS = 300  # seconds of traffic kept per worker
SUMMARY_SECONDS = 60  # the per-route table's figures cover this many seconds
# Upper bounds of the latency bins: 4 per doubling from 10 µs up to about 42 s, then one bin above.
LATENCY_BOUNDS = tuple(1e-5 * 2 ** (i / 4) for i in range(89))
ALL_PREDICTIONS = "*"  # the route and model of the series that sums every prediction route

Key = tuple[str, str]  # (route template, model; "" outside the prediction routes)


class Cell:
    """One (route, model)'s requests in one second."""

    __slots__ = ("requests", "client_errors", "server_errors", "bins")

    def __init__(self) -> None:
        self.requests = 0
        self.client_errors = 0
        self.server_errors = 0
        self.bins: dict[int, int] = {}  # latency bin index -> requests

    def add(self, other: "Cell") -> None:
        self.requests += other.requests
        self.client_errors += other.client_errors
        self.server_errors += other.server_errors
        bins = self.bins
        for index, count in other.bins.items():
            bins[index] = bins.get(index, 0) + count

    def to_list(self) -> list[Any]:
        return [self.requests, self.client_errors, self.server_errors, list(self.bins.items())]

    @classmethod
    def from_list(cls, data: list[Any]) -> "Cell":
        """A cell read from a worker's file, checked field by field (ValueError/TypeError when malformed)."""
        requests, client_errors, server_errors, bins = data
        cell = cls()
        cell.requests, cell.client_errors, cell.server_errors = int(requests), int(client_errors), int(server_errors)
        cell.bins = {int(index): int(count) for index, count in bins if 0 <= int(index) <= len(LATENCY_BOUNDS)}
        return cell


Seconds = dict[int, dict[Key, Cell]]  # second (Unix time) -> its cells


class TrafficSampler:
    """One worker's per-second cells for the last ``window`` seconds."""

    def __init__(self, window: int = WINDOW_SECONDS) -> None:
        self.second = 0  # the current second (Unix time)
        self.until = -math.inf  # the time.perf_counter() at which it ends
        self.cells: dict[Key, Cell] = {}
        self.past: deque[tuple[int, dict[Key, Cell]]] = deque(maxlen=window)  # completed seconds with requests

    def roll(self, wall: float, now: float) -> None:
        """Make the second of ``wall`` (``time.time()``) the current one; ``now``: ``time.perf_counter()`` at that instant."""
        second = int(wall)
        if second != self.second:
            if self.cells:
                self.past.append((self.second, self.cells))
                self.cells = {}
            self.second = second
        self.until = now + (second + 1 - wall)

    def observe(self, route: str, model: str, status: int, seconds: float) -> None:
        """Count one request that ended now, in the second the wall clock says."""
        wall, now = time.time(), time.perf_counter()
        if int(wall) != self.second:
            self.roll(wall, now)
        self.observe_at(route, model, status, seconds, now)

    def observe_at(self, route: str, model: str, status: int, seconds: float, now: float) -> None:
        """Count one request that ended at ``now`` (``time.perf_counter()``, which the request's
        latency was read from): the hot path, a dict lookup and three increments. The wall clock
        is read once a second, when ``now`` passes the current second's end (the two clocks
        drift apart by well under a millisecond in a second; a step of the wall clock is seen
        at the next second's start)."""
        if now >= self.until:
            self.roll(time.time(), now)
        cell = self.cells.get((route, model))
        if cell is None:
            cell = self.cells[(route, model)] = Cell()
        cell.requests += 1
        if status >= 400:
            if status >= 500:
                cell.server_errors += 1
            else:
                cell.client_errors += 1
        index = bisect_left(LATENCY_BOUNDS, seconds)
        bins = cell.bins
        bins[index] = bins.get(index, 0) + 1

    def since(self, start: int) -> list[tuple[int, dict[Key, Cell]]]:
        """The seconds from ``start`` on (the current one included, as far as it went)."""
        seconds = [(second, cells) for second, cells in self.past if second >= start]
        if self.cells and self.second >= start:
            seconds.append((self.second, self.cells))
        return seconds



def encode_second(second: int, cells: dict[Key, Cell]) -> bytes:
    """One second's cells as a line of JSON: ``[second, [[route, model, requests, 4xx, 5xx, [[bin, count]...]]...]]``."""
    return orjson.dumps([second, [[route, model, *cell.to_list()] for (route, model), cell in cells.items()]]) + b"\n"


def decode_second(line: bytes) -> tuple[int, dict[Key, Cell]]:
    """``encode_second`` read back, checked (ValueError or TypeError when malformed)."""
    second, cells = orjson.loads(line)
    if not isinstance(cells, list):
        raise ValueError("a second's cells must be a list")
    parsed: dict[Key, Cell] = {}
    for route, model, *cell in cells:
        parsed[(str(route), str(model))] = Cell.from_list(cell)
    return int(second), parsed


def merge(views: Iterable[list[tuple[int, dict[Key, Cell]]]]) -> Seconds:
    """Several workers' seconds summed cell by cell."""
    merged: Seconds = {}
    for view in views:
        for second, cells in view:
            into = merged.setdefault(second, {})
            for key, cell in cells.items():
                total = into.get(key)
                if total is None:
                    total = into[key] = Cell()
                total.add(cell)
    return merged


def quantile(bins: dict[int, int], total: int, q: float) -> float | None:
    """The ``q`` quantile (seconds) of binned latencies, interpolated within its bin as Prometheus does."""
    if total <= 0:
        return None
    rank = q * total
    running = 0
    for index in sorted(bins):
        count = bins[index]
        if running + count >= rank:
            if index >= len(LATENCY_BOUNDS):  # above the last bound: report the bound
                return LATENCY_BOUNDS[-1]
            low = LATENCY_BOUNDS[index - 1] if index > 0 else 0.0
            return low + (LATENCY_BOUNDS[index] - low) * (rank - running) / count
        running += count
    return LATENCY_BOUNDS[-1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _figures(cell: Cell, seconds: int) -> dict[str, Any]:
    requests = cell.requests
    return {
        "requests": requests, "rate": round(requests / seconds, 3),
        "p50_ms": _ms(quantile(cell.bins, requests, 0.5)), "p99_ms": _ms(quantile(cell.bins, requests, 0.99)),
        "error_rate": round(cell.server_errors / requests, 4) if requests else None,
        "client_error_rate": round(cell.client_errors / requests, 4) if requests else None,
    }


def traffic_report(seconds: Seconds, now: int, window: int, prediction_routes: frozenset[str]) -> dict[str, Any]:
    """Per (route, model), and summed over the prediction routes: one point per second of the last
    ``window`` (requests, 4xx, 5xx, p50 and p99 in ms; null percentiles where a second had no
    request), and the figures of the last ``SUMMARY_SECONDS`` whatever the window."""
    start, summary_start = now - window + 1, now - SUMMARY_SECONDS + 1
    all_key = (ALL_PREDICTIONS, ALL_PREDICTIONS)
    keys = {all_key} | {key for cells in seconds.values() for key in cells}
    points: dict[Key, list[list[Any]]] = {key: [] for key in keys}
    totals: dict[Key, Cell] = {key: Cell() for key in keys}
    for second in range(min(start, summary_start), now + 1):
        cells = dict(seconds.get(second, {}))
        everything = cells[all_key] = Cell()
        for key, cell in cells.items():
            if key[0] in prediction_routes:
                everything.add(cell)
        for key in keys:
            cell = cells.get(key)
            if second >= summary_start and cell is not None:
                totals[key].add(cell)
            if second < start:
                continue
            if cell is None or not cell.requests:
                points[key].append([second, 0, 0, 0, None, None])
            else:
                points[key].append([second, cell.requests, cell.client_errors, cell.server_errors,
                                    _ms(quantile(cell.bins, cell.requests, 0.5)), _ms(quantile(cell.bins, cell.requests, 0.99))])
    ordered = sorted(keys, key=lambda k: (k != all_key, k[0] not in prediction_routes, k))
    return {
        "series": [{"route": route, "model": model, "prediction": route in prediction_routes or (route, model) == all_key,
                    "points": points[(route, model)], "last_minute": _figures(totals[(route, model)], SUMMARY_SECONDS)}
                   for route, model in ordered],
    }
