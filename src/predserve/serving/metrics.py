"""Prometheus metrics of the API.

Requests are recorded into plain Python numbers and exposed through prometheus_client's
custom-collector interface at scrape time. prometheus_client's own ``Histogram`` and
``Counter`` take a lock on every observation (for threads a worker does not have: its event
loop runs in one thread); on the hot path they cost a quarter of the request's Python time
(docs/benchmarks.md), while these cost a list index and an addition.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from time import perf_counter
from typing import TYPE_CHECKING, Literal

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from predserve.serving.traffic import TrafficSampler

if TYPE_CHECKING:
    from predserve.store.bigtable_reads import ReadStats

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
UNMATCHED = "unmatched"  # the route label of requests no route answered
UNKNOWN_MODEL = "(unknown)"  # the console's model label for a name this worker has not served a prediction of
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
STORE_SERIES = "store reads"  # the console's traffic series of a network store's reads (its route label)
STORE_ERROR_REASONS = ("timeout", "unavailable", "damaged")  # StoreUnavailable.reason

# What a prediction request (or one id of a batchGet) came to: the stored prediction, the
# model's fallback prediction, or nothing.
Outcome = Literal["found", "default", "not_found"]
OUTCOMES: tuple[Outcome, ...] = ("found", "default", "not_found")


class LatencyHistogram:
    """Observations counted into ``LATENCY_BUCKETS`` (the last slot is +Inf), and their sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus buckets: (upper bound, observations at or below it)."""
        running, out = 0, []
        for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), self.counts):
            running += count
            out.append((bound, float(running)))
        return out


class SampledReads(LatencyHistogram):
    """A store-read histogram that also counts each read in the console's traffic, as a series of its own."""

    __slots__ = ("traffic", "route")

    def __init__(self, traffic: TrafficSampler, route: str) -> None:
        super().__init__()
        self.traffic, self.route = traffic, route

    def observe(self, seconds: float) -> None:
        super().observe(seconds)
        self.traffic.observe(self.route, "", 200, seconds)


class Tally:
    """A counter of one label set."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class Outcomes:
    """One model's predictions by outcome (``OUTCOMES``): counters the routes add to directly."""

    __slots__ = OUTCOMES

    def __init__(self) -> None:
        self.found = self.default = self.not_found = 0


class ApiMetrics:
    """Every metric of one worker process, and its Prometheus registry."""

    def __init__(self, network_store: bool = False, read_stats: "ReadStats | None" = None) -> None:
        """``network_store``: also show store reads in the console's traffic (an embedded store's
        reads take microseconds, and sampling them would cost a share of each request);
        ``read_stats``: the store's retry counts, if it retries."""
        self.requests: dict[tuple[str, str, int], LatencyHistogram] = {}
        self.traffic = TrafficSampler()  # the console's live view (not exported to Prometheus)
        self.sample_store = network_store
        read = (lambda: SampledReads(self.traffic, STORE_SERIES)) if network_store else LatencyHistogram
        self.store_reads = {"get": read(), "get_many": read()}
        self.store_errors = {reason: Tally() for reason in STORE_ERROR_REASONS}
        self.read_stats = read_stats
        self.outcomes: dict[str, Outcomes] = {}  # by model
        self.stale: dict[str, Tally] = {}
        self.read_get = self.store_reads["get"]
        self.read_many = self.store_reads["get_many"]
        self.registry = CollectorRegistry()
        self.registry.register(self)
        self.snapshot_age = Gauge("predserve_snapshot_age_seconds", "Age of each model's current snapshot",
                                  ["model"], registry=self.registry)

    def observe_request(self, route: str, method: str, status: int, started: float, model: str = "") -> None:
        """Record one request that arrived at ``started`` (``time.perf_counter()``) and was answered
        just now: its latency under its route template, method and status, and a count in the
        console's traffic samples under its route and ``model`` (prediction routes). One clock
        read serves both."""
        now = perf_counter()
        seconds = now - started
        histogram = self.requests.get((route, method, status))
        if histogram is None:
            if method not in KNOWN_METHODS:  # clients choose methods: keep the label set bounded
                method = "OTHER"
            histogram = self.requests.setdefault((route, method, status), LatencyHistogram())
        histogram.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # histogram.observe, written out: once per request
        histogram.total += seconds
        if model and model not in self.outcomes:  # clients choose names too: only served models count
            model = UNKNOWN_MODEL
        self.traffic.observe_at(route, model, status, seconds, now)

    def store_failed(self, reason: str, seconds: float) -> None:
        """A prediction request met a store that could not be read (its 503 took ``seconds``)."""
        tally = self.store_errors.get(reason)
        if tally is None:
            tally = self.store_errors.setdefault(reason, Tally())
        tally.value += 1
        if self.sample_store:
            self.traffic.observe(STORE_SERIES, "", 503, seconds)

    def outcomes_of(self, model: str) -> Outcomes:
        """The counters of one model's predictions (only published models get here); all three
        outcomes appear together, so rates can be compared from the start."""
        outcomes = self.outcomes.get(model)
        if outcomes is None:
            outcomes = self.outcomes[model] = Outcomes()
        return outcomes

    def stale_response(self, model: str) -> None:
        tally = self.stale.get(model)
        if tally is None:
            tally = self.stale[model] = Tally()
        tally.value += 1

    def collect(self) -> Iterator[Metric]:
        """prometheus_client's collector interface: the recorded numbers as metric families."""
        requests = HistogramMetricFamily("predserve_request_seconds", "HTTP request latency by route and status",
                                         labels=["route", "method", "status"])
        for (route, method, status), histogram in sorted(self.requests.items()):
            requests.add_metric([route, method, str(status)], histogram.cumulative(), histogram.total)
        yield requests
        reads = HistogramMetricFamily("predserve_store_read_seconds", "Store read latency by operation", labels=["operation"])
        for operation, histogram in self.store_reads.items():
            reads.add_metric([operation], histogram.cumulative(), histogram.total)
        yield reads
        errors = CounterMetricFamily(
            "predserve_store_errors", "Prediction requests answered 503 because the store could not be read, by "
            "reason: timeout (no answer within --read-timeout), unavailable (unreachable, connections reset), damaged",
            labels=["reason"])
        for reason, tally in self.store_errors.items():
            errors.add_metric([reason], tally.value)
        yield errors
        if self.read_stats is not None:
            yield CounterMetricFamily("predserve_store_retries", "Store read attempts after a read's first (transient "
                                      "failures retried within the deadline)", value=self.read_stats.retries)
            yield CounterMetricFamily("predserve_store_retries_refused", "Failed store reads not retried because the "
                                      "retry budget was spent (at most 0.2 extra attempts per read)", value=self.read_stats.refused)
            yield CounterMetricFamily("predserve_store_hedges", "Hedged store reads: a second attempt racing a first "
                                      "one slower than the observed p95", value=self.read_stats.hedges)
        outcomes = CounterMetricFamily(
            "predserve_model_requests", "Predictions asked for, per model and outcome (found, default, not_found); "
            "a batchGet counts each id", labels=["model", "outcome"])
        for model, counts in sorted(self.outcomes.items()):
            for outcome in OUTCOMES:
                outcomes.add_metric([model, outcome], getattr(counts, outcome))
        yield outcomes
        stale = CounterMetricFamily(
            "predserve_stale_responses", "Responses (a GET or a whole batchGet) served from a snapshot older than the "
            "model's max_age; each carries X-Predserve-Stale: true", labels=["model"])
        for model, tally in sorted(self.stale.items()):
            stale.add_metric([model], tally.value)
        yield stale
