"""The API's reads from Bigtable: one deadline per read, a hedge for a slow answer, retries budgeted.

A read gets ``deadline`` seconds in all; past it the API answers 503 (within it: the budget
per prediction is 100 ms). Inside the deadline:

- a transient failure (a reset connection, UNAVAILABLE) is retried at once, after a short
  randomised pause (``google.api_core.retry``). Every read is idempotent, so a retry is always
  safe: what limits retries is load;
- a read not answered within the observed p95 of reads (at most ``hedge_after``) gets a
  second attempt racing the first (a hedged read), and the first answer wins; the slow one is
  cancelled. It is sent only if a typical read (the observed median) still fits in what is
  left of the deadline: against a store that is slow on every read, a second read would only
  add load (bench/faults.py).

Retries and hedges draw on one budget (``RetryBudget``): at most ``RETRY_RATIO`` extra
attempts per read on average. When Bigtable is down every read fails; retrying each would
multiply the load on a store trying to come back, so past the budget a failed read is not
retried (503 at once). The defaults, and the measurements they come from, are in
docs/operations.md ("Reads from Bigtable").
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

from google.api_core import exceptions as gexc
from google.api_core.retry import exponential_sleep_generator, retry_target_async

from predserve import settings

T = TypeVar("T")

RETRY_RATIO = 0.2  # extra attempts (retries, hedges) per read the budget allows, on average
RETRY_FLOOR = 10.0  # ...plus this many per second, so a quiet server may still retry
RETRY_BURST = 50.0  # ...and at most this many saved up (a reset fails every read on its connection at once)
MIN_ATTEMPT = 0.002  # seconds left below which no retry is started: it could not finish
LATENCY_WINDOW = 128  # the last reads whose p50 and p95 decide the hedges
UPDATE_EVERY = 16  # reads between two updates of those
RETRYABLE = (gexc.ServiceUnavailable, gexc.Aborted)


@dataclass
class ReadStats:
    """Counts of one store's retries, for the API's metrics."""

    retries: int = 0  # attempts after a failed one
    refused: int = 0  # failed reads the budget did not let retry
    hedges: int = 0  # second attempts started beside a slow first one


class RetryBudget:
    """A token bucket: each read adds ``ratio`` tokens, each second ``floor``; a retry takes one.

    Over any stretch of time, retries are at most ``ratio`` times the reads, plus ``floor`` per
    second, plus the ``burst`` saved up before (gRPC's retry throttling and Finagle's
    RetryBudget work the same way).
    """

    def __init__(self, ratio: float = RETRY_RATIO, floor: float = RETRY_FLOOR, burst: float = RETRY_BURST) -> None:
        self.ratio, self.floor, self.burst = ratio, floor, burst
        self.tokens = burst
        self._refilled = time.monotonic()

    def deposit(self) -> None:
        """A read started."""
        self.tokens = min(self.burst, self.tokens + self.ratio)

    def withdraw(self) -> bool:
        """Take one retry, if the budget holds one."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self._refilled) * self.floor)
        self._refilled = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class BudgetedReads:
    """Runs reads under one deadline each: hedged when slow, retried when failed, within the budget."""

    def __init__(self, deadline: float = settings.READ_TIMEOUT, hedge_after: float = settings.HEDGE_AFTER,
                 budget: RetryBudget | None = None) -> None:
        """``hedge_after=0``: no hedged reads (bench/faults.py measures with and without)."""
        self.deadline = deadline
        self.hedge_cap = min(hedge_after, deadline)
        self.budget = budget or RetryBudget()
        self.stats = ReadStats()
        self.hedge = hedge_after > 0
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._observed = 0
        self._hedge_after = self.hedge_cap
        self._typical = 0.0  # the observed median

    async def read(self, attempt: Callable[[float], Awaitable[T]]) -> T:
        """``attempt(timeout)`` (one try, giving up after ``timeout`` s) until one succeeds.

        Raises the last attempt's error when it is not retryable or the budget is spent, and
        ``RetryError`` (caused by the last error) when the deadline passes.
        """
        started = time.monotonic()
        end = started + self.deadline
        self.budget.deposit()
        try:
            async with asyncio.timeout(self.deadline):  # also bounds what gRPC's own deadline does not (connecting)
                if self.hedge and self.deadline - self._hedge_after >= self._typical:
                    result = await self._hedged(attempt, end)
                else:
                    result = await self._retried(attempt, end)
        except TimeoutError:
            self._observe(self.deadline)  # as slow as a read may be: a store that times out is not hedged
            raise gexc.DeadlineExceeded(f"no answer within {self.deadline * 1000:.0f} ms") from None
        except gexc.RetryError:
            self._observe(self.deadline)
            raise
        self._observe(time.monotonic() - started)
        return result

    async def _hedged(self, attempt: Callable[[float], Awaitable[T]], end: float) -> T:
        tasks = [asyncio.ensure_future(self._retried(attempt, end))]
        try:
            done, _ = await asyncio.wait(tasks, timeout=self._hedge_after)
            if not done and self.budget.withdraw():
                self.stats.hedges += 1
                tasks.append(asyncio.ensure_future(self._retried(attempt, end)))
            racing = set(tasks)
            while True:  # the first success wins; the last failure is raised
                done, racing = await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is None or not racing:
                        return task.result()
        finally:  # the loser, or both when the deadline cancels this read
            for task in tasks:
                if not task.done():
                    task.cancel()
                elif not task.cancelled():
                    task.exception()  # retrieved: a loser's error is not logged as unhandled

    async def _retried(self, attempt: Callable[[float], Awaitable[T]], end: float) -> T:
        """Attempts until one succeeds, each given what is left of the deadline."""
        budget, stats = self.budget, self.stats

        def target() -> Awaitable[T]:
            return attempt(max(MIN_ATTEMPT, end - time.monotonic()))

        def retryable(exc: Exception) -> bool:
            if not isinstance(exc, RETRYABLE) or end - time.monotonic() < MIN_ATTEMPT:
                return False
            if budget.withdraw():
                stats.retries += 1
                return True
            stats.refused += 1
            return False

        return await retry_target_async(target, retryable, exponential_sleep_generator(0.001, 0.01),
                                        timeout=end - time.monotonic())

    def _observe(self, seconds: float) -> None:
        """Note a read's latency (a timed-out one's as the deadline); every UPDATE_EVERY reads,
        re-derive the hedge delay (the p95, at most the cap) and the typical read (the median)."""
        self._latencies.append(seconds)
        self._observed += 1
        if self._observed % UPDATE_EVERY == 0:
            ordered = sorted(self._latencies)
            self._hedge_after = min(self.hedge_cap, ordered[int(len(ordered) * 0.95)])
            self._typical = ordered[len(ordered) // 2]
