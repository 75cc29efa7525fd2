"""Serving benchmark: every figure beside a baseline measured in the same run.

Server on CPU 0, load generator on CPU 1 (taskset). Loopback only, bounded in time.
  - max throughput (wrk, closed loop, 32 connections): the one-id route and 100-id batchGet
    against a 10-line raw ASGI app (bench/raw_app.py) on the same server and worker count,
    alternated over --rounds rounds (the ratio of each round's adjacent runs; the median);
  - open-loop latency at 50% and 80% of the one-id maximum (bench/loadgen.py, measured from
    each request's scheduled send time), predserve and the raw app at the same rate;
  - the server choice: the raw app and predserve's app under uvicorn and under Granian;
  - start-up time of `predserve serve` and the API worker's memory;
  - the Bigtable emulator: the one-id route against the store's bare async read rate;
  - Feast's Python feature server on the same predictions (when bench/out/feast-venv exists,
    see bench/feast_server.py);
  - a web console open beside the load: the one-id route's max req/s (and with one worker its
    open-loop p99 at half load) with a poller that follows the console page's own pattern (the
    traffic view's 1 request/s, plus the model list and the model detail at 1 request/s each:
    more than the page asks) against the same runs without it, alternating; and the mean
    server-side time of each console request.

    .venv/bin/python bench/serve.py [--sections main,servers,startup,bigtable,feast,console] [--duration 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from common import OUT, ROOT, Emulator, ensure_tool, free_port, prepared_warehouse, stop, wait_port

ROWS = 1_000_000
BIGTABLE_ROWS = 100_000
QUERY = "SELECT user_id, predicted_churned, predicted_churned_probs FROM ML.PREDICT(MODEL churn, TABLE users)"
PY = sys.executable
SERVER_CPU, LOAD_CPU = "0", "1"

ONE_LUA = """
math.randomseed(42)
wrk.headers["Authorization"] = "Bearer {key}"
request = function() return wrk.format("GET", "/v1/models/churn/predictions/" .. math.random(1, {rows})) end
"""
BATCH_LUA = """
math.randomseed(42)
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer {key}"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local ids = {{}}
  for i = 1, 100 do ids[i] = '"' .. math.random(1, {rows}) .. '"' end
  return wrk.format(nil, "/v1/models/churn/predictions:batchGet", nil, '{{"ids":[' .. table.concat(ids, ",") .. ']}}')
end
"""


# ---- servers ------------------------------------------------------------------------------
def server_command(kind: str, port: int, store: str, iam: str, workers: int) -> list[str]:
    """The command line of one server under test."""
    if kind == "predserve":  # predserve's own server: its app under Granian
        return [PY, "-m", "predserve.cli", "serve", "--store", store, "--iam", iam, "--port", str(port),
                "--workers", str(workers), "--read-timeout", "1.0"]
    if kind == "raw-granian":
        return [PY, "-m", "granian", "--interface", "asgi", "--loop", "uvloop", "--http", "1", "--no-ws", "--no-log",
                "--workers", str(workers), "--port", str(port), "bench.raw_app:app"]
    if kind == "store-reader":  # the store's async read and nothing else, on the same server
        return [PY, "-m", "granian", "--interface", "asgi", "--loop", "uvloop", "--http", "1", "--no-ws", "--no-log",
                "--workers", str(workers), "--port", str(port), "--factory", "bench.raw_app:store_reader"]
    if kind == "bare-read":  # the job's own limit: bare py-lmdb reads of the same bodies, on the same server
        return [PY, "-m", "granian", "--interface", "asgi", "--loop", "uvloop", "--http", "1", "--no-ws", "--no-log",
                "--workers", str(workers), "--port", str(port), "--factory", "bench.raw_app:bare_reader"]
    if kind == "raw-rsgi":
        return [PY, "-m", "granian", "--interface", "rsgi", "--loop", "uvloop", "--http", "1", "--no-ws", "--no-log",
                "--workers", str(workers), "--port", str(port), "bench.raw_app:rsgi_app"]
    if kind == "raw-uvicorn":
        return [PY, "-m", "uvicorn", "bench.raw_app:app", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                "--log-level", "warning", "--workers", str(workers), "--port", str(port)]
    if kind == "predserve-uvicorn":  # the same app object under uvicorn (bench/uvicorn_app.py)
        return [PY, "-m", "uvicorn", "--factory", "bench.uvicorn_app:create", "--loop", "uvloop", "--http", "httptools",
                "--no-access-log", "--log-level", "warning", "--workers", str(workers), "--port", str(port)]
    raise ValueError(kind)


class Server:
    """A server process pinned to the server's CPUs, stopped on exit."""

    def __init__(self, kind: str, store: str, iam: str, workers: int = 1) -> None:
        self.kind, self.port = kind, free_port()
        cpus = SERVER_CPU if workers == 1 else f"{SERVER_CPU},{LOAD_CPU}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_STORE": store, "BENCH_PLAIN": store + ".plain", "BENCH_IAM": iam}
        self.proc = subprocess.Popen(["taskset", "-c", cpus, *server_command(kind, self.port, store, iam, workers)],
                                     cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __enter__(self) -> "Server":
        wait_port(self.port)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # listening is not serving: wait for a real answer
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)

    def workers(self) -> list[int]:
        """Worker pids: the server's children (or the server itself when it has none)."""
        pids = [int(p) for t in Path(f"/proc/{self.proc.pid}/task").iterdir() for p in (t / "children").read_text().split()]
        return pids or [self.proc.pid]


def memory_mb(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: round(int(fields[k].split()[0]) / 1024, 1) for k in ("VmRSS", "VmHWM", "RssAnon")}


# ---- load ---------------------------------------------------------------------------------
def wrk_run(port: int, script: str, duration: float) -> dict[str, Any]:
    """One closed-loop wrk run: req/s, requests, non-2xx responses and socket errors."""
    lua = OUT / f"wrk-{abs(hash(script))}.lua"
    lua.write_text(script)
    cmd = ["taskset", "-c", LOAD_CPU, ensure_tool("wrk", "wrk"), "-t1", "-c32", f"-d{max(1, round(duration))}s", "-s", str(lua),
           f"http://127.0.0.1:{port}/"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(int(n) for n in socket.groups()) if socket else 0, "output": out}


def wrk_rate(port: int, script: str, duration: float) -> float:
    run = wrk_run(port, script, duration)
    if run["non_2xx"] > run["requests"] * 0.01:
        raise RuntimeError(f"wrk saw {run['non_2xx']} error responses of {run['requests']}:\n{run['output']}")
    return run["rps"]


def open_loop(port: int, key: str, rate: float, duration: float, batch: bool = False, rows: int = ROWS) -> dict[str, Any]:
    cmd = ["taskset", "-c", LOAD_CPU, PY, str(ROOT / "bench/loadgen.py"), "--port", str(port), "--rate", str(rate),
           "--duration", str(duration), "--key", key, "--max-id", str(rows)]
    if batch:
        cmd += ["--method", "POST", "--path-template", "/v1/models/churn/predictions:batchGet", "--body-template", '{"ids": IDS}']
    else:
        cmd += ["--path-template", "/v1/models/churn/predictions/{id}"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def lat(x: dict[str, Any]) -> str:
    return f"{x['p50_ms']}/{x['p99_ms']}/{x['p999_ms']}"


# ---- data ---------------------------------------------------------------------------------
def export_into(store: str, rows: int) -> None:
    from predserve.pipeline import GatePolicy, run_export

    run_export(warehouse=str(prepared_warehouse(rows)), model="churn", key="user_id", store_url=store, query=QUERY,
               policy=GatePolicy(max_row_drop=1.0, allow_schema_change=True))


def lmdb_store(rows: int = ROWS) -> str:
    store = OUT / ("serve-store.lmdb" if rows == ROWS else f"serve-store-{rows}.lmdb")
    if not (store / "data.mdb").exists():
        export_into(str(store), rows)
    return str(store)


def plain_lmdb(store_url: str) -> str:
    """A plain LMDB beside the store holding the same bodies under the bare ids (one unnamed
    database, key = id): what ``raw_app.bare_reader`` reads. Built once from the store's current snapshot."""
    import lmdb

    from predserve.store import open_store

    plain = Path(store_url + ".plain")
    if not (plain / "data.mdb").exists():
        with open_store(store_url, readonly=True) as store:
            snapshot = store.current("churn").id  # type: ignore[union-attr]
            env = lmdb.open(str(plain), map_size=1 << 32)
            with env.begin(write=True) as txn:
                txn.cursor().putmulti(store.items("churn", snapshot))
            env.close()
    return str(plain)


def reader_key() -> tuple[str, str]:
    from predserve.iam import Registry

    iam = OUT / "serve-iam.json"
    iam.unlink(missing_ok=True)
    return str(iam), Registry(iam).create("bench-reader", "reader")[1]


# ---- sections -------------------------------------------------------------------------------
def alternate(kinds: list[str], store: str, iam: str, script: str, args: argparse.Namespace,
              workers: int = 1) -> dict[str, list[float]]:
    """Max req/s of each kind of server, ``args.rounds`` times, the kinds alternating within each round."""
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            with Server(kind, store, iam, workers) as server:
                wrk_rate(server.port, script, 1)  # warm-up
                rates[kind].append(wrk_rate(server.port, script, args.duration))
    return rates


def paired(rates: dict[str, list[float]], a: str, b: str) -> float:
    """The median over rounds of a/b: each round's two runs were adjacent in time."""
    return statistics.median(x / y for x, y in zip(rates[a], rates[b]))


def section_main(args: argparse.Namespace, iam: str, key: str) -> dict[str, Any]:
    """The one-id and 100-id routes against the job's own limit: a 10-line app on the same server
    doing the same bare py-lmdb reads of the same ids and bodies (raw_app.bare_reader), alternating;
    the constant-body raw app stays as context. Then open-loop latency (1 worker)."""
    store = lmdb_store(args.rows)
    plain_lmdb(store)
    one, batch = ONE_LUA.format(key=key, rows=args.rows), BATCH_LUA.format(key=key, rows=args.rows)
    result: dict[str, Any] = {}
    for workers in args.workers:
        rates = alternate(["raw-granian", "bare-read", "predserve"], store, iam, one, args, workers)
        batches = alternate(["bare-read", "predserve"], store, iam, batch, args, workers)
        entry: dict[str, Any] = {
            "raw_asgi_rps": rates["raw-granian"], "bare_read_rps": rates["bare-read"], "one_id_rps": rates["predserve"],
            "bare_reads_100_rps": batches["bare-read"], "batch_100_rps": batches["predserve"],
            "one_id_vs_bare_read": round(paired(rates, "predserve", "bare-read"), 3),
            "batch_100_vs_bare_reads": round(paired(batches, "predserve", "bare-read"), 3),
            "one_id_vs_raw": round(paired(rates, "predserve", "raw-granian"), 3),
            "bare_read_vs_raw": round(paired(rates, "bare-read", "raw-granian"), 3),
        }
        print(json.dumps({"workers": workers, **entry}), flush=True)
        if workers == 1 and not args.no_open_loop:
            half = statistics.median(rates["predserve"]) * 0.5
            for load, rate in (("50pct", half), ("80pct", half * 1.6)):
                runs = {"predserve": [], "raw-granian": []}  # type: dict[str, list[dict[str, Any]]]
                for _ in range(args.rounds):
                    for kind in runs:
                        with Server(kind, store, iam) as server:
                            open_loop(server.port, key, rate, 1, rows=args.rows)  # warm-up
                            runs[kind].append(open_loop(server.port, key, rate, args.duration, rows=args.rows))
                best = {kind: sorted(r, key=lambda x: x["p99_ms"])[len(r) // 2] for kind, r in runs.items()}
                entry[f"open_loop_{load}"] = {"rate": round(rate), **best, "p99_vs_raw": round(statistics.median(
                    p["p99_ms"] / r["p99_ms"] for p, r in zip(runs["predserve"], runs["raw-granian"])), 2)}
                print(json.dumps({load: entry[f"open_loop_{load}"]}), flush=True)
            with Server("predserve", store, iam) as server:
                batch_rate = statistics.median(batches["predserve"]) * 0.5
                open_loop(server.port, key, batch_rate, 1, rows=args.rows)
                entry["batch_100_open_loop_50pct"] = {"rate": round(batch_rate), **open_loop(
                    server.port, key, batch_rate, args.duration, True, rows=args.rows)}
                wrk_rate(server.port, one, args.duration)
                entry["worker_memory_mb_after_load"] = [memory_mb(pid) for pid in server.workers()]
        result[f"workers_{workers}"] = entry
    return result


def section_servers(args: argparse.Namespace, iam: str, key: str) -> dict[str, Any]:
    """uvicorn or Granian: the raw app and predserve's app on each, alternating."""
    store = lmdb_store(args.rows)
    rates = alternate(["raw-uvicorn", "raw-granian", "raw-rsgi", "predserve-uvicorn", "predserve"], store, iam,
                      ONE_LUA.format(key=key, rows=args.rows), args)
    result = {"rps": rates, "medians": {k: round(statistics.median(v)) for k, v in rates.items()},
              "granian_vs_uvicorn_raw": round(paired(rates, "raw-granian", "raw-uvicorn"), 3),
              "granian_vs_uvicorn_predserve": round(paired(rates, "predserve", "predserve-uvicorn"), 3),
              "rsgi_vs_asgi_raw": round(paired(rates, "raw-rsgi", "raw-granian"), 3)}
    print(json.dumps(result), flush=True)
    return result


def first_answer(command: list[str], port: int) -> tuple[float, subprocess.Popen]:
    """Seconds from starting ``command`` to its first HTTP answer on ``port`` (the process is left running)."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return round(time.perf_counter() - started, 3), proc
        except httpx.HTTPError:
            time.sleep(0.005)


def section_startup(args: argparse.Namespace, iam: str, key: str) -> dict[str, Any]:
    """Seconds from `predserve serve` starting to its first answer, beside the raw app's start on Granian
    (the same-run baseline: what this machine's load adds to any start), and the idle worker's memory."""
    store = lmdb_store(args.rows)
    seconds: dict[str, list[float]] = {"predserve": [], "raw-granian": []}
    memory = {}
    for _ in range(5):
        for kind in seconds:
            port = free_port()
            elapsed, proc = first_answer(server_command(kind, port, store, iam, 1), port)
            seconds[kind].append(elapsed)
            if kind == "predserve":
                children = [int(p) for t in Path(f"/proc/{proc.pid}/task").iterdir() for p in (t / "children").read_text().split()]
                memory = {"parent": memory_mb(proc.pid), "worker": memory_mb(children[0])}
            stop(proc)
    result = {"first_answer_seconds": seconds, "median": {k: statistics.median(v) for k, v in seconds.items()},
              "idle_memory_mb": memory}
    print(json.dumps(result), flush=True)
    return result


async def bare_async_reads(url: str, duration: float, concurrency: int = 32) -> float:
    """Reads/s of the store's own async reads (the route's floor): ``concurrency`` loops of random ids."""
    from predserve.store import open_store

    store = open_store(url, readonly=True, read_timeout=1.0)
    snapshot = (await store.astate("churn")).current  # type: ignore[union-attr]  (async only, as the server)
    rng = random.Random(7)
    done = 0

    async def loop(until: float) -> None:
        nonlocal done
        while time.perf_counter() < until:
            await store.aget("churn", snapshot, str(rng.randint(1, BIGTABLE_ROWS)).encode())
            done += 1

    await asyncio.gather(*(loop(time.perf_counter() + 1) for _ in range(concurrency)))  # warm-up
    done = 0
    started = time.perf_counter()
    await asyncio.gather(*(loop(started + duration) for _ in range(concurrency)))
    rate = done / (time.perf_counter() - started)
    store.close()
    return rate


def section_bigtable(args: argparse.Namespace, iam: str, key: str) -> dict[str, Any]:
    """The one-id route against the store's own async reads: served by a 10-line app on the same
    server (bench/raw_app.py's store_reader), and in a plain asyncio process (32 concurrent loops)."""
    emulator = Emulator()
    try:
        url = "bigtable://bench/bench/predictions"
        started = time.time()
        export_into(url, BIGTABLE_ROWS)
        print(f"exported {BIGTABLE_ROWS:,} rows into the Bigtable emulator in {time.time() - started:.0f}s", flush=True)
        script = ONE_LUA.format(key=key, rows=BIGTABLE_ROWS)
        rates = alternate(["store-reader", "predserve"], url, iam, script, args)
        plain = [float(subprocess.run(
            ["taskset", "-c", SERVER_CPU, PY, __file__, "--bare-reads", url, "--duration", str(args.duration)],
            capture_output=True, text=True, check=True, cwd=ROOT / "bench").stdout.strip()) for _ in range(args.rounds)]
        result = {"store_reads_served_rps": rates["store-reader"], "one_id_rps": rates["predserve"],
                  "plain_asyncio_reads_per_s": plain, "route_vs_store_reads": round(paired(rates, "predserve", "store-reader"), 3)}
        print(json.dumps(result), flush=True)
        return result
    finally:
        emulator.stop()


def section_feast(args: argparse.Namespace, iam: str, key: str) -> dict[str, Any]:
    """Feast's Python feature server (tuned, and as shipped) against predserve and the raw ASGI app, alternating."""
    from feast_server import FEAST_PYTHON, FeastServer, prepare_feast

    if not FEAST_PYTHON.exists():
        raise RuntimeError("Feast is not installed: python3 -m venv bench/out/feast-venv && bench/out/feast-venv/bin/pip install feast")
    repo = prepare_feast(prepared_warehouse(args.rows), args.rows)
    store = lmdb_store(args.rows)
    one = ONE_LUA.format(key=key, rows=args.rows)
    rates: dict[str, list[float]] = {"feast": [], "feast-as-shipped": [], "predserve": [], "raw-granian": []}
    for _ in range(args.rounds):
        for name, tuned in (("feast", True), ("feast-as-shipped", False)):
            with FeastServer(repo, SERVER_CPU, tuned) as feast:
                wrk_rate(feast.port, feast.lua(args.rows), 1)
                rates[name].append(wrk_rate(feast.port, feast.lua(args.rows), args.duration))
        for kind in ("predserve", "raw-granian"):
            with Server(kind, store, iam) as server:
                wrk_rate(server.port, one, 1)
                rates[kind].append(wrk_rate(server.port, one, args.duration))
    result = {"rps": rates, "predserve_vs_feast": round(paired(rates, "predserve", "feast"), 1),
              "predserve_vs_feast_as_shipped": round(paired(rates, "predserve", "feast-as-shipped"), 1),
              "raw_asgi_vs_feast": round(paired(rates, "raw-granian", "feast"), 1)}
    print(json.dumps(result), flush=True)
    return result


def poll_console(port: int, key: str) -> None:
    """Until killed: what an open console asks, each second (the first traffic ask is the page's full window)."""
    headers = {"Authorization": f"Bearer {key}"}
    paths = ["/v1/console/traffic?seconds=300", "/v1/models", "/v1/models/churn"]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10) as client:
        while True:
            started = time.monotonic()
            for path in paths:
                client.get(path).raise_for_status()
            paths[0] = "/v1/console/traffic?seconds=5"
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


def route_means_ms(port: int, routes: list[str]) -> dict[str, float]:
    """Mean server-side time of each route so far, from the server's own Prometheus histograms."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    totals: dict[str, list[float]] = {route: [0.0, 0.0] for route in routes}
    for line in text.splitlines():
        found = re.match(r'predserve_request_seconds_(sum|count)\{method="GET",route="([^"]+)",status="200"\} (\S+)', line)
        if found and found.group(2) in totals:
            totals[found.group(2)][found.group(1) == "count"] += float(found.group(3))
    return {route: round(s / n * 1000, 3) for route, (s, n) in totals.items() if n}


def section_console(args: argparse.Namespace, iam: str, key: str) -> dict[str, Any]:
    """The hot route with a console polling beside it, against the same route without (alternating runs):
    max req/s, and with one worker the open-loop p99 at half load (as in section_main); and what each
    of the console's requests costs the worker that answers it."""
    from predserve.iam import Registry

    store = lmdb_store(args.rows)
    admin = Registry(iam).create("bench-console", "admin")[1]
    one = ONE_LUA.format(key=key, rows=args.rows)
    console_routes = ["/v1/console/traffic", "/v1/models", "/v1/models/{model}"]
    result: dict[str, Any] = {}
    for workers in args.workers:
        rates: dict[str, list[float]] = {"quiet": [], "console": []}
        p99: dict[str, list[float]] = {"quiet": [], "console": []}
        costs: list[dict[str, float]] = []
        for _ in range(args.rounds):
            half = None
            for mode in ("quiet", "console"):
                with Server("predserve", store, iam, workers) as server:
                    poller = None
                    if mode == "console":
                        poller = subprocess.Popen(["taskset", "-c", LOAD_CPU, PY, __file__, "--poll-console", str(server.port),
                                                   "--key", admin], cwd=ROOT / "bench")
                        time.sleep(2)  # the console's first (full) ask, and the workers start sharing
                    try:
                        wrk_rate(server.port, one, 1)  # warm-up
                        rates[mode].append(wrk_rate(server.port, one, args.duration))
                        half = half or rates[mode][-1] * 0.5  # the quiet run's half load, for both
                        if workers == 1:
                            p99[mode].append(open_loop(server.port, key, half, args.duration)["p99_ms"])
                        if poller is not None:
                            costs.append(route_means_ms(server.port, console_routes))
                    finally:
                        if poller is not None:
                            stop(poller)
                            assert poller.returncode in (0, -15), f"the console poller failed ({poller.returncode})"
        entry: dict[str, Any] = {"rps": rates, "console_vs_quiet_rps": round(paired(rates, "console", "quiet"), 3),
                                 "console_request_mean_ms": {r: statistics.median(c[r] for c in costs if r in c) for r in console_routes}}
        if workers == 1:
            entry["open_loop_half_load_p99_ms"] = p99
            entry["console_vs_quiet_p99"] = round(statistics.median(c / q for c, q in zip(p99["console"], p99["quiet"])), 2)
        print(json.dumps({"workers": workers, **entry}), flush=True)
        result[f"workers_{workers}"] = entry
    return result


SECTIONS = {"main": section_main, "servers": section_servers, "startup": section_startup, "bigtable": section_bigtable,
            "feast": section_feast, "console": section_console}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sections", default="main,servers,startup,bigtable,feast,console")
    parser.add_argument("--workers", default="1,2", type=lambda s: [int(w) for w in s.split(",")])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=ROWS, help="predictions in the LMDB store (the issue's figures: 100000)")
    parser.add_argument("--no-open-loop", action="store_true", help="main section: throughput only")
    parser.add_argument("--bare-reads", help=argparse.SUPPRESS)  # internal: one bare-read measurement in its own process
    parser.add_argument("--poll-console", type=int, help=argparse.SUPPRESS)  # internal: a console's polling, on this port
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.poll_console:
        poll_console(args.poll_console, args.key)
        return
    if args.bare_reads:
        import uvloop  # the event loop predserve's workers run

        print(uvloop.run(bare_async_reads(args.bare_reads, args.duration)))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    iam, key = reader_key()
    results = {}
    for name in args.sections.split(","):
        print(f"--- {name}", flush=True)
        results[name] = SECTIONS[name](args, iam, key)
    (OUT / "serve.json").write_text(json.dumps(results, indent=2))
    summarize(results)


def summarize(results: dict[str, Any]) -> None:
    print()
    for name, workers in ((k, v) for k, v in results.get("main", {}).items()):
        print(f"{name}: raw ASGI {statistics.median(workers['raw_asgi_rps']):.0f} req/s, bare read "
              f"{statistics.median(workers['bare_read_rps']):.0f}, one id {statistics.median(workers['one_id_rps']):.0f} "
              f"({workers['one_id_vs_bare_read']}x the bare read, {workers['one_id_vs_raw']}x raw); 100 bare reads "
              f"{statistics.median(workers['bare_reads_100_rps']):.0f}, 100 ids {statistics.median(workers['batch_100_rps']):.0f} "
              f"({workers['batch_100_vs_bare_reads']}x the bare reads)")
        for load in ("50pct", "80pct"):
            if f"open_loop_{load}" in workers:
                o = workers[f"open_loop_{load}"]
                print(f"  open loop at {load} ({o['rate']}/s) p50/p99/p99.9 ms: predserve {lat(o['predserve'])}, "
                      f"raw {lat(o['raw-granian'])}, p99 {o['p99_vs_raw']}x raw")
    if "servers" in results:
        print("servers:", results["servers"]["medians"])
    if "bigtable" in results:
        b = results["bigtable"]
        print(f"bigtable: store reads served {statistics.median(b['store_reads_served_rps']):.0f}/s, in plain asyncio "
              f"{statistics.median(b['plain_asyncio_reads_per_s']):.0f}/s; route {statistics.median(b['one_id_rps']):.0f} req/s "
              f"({b['route_vs_store_reads']}x the served reads)")
    if "console" in results:
        for name, c in results["console"].items():
            p99 = f", p99 at half load {c['console_vs_quiet_p99']}x" if "console_vs_quiet_p99" in c else ""
            print(f"console open, {name}: one id {statistics.median(c['rps']['console']):.0f} vs {statistics.median(c['rps']['quiet']):.0f} "
                  f"req/s ({c['console_vs_quiet_rps']}x){p99}; each console request {c['console_request_mean_ms']} ms")
    if "feast" in results:
        f = results["feast"]
        print("feast:", {k: round(statistics.median(v)) for k, v in f["rps"].items()},
              f"predserve {f['predserve_vs_feast']}x Feast ({f['predserve_vs_feast_as_shipped']}x as shipped), "
              f"raw ASGI {f['raw_asgi_vs_feast']}x")


if __name__ == "__main__":
    main()
