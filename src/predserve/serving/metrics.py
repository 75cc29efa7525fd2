"""Prometheus metrics of the API, and the pure-ASGI middleware that records them.

A pure ASGI middleware (not Starlette's BaseHTTPMiddleware) keeps the per-request cost to a
clock read and one histogram observation.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "predserve_request_seconds", "HTTP request latency by route and status",
            ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.store_read_seconds = Histogram(
            "predserve_store_read_seconds", "Store read latency by operation",
            ["operation"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.model_requests = Counter(
            "predserve_model_requests", "Prediction requests per model and outcome",
            ["model", "outcome"], registry=self.registry,
        )
        self.snapshot_age = Gauge(
            "predserve_snapshot_age_seconds", "Age of each model's current snapshot",
            ["model"], registry=self.registry,
        )
        self.stale_responses = Counter(
            "predserve_stale_responses", "Responses served from a snapshot older than the model's max_age",
            ["model"], registry=self.registry,
        )
        self.read_get = self.store_read_seconds.labels("get")
        self.read_many = self.store_read_seconds.labels("get_many")
        self._outcomes: dict[tuple[str, str], Any] = {}

    def outcome(self, model: str, outcome: str) -> Any:
        """The (cached) request counter of one model and outcome: found / not_found."""
        child = self._outcomes.get((model, outcome))
        if child is None:
            if len(self._outcomes) > 10_000:  # unknown model names must not grow this forever
                self._outcomes.clear()
            child = self._outcomes[(model, outcome)] = self.model_requests.labels(model, outcome)
        return child


class MetricsMiddleware:
    """Times every HTTP request and records it under its route template and status."""

    def __init__(self, app: Callable[..., Any], metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            key = (template, scope["method"], status)
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self.metrics.request_seconds.labels(template, scope["method"], str(status))
            child.observe(time.perf_counter() - started)
