"""The API in front of a Bigtable that is frozen, slow, resetting connections or dead.

A real `predserve serve` (default read settings) reads the Bigtable emulator, directly or
through ``tests/support/faultproxy.py``, while threads of HTTP clients on loopback record every
request's start, end and status. The load is bounded: 20 clients at most, a few seconds.
"""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import httpx
import pytest

from predserve.store.bigtable_reads import RetryBudget
from tests.support.bigtable import bigtable_url, private_emulator
from tests.support.faultproxy import FaultProxy
from tests.support.snapshots import publish_rows

MODEL = "scores"
PAUSE = 0.05  # seconds each client waits between requests: a steady load, not a saturating one
TIMEOUT, UNAVAILABLE = 'predserve_store_errors_total{reason="timeout"}', 'predserve_store_errors_total{reason="unavailable"}'
SLACK = 0.015  # seconds of the test machine's own noise allowed on top of a latency bound (2 shared cores)
IDS = [str(i) for i in range(200)]


@dataclass(frozen=True)
class Answer:
    started: float  # time.monotonic()
    ended: float
    status: int

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class Clients:
    """``count`` threads GETting ids of MODEL in a loop, each request recorded (at most ``pause`` apart)."""

    def __init__(self, url: str, count: int = 20, pause: float = 0.0) -> None:
        self.url, self.pause = url, pause
        self.answers: list[Answer] = []
        self.failures: list[str] = []  # requests that got no HTTP answer at all
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(count)]

    def __enter__(self) -> "Clients":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, n: int) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            i = n
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    status = client.get(f"/v1/models/{MODEL}/predictions/{IDS[i % len(IDS)]}").status_code
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                self.answers.append(Answer(started, time.monotonic(), status))  # list.append is atomic
                i += 7
                if self.pause:
                    time.sleep(self.pause)

    def between(self, start: float, end: float) -> list[Answer]:
        return [a for a in list(self.answers) if start <= a.started and a.ended <= end]


def describe(answers: list[Answer]) -> str:
    seconds = sorted(a.seconds for a in answers)
    statuses = collections.Counter(a.status for a in answers)
    return (f"{dict(statuses)}; ms p50 {median(answers) * 1000:.1f}, p99 {quantile(answers, 0.99) * 1000:.1f}, "
            f"max {seconds[-1] * 1000:.1f}") if seconds else "no answers"


def quantile(answers: list[Answer], q: float) -> float:
    seconds = sorted(a.seconds for a in answers)
    return seconds[min(len(seconds) - 1, int(len(seconds) * q))]


def median(answers: list[Answer]) -> float:
    return quantile(answers, 0.5)


def share(answers: list[Answer], status: int) -> float:
    return sum(a.status == status for a in answers) / max(1, len(answers))


def metric(url: str, name: str) -> float:
    """One unlabelled (or summed over labels) sample of the API's /metrics."""
    lines = httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name) and line[len(name)] in " {")


@pytest.fixture
def frozen_store() -> Iterator[tuple[str, dict]]:
    """A published model in a private emulator (a test may freeze it): (store URL, emulator handle)."""
    with private_emulator() as emulator:
        url = bigtable_url()
        publish_rows(url, MODEL, {i: {"score": int(i)} for i in IDS})
        yield url, emulator


@pytest.fixture
def proxied(bigtable_emulator: str, api_server) -> Iterator[tuple[FaultProxy, str]]:
    """A published model on the session's emulator, and `predserve serve` (default read settings)
    reading it through a fault proxy: (proxy, the API's URL)."""
    url = bigtable_url()
    publish_rows(url, MODEL, {i: {"score": int(i)} for i in IDS})
    with FaultProxy(int(bigtable_emulator.rsplit(":", 1)[1])) as proxy:
        server = api_server(url, None, "--no-auth", env={"BIGTABLE_EMULATOR_HOST": proxy.address})
        until_served(server.url)
        yield proxy, server.url


def until_served(url: str, timeout: float = 30.0) -> None:
    """Wait for the first 200 (the first read also opens the gRPC channel)."""
    deadline = time.monotonic() + timeout
    while httpx.get(f"{url}/v1/models/{MODEL}/predictions/1", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the API never served the published model"
        time.sleep(0.1)


def test_a_frozen_bigtable_gives_503s_within_1s_and_200s_soon_after_it_resumes(frozen_store, api_server) -> None:
    """SIGSTOP the emulator for 5 s under 20 clients: every request ends within 1 s, as a 503 while
    it is frozen; 200s are back within 1 s of SIGCONT."""
    url, emulator = frozen_store
    server = api_server(url, None, "--no-auth")
    until_served(server.url)
    with Clients(server.url, count=20) as clients:
        time.sleep(1.5)  # every pointer cached; the load steady
        frozen = time.monotonic()
        os.killpg(emulator["proc"].pid, signal.SIGSTOP)
        try:
            time.sleep(5)
        finally:
            os.killpg(emulator["proc"].pid, signal.SIGCONT)
        resumed = time.monotonic()
        time.sleep(2)
    answers = list(clients.answers)
    assert not clients.failures, clients.failures[:3]
    assert max(a.seconds for a in answers) < 1.0, f"slowest request {max(a.seconds for a in answers):.2f}s"
    during = clients.between(frozen + 0.01, resumed)
    assert len(during) > 100 and {a.status for a in during} == {503}, {a.status for a in during}
    back = [a for a in answers if a.started > resumed and a.status == 200]
    assert back, "no 200 after the resume"
    first_back = min(a.ended for a in back) - resumed
    assert first_back < 1.0, f"first 200 came {first_back:.2f}s after the resume"
    late = [a for a in answers if a.started > resumed + 1.0]
    assert late and share(late, 200) >= 0.95, describe(late)  # a starved test machine may miss a deadline


def test_50ms_added_to_every_read_is_served_and_past_the_budget_503s_come_within_it(proxied) -> None:
    """The store 50 ms slower on every read: served (the old 50 ms read timeout made every one a
    503); 150 ms slower: every request a 503, within the deadline. The p99 bound (the added
    latency plus 5 ms) is measured by bench/faults.py; here the median, on a loaded machine."""
    proxy, url = proxied
    proxy.set(latency=0.05)
    with Clients(url, count=8, pause=PAUSE) as clients:
        time.sleep(3)
    answers = list(clients.answers)
    # The old 50 ms deadline served none; a starved test machine makes some miss the 90 ms one.
    assert len(answers) > 100 and share(answers, 200) >= 0.75, describe(answers)
    assert median(answers) <= 0.05 + SLACK, describe(answers)
    assert min(a.seconds for a in answers) >= 0.05, describe(answers)  # the proxy did slow every read

    proxy.set(latency=0.15)
    with Clients(url, count=8, pause=PAUSE) as clients:
        time.sleep(2)
    answers = list(clients.answers)
    assert len(answers) > 50 and share(answers, 503) == 1.0, describe(answers)
    assert median(answers) <= 0.09 + SLACK and max(a.seconds for a in answers) < 1.0, describe(answers)
    assert metric(url, TIMEOUT) >= len(answers)


def test_reset_connections_are_retried_within_the_deadline(proxied) -> None:
    """Every 50th request resets its connection (and every read in flight on it): they are
    retried and served."""
    proxy, url = proxied
    proxy.set(reset_every=50)
    retries, unavailable = metric(url, "predserve_store_retries_total"), metric(url, UNAVAILABLE)
    with Clients(url, count=8, pause=PAUSE) as clients:
        time.sleep(4)
    answers, counts = list(clients.answers), proxy.counts()
    assert counts.resets >= 3, counts
    assert metric(url, "predserve_store_retries_total") - retries >= counts.resets
    # Not retried, each reset would fail at least its own read as "unavailable" (a starved test
    # machine may still turn some reads into "timeout" 503s).
    assert metric(url, UNAVAILABLE) - unavailable <= counts.resets // 4, describe(answers)


def test_a_dead_store_gets_503s_within_the_deadline_and_at_most_1_2_attempts_per_read(proxied) -> None:
    """Every request resets its connection: 503 within the deadline, and the retry budget keeps
    the attempts reaching the store near the reads asked for; 200s again once it is back."""
    proxy, url = proxied
    proxy.set(reset_every=1)
    started = time.monotonic()
    with Clients(url, count=8, pause=PAUSE) as clients:
        time.sleep(3)
    seconds, answers, counts = time.monotonic() - started, list(clients.answers), proxy.counts()
    assert len(answers) > 100 and share(answers, 503) == 1.0, describe(answers)
    assert median(answers) <= 0.09 + SLACK and max(a.seconds for a in answers) < 1.0, describe(answers)
    # RetryBudget: 0.2 per read, 10 per second, 50 saved up at most.
    assert counts.requests <= 1.2 * len(answers) + 10 * seconds + 50, (counts, len(answers))
    assert metric(url, "predserve_store_retries_refused_total") > 0
    assert metric(url, "predserve_store_errors_total") >= len(answers)  # a stalled machine makes some "timeout"
    assert metric(url, UNAVAILABLE) >= len(answers) / 2
    proxy.set()
    deadline = time.monotonic() + 5
    while httpx.get(f"{url}/v1/models/{MODEL}/predictions/3", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "no 200 within 5 s of the store coming back"
        time.sleep(0.05)


def test_a_hot_tablet_is_hedged(proxied) -> None:
    """Every 10th read takes 200 ms more: each gets a hedge and is served within the deadline
    (unhedged, each would be a 503 at 90 ms)."""
    proxy, url = proxied
    proxy.set(slow_every=10, slow_delay=0.2)
    hedges, timeouts = metric(url, "predserve_store_hedges_total"), metric(url, TIMEOUT)
    with Clients(url, count=8, pause=PAUSE) as clients:
        time.sleep(4)
    answers, counts = list(clients.answers), proxy.counts()
    assert counts.slowed >= 10, counts
    assert metric(url, "predserve_store_hedges_total") - hedges >= counts.slowed * 0.8
    assert metric(url, TIMEOUT) - timeouts <= counts.slowed / 2, describe(answers)  # unhedged: one per slow read
    assert share(answers, 200) >= 0.9, describe(answers)


def test_store_reads_and_errors_are_series_of_the_console_traffic(proxied) -> None:
    """The console's traffic view has a series of the store's reads, with their errors."""
    proxy, url = proxied
    for _ in range(5):
        assert httpx.get(f"{url}/v1/models/{MODEL}/predictions/3", timeout=10).status_code == 200
    proxy.set(latency=0.2)
    for _ in range(3):
        assert httpx.get(f"{url}/v1/models/{MODEL}/predictions/3", timeout=10).status_code == 503
    traffic = httpx.get(f"{url}/v1/console/traffic?seconds=60", timeout=10).json()
    store = [s for s in traffic["series"] if s["route"] == "store reads"]
    assert store and not store[0]["prediction"], [s["route"] for s in traffic["series"]]
    figures = store[0]["last_minute"]
    assert figures["requests"] >= 8 and figures["error_rate"] == round(3 / figures["requests"], 4), figures


def test_the_retry_budget_grants_0_2_per_read_plus_its_floor_and_burst() -> None:
    """Every read failing and asking for a retry: the budget grants about 0.2 per read, and never
    more than 0.2 per read plus 10 per second plus the 50 saved up."""
    budget = RetryBudget(ratio=0.2, floor=10.0, burst=50.0)
    started, granted = time.monotonic(), 0
    for _ in range(10_000):
        budget.deposit()
        granted += budget.withdraw()
    elapsed = time.monotonic() - started
    assert 0.2 * 10_000 <= granted <= 0.2 * 10_000 + 10 * elapsed + 50 + 1, (granted, elapsed)
