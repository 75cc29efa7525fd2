"""Where a prediction request's Python time goes: the serving app called in-process (no
server, no socket), stage by stage, beside the 10-line raw ASGI app called the same way.

Each figure is the best of 7 runs of N calls, in microseconds per call, on one pinned CPU.
What the app adds to a request is "one id, whole app" minus "raw ASGI app"; the server's
own cost per request is measured by bench/serve.py (its raw-app throughput).

    .venv/bin/python bench/serve_profile.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import time
from typing import Any, Awaitable, Callable

from common import OUT
from raw_app import app as raw_app
from serve import ROWS, lmdb_store, reader_key

from predserve.serving import ServeConfig, ServingContext, create_app
from predserve.serving.asgi import header
from predserve.serving.auth import authorize
from predserve.serving.predictions import GET_ROUTE, get_one, match


async def best(calls: int, make: Callable[[int], Awaitable[Any]]) -> float:
    """Microseconds per call of ``make(i)`` awaited ``calls`` times: the best of 7 runs."""
    runs = []
    for _ in range(7):
        started = time.perf_counter()
        for i in range(calls):
            await make(i)
        runs.append((time.perf_counter() - started) / calls * 1e6)
    return round(min(runs), 2)


async def nothing() -> None:
    return None


async def synchronous(function: Callable[..., Any], *args: Any) -> Any:
    """A plain function's call as an awaitable, for ``best`` (get_one is no coroutine on an embedded store)."""
    return function(*args)


async def main(calls: int) -> dict[str, float]:
    iam, key = reader_key()
    config = ServeConfig(lmdb_store(), iam_path=iam)
    context = ServingContext.open(config)
    app = create_app(config, context)
    gc.collect()
    gc.freeze()
    rng = random.Random(1)
    ids = [str(rng.randint(1, ROWS)) for _ in range(calls)]
    headers = [(b"host", b"127.0.0.1"), (b"user-agent", b"wrk"), (b"authorization", f"Bearer {key}".encode())]
    scopes = [{"type": "http", "method": "GET", "path": f"/v1/models/churn/predictions/{i}", "headers": headers} for i in ids]
    batches = [json.dumps({"ids": ids[start:start + 100]}).encode() for start in range(0, calls, 100)]
    batch_scope = {"type": "http", "method": "POST", "path": "/v1/models/churn/predictions:batchGet", "headers": headers}
    snapshot = await context.pointers.get("churn")
    raws = [i.encode() for i in ids]

    async def send(message: Any) -> None:
        return None

    class BatchBody:
        """The ``receive`` of the i-th batch (each batch has 100 other random ids: the store's pages are not all hot)."""

        def __init__(self, i: int) -> None:
            self.body = batches[i % len(batches)]

        async def __call__(self) -> dict[str, Any]:
            return {"type": "http.request", "body": self.body, "more_body": False}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def metrics_of_one_request(i: int) -> None:
        context.metrics.read_get.observe(0.00001)
        context.metrics.outcomes_of("churn").found += 1
        context.metrics.observe_request(GET_ROUTE, "GET", 200, time.perf_counter() - 0.00003)

    async def authorize_one(i: int) -> None:
        authorize(context.keys, header(scopes[i], b"authorization"), "churn")

    async def match_one(i: int) -> None:
        match(scopes[i]["path"])

    stages = {
        "raw ASGI app (baseline)": lambda i: raw_app(scopes[i], receive, send),
        "one id, whole app": lambda i: app(scopes[i], receive, send),
        "  get_one (auth, pointer, read, metrics)": lambda i: synchronous(get_one, context, scopes[i], "churn", ids[i], time.perf_counter()),
        "    store read (store.aget)": lambda i: context.store.aget("churn", snapshot.id, raws[i]),  # type: ignore[union-attr]
        "    auth (header + authorize)": authorize_one,
        "    current snapshot (pointer cache)": lambda i: context.current("churn"),
        "    metrics of one request": metrics_of_one_request,
        "  routing (match)": match_one,
        "an empty coroutine (the harness)": lambda i: nothing(),
        "100 ids, whole app": lambda i: app(batch_scope, BatchBody(i), send),
        "  store read of 100 ids (store.aget_many)":
            lambda i: context.store.aget_many("churn", snapshot.id, raws[i % len(batches) * 100:][:100]),  # type: ignore[union-attr]
    }
    result = {}
    for name, make in stages.items():
        result[name] = await best(len(batches) if "100 ids" in name else calls, make)
        print(f"{result[name]:8.2f} us  {name}", flush=True)
    context.close()
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "serve_profile.json").write_text(json.dumps(asyncio.run(main(args.calls)), indent=2))
