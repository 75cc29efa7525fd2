"""A slow or failing Bigtable in front of the API: one-id latency and errors per fault and read setting.

The Bigtable emulator behind tests/support/faultproxy.py (per-request delays and connection resets at
the HTTP/2 frame level; see its docstring for what that models), `predserve serve` reading
through it, and bench/loadgen.py sending one-id GETs at a fixed rate (open loop: latency from
each request's scheduled send time). Each fault is measured under each read setting, the
settings alternating from round to round (one server at a time):

    default         the defaults: 90 ms deadline, hedge after the observed p95 (at most 50 ms), retry budget
    no-hedge        the same without hedged reads (--hedge-after 0)
    old-50ms        the defaults before issue 23: one 50 ms deadline, no hedge (--read-timeout 0.05 --hedge-after 0)

Faults: none, +50 ms per read, +150 ms per read (past the budget), 1 read in 10 +200 ms (a hot
tablet), 1 connection reset per 100 reads, every read reset (a dead store). Each run also
reports the attempts that reached the proxy per request sent (the server's background pointer
reads, 2 a second, included) and the API's CPU time per request. Loopback only, bounded:
--rate at most 1,000/s, --duration at most 20 s per run.

    .venv/bin/python bench/faults.py [--rate 200] [--duration 5] [--rounds 3] [--faults none,slow50,...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx
import orjson

from common import ROOT, Emulator, free_port, stop, wait_port

PY = sys.executable
ROWS = 10_000
MODEL = "churn"
SETTINGS = {
    "default": [],
    "no-hedge": ["--hedge-after", "0"],
    "old-50ms": ["--read-timeout", "0.05", "--hedge-after", "0"],
}
FAULTS: dict[str, dict[str, float]] = {
    "none": {},
    "slow50": {"latency": 0.05},
    "slow150": {"latency": 0.15},
    "hot1in10": {"slow_every": 10, "slow_delay": 0.2},
    "reset1in100": {"reset_every": 100},
    "dead": {"reset_every": 1},
}


def publish(url: str) -> None:
    """ROWS predictions of MODEL, published straight through the store."""
    from predserve.store import open_store

    with open_store(url) as store:
        snapshot = store.create_snapshot(MODEL).id
        writer = store.writer(MODEL, snapshot)
        ids = [str(i).encode() for i in range(1, ROWS + 1)]
        writer.write_columns(ids, [orjson.dumps({"model": MODEL, "id": i.decode(), "snapshot": snapshot,
                                                 "prediction": {"churn": 0.5}}) for i in ids])
        writer.close()
        store.finish_snapshot(MODEL, snapshot, ROWS)
        store.publish(MODEL, snapshot)


class Api:
    """`predserve serve` (no auth, one worker) reading Bigtable through the proxy."""

    def __init__(self, url: str, proxy: str, extra: list[str]) -> None:
        self.port = free_port()
        env = {**os.environ, "BIGTABLE_EMULATOR_HOST": proxy, "PYTHONPATH": str(ROOT / "src")}
        # --header-timeout 60: the load generator's idle keep-alive connections must outlive a run
        self.proc = subprocess.Popen([PY, "-m", "predserve.cli", "serve", "--store", url, "--no-auth", "--port",
                                      str(self.port), "--header-timeout", "60", *extra], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __enter__(self) -> "Api":
        wait_port(self.port)
        deadline = time.monotonic() + 30
        while httpx.get(f"http://127.0.0.1:{self.port}/v1/models/{MODEL}/predictions/1", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                stop(self.proc)
                raise RuntimeError("the API never served the model")
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the server and its worker processes so far."""
        pids = [self.proc.pid] + [int(p) for p in open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read().split()]
        ticks = 0
        for pid in pids:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")


def load(port: int, rate: float, duration: float) -> dict[str, Any]:
    cmd = [PY, str(ROOT / "bench/loadgen.py"), "--port", str(port), "--rate", str(rate), "--duration", str(duration),
           "--connections", "32", "--max-id", str(ROWS), "--path-template", f"/v1/models/{MODEL}/predictions/{{id}}"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--settings", default=",".join(SETTINGS))
    args = parser.parse_args()
    rate, duration = min(args.rate, 1000.0), min(args.duration, 20.0)
    faults, settings = args.faults.split(","), args.settings.split(",")
    sys.path.insert(0, str(ROOT / "src"))
    from tests.support.bigtable import bigtable_url
    from tests.support.faultproxy import FaultProxy

    emulator = Emulator()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {f: {s: [] for s in settings} for f in faults}
    try:
        url = bigtable_url()
        publish(url)
        with FaultProxy(emulator.port) as proxy:
            for round_ in range(args.rounds):
                for name in settings if round_ % 2 == 0 else settings[::-1]:  # one server at a time
                    proxy.set()
                    with Api(url, proxy.address, SETTINGS[name]) as api:
                        for fault in faults:
                            proxy.set()
                            load(api.port, rate, 1.0)  # warm: the hedge's p95 and median settle
                            proxy.set(**FAULTS[fault])
                            cpu = api.cpu_seconds()
                            run = load(api.port, rate, duration)
                            run["cpu_ms_per_request"] = round((api.cpu_seconds() - cpu) * 1000 / run["sent"], 3)
                            run["attempts_per_request"] = round(proxy.counts().requests / run["sent"], 3)
                            results[fault][name].append(run)
                            print(f"round {round_ + 1} {fault:12s} {name:9s} ok {run['ok']:5d}/{run['sent']:5d} "
                                  f"p50 {run['p50_ms']} p99 {run['p99_ms']} max {run['max_ms']} ms; "
                                  f"503 p50/max {run['error_p50_ms']}/{run['error_max_ms']} ms; "
                                  f"attempts/request {run['attempts_per_request']}; "
                                  f"API CPU {run['cpu_ms_per_request']} ms/request", flush=True)
    finally:
        emulator.stop()
    print("\nmedians over rounds (ok share, p99 of 200s, max 503 time, attempts per request, API CPU per request):")
    for fault in faults:
        for name in settings:
            runs = results[fault][name]
            med = lambda key: statistics.median(r[key] for r in runs if r[key] is not None) if any(r[key] is not None for r in runs) else None  # noqa: E731
            print(f"  {fault:12s} {name:9s} ok {statistics.median(r['ok'] / r['sent'] for r in runs):.3f}  p99 {med('p99_ms')} ms  "
                  f"503 max {med('error_max_ms')} ms  attempts {med('attempts_per_request')}  "
                  f"cpu {med('cpu_ms_per_request')} ms")


if __name__ == "__main__":
    main()
