"""What one caller sees: sequential one-id gets from the Python client on loopback (the
README's latency claim, issue 26 item 12), beside the same client against a 10-line raw ASGI
app on the same server (bench/raw_app.py), alternating within each round.

Each request waits for the previous answer (no concurrency): the figure is the whole round
trip of `Client.get` (the client's own Python, httpx, loopback TCP, Granian, the route, the
LMDB read), not the server's capacity (bench/serve.py measures that). The server is pinned
to CPU 0 and this process to CPU 1, as in bench/serve.py.

    .venv/bin/python bench/client_latency.py [--rows 100000] [--requests 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time

import numpy as np

from common import OUT, ratio
from serve import LOAD_CPU, Server, lmdb_store, reader_key

WARM_UP = 300  # requests before the measured ones: the connection, the pointer cache, the pages


def sequential(port: int, key: str, ids: list[str]) -> dict[str, float]:
    """p50 / p99 / max in ms of one-id gets made one after another through one Client."""
    from predserve.client import Client

    with Client(f"http://127.0.0.1:{port}", key, retries=0) as client:
        for entity_id in ids[:WARM_UP]:
            client.get("churn", entity_id)
        took = []
        for entity_id in ids[WARM_UP:]:
            started = time.perf_counter()
            client.get("churn", entity_id)
            took.append(time.perf_counter() - started)
    ms = np.array(took) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "max_ms": round(float(ms.max()), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="stored predictions (the demo's churn model)")
    parser.add_argument("--requests", type=int, default=3000, help="measured requests per server and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    store = lmdb_store(args.rows)
    iam, key = reader_key()
    rounds: dict[str, list[dict[str, float]]] = {"predserve": [], "raw-granian": []}
    for number in range(args.rounds):
        ids = [str(random.randint(1, args.rows)) for _ in range(WARM_UP + args.requests)]
        for kind in rounds:
            with Server(kind, store, iam) as server:
                rounds[kind].append(sequential(server.port, key, ids))
        print(f"round {number + 1}: predserve {rounds['predserve'][-1]}, raw app {rounds['raw-granian'][-1]}, "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
    summary = {kind: {k: statistics.median(r[k] for r in results) for k in ("p50_ms", "p99_ms", "max_ms")}
               for kind, results in rounds.items()}
    print(f"sequential one-id gets from predserve.client.Client, {args.requests:,} per round, medians of {args.rounds} rounds:")
    for kind, figures in summary.items():
        print(f"  {kind:<12} p50 {figures['p50_ms']:.2f} ms  p99 {figures['p99_ms']:.2f} ms  max {figures['max_ms']:.1f} ms")
    print(f"  predserve vs raw app: p50 {ratio(summary['predserve']['p50_ms'], summary['raw-granian']['p50_ms'])}, "
          f"p99 {ratio(summary['predserve']['p99_ms'], summary['raw-granian']['p99_ms'])}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "client_latency.json").write_text(json.dumps({"args": vars(args), "rounds": rounds, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
