"""Serving benchmark: maximum throughput (wrk, closed loop) and latency at 50% and 80% of it
(bench/loadgen.py, open loop, measured from each request's scheduled send time), for one id,
100 ids and the same server's constant-response route, on LMDB and the Bigtable emulator,
with 1 and 2 workers. 1,000,000 stored predictions. Loopback only.

    .venv/bin/python bench/serve.py [--backends lmdb,bigtable] [--workers 1,2] [--duration 8]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

from common import OUT, ROOT, Emulator, ensure_tool, free_port, prepared_warehouse, ratio, wait_port

ROWS = 1_000_000
QUERY = "SELECT user_id, predicted_churned, predicted_churned_probs FROM ML.PREDICT(MODEL churn, TABLE users)"
PY = sys.executable

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


def export_into(store: str) -> None:
    from predserve.pipeline import GatePolicy, run_export

    run_export(warehouse=str(prepared_warehouse(ROWS)), model="churn", key="user_id", store_url=store, query=QUERY,
               policy=GatePolicy(max_row_drop=1.0, allow_schema_change=True))


def wrk_rate(port: int, path: str, script: str | None, duration: float) -> float:
    cmd = [ensure_tool("wrk", "wrk"), "-t1", "-c32", f"-d{max(1, int(duration))}s", f"http://127.0.0.1:{port}{path}"]
    if script:
        lua = OUT / f"wrk-{abs(hash(script))}.lua"
        lua.write_text(script)
        cmd += ["-s", str(lua)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    if errors > total * 0.01:  # a few 503s past the read deadline under overload are expected
        raise RuntimeError(f"wrk saw {errors} error responses of {total}:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


FLOOR_SERVER = """
import asyncio, sys, uvloop
R = b"HTTP/1.1 200 OK\\r\\ncontent-length: 15\\r\\ncontent-type: application/json\\r\\n\\r\\n{\\"status\\":\\"ok\\"}"
class P(asyncio.Protocol):
    def connection_made(self, t): self.t, self.b = t, b""
    def data_received(self, d):
        self.b += d
        while b"\\r\\n\\r\\n" in self.b:
            self.b = self.b[self.b.index(b"\\r\\n\\r\\n") + 4:]; self.t.write(R)
async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1])); await server.serve_forever()
uvloop.run(main())
"""


def floor(rate: float, duration: float) -> dict:
    """Open-loop latency of a 10-line raw uvloop server: what this machine and generator add by themselves."""
    port = free_port()
    proc = subprocess.Popen([PY, "-c", FLOOR_SERVER, str(port)])
    try:
        wait_port(port)
        return open_loop(port, None, rate, duration, False, "/healthz")
    finally:
        proc.terminate()
        proc.wait(10)


def open_loop(port: int, key: str | None, rate: float, duration: float, batch: bool, path: str | None = None) -> dict:
    cmd = [PY, str(ROOT / "bench/loadgen.py"), "--port", str(port), "--rate", str(rate), "--duration", str(duration)]
    if key:
        cmd += ["--key", key]
    if path:
        cmd += ["--path-template", path]
    elif batch:
        cmd += ["--method", "POST", "--path-template", "/v1/models/churn/predictions:batchGet", "--body-template", '{"ids": IDS}']
    else:
        cmd += ["--path-template", "/v1/models/churn/predictions/{id}"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def measure(store: str, workers: int, key: str, iam: str, duration: float) -> dict:
    port = free_port()
    # The emulator answers a 100-row read in tens of milliseconds, past the 50 ms default deadline.
    timeout = ["--read-timeout", "1.0"] if store.startswith("bigtable://") else []
    server = subprocess.Popen([PY, "-m", "predserve.cli", "serve", "--store", store, "--port", str(port), "--iam", iam,
                               "--workers", str(workers), *timeout], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    try:
        wait_port(port)
        time.sleep(1.0 + workers)
        wrk_rate(port, "/healthz", None, 2)  # warm up
        result: dict = {"workers": workers}
        result["max_rps_constant"] = wrk_rate(port, "/healthz", None, duration)
        result["max_rps_one_id"] = wrk_rate(port, "/", ONE_LUA.format(key=key, rows=ROWS), duration)
        result["max_rps_100_ids"] = wrk_rate(port, "/", BATCH_LUA.format(key=key, rows=ROWS), duration)
        result["one_id_vs_constant"] = round(result["max_rps_one_id"] / result["max_rps_constant"], 3)
        # same-run baselines for latency: the constant route, and a raw server (the machine's floor)
        result["constant_at_one_id_50pct_rate"] = open_loop(port, None, result["max_rps_one_id"] * 0.5, duration, False, "/healthz")
        result["raw_floor_at_one_id_50pct_rate"] = floor(result["max_rps_one_id"] * 0.5, duration)
        for load in (0.5, 0.8):
            result[f"one_id_at_{int(load * 100)}pct"] = open_loop(port, key, result["max_rps_one_id"] * load, duration, False)
            result[f"100_ids_at_{int(load * 100)}pct"] = open_loop(port, key, result["max_rps_100_ids"] * load, duration, True)
        return result
    finally:
        server.terminate()
        server.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="lmdb,bigtable")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args()
    from predserve.iam import Registry

    OUT.mkdir(parents=True, exist_ok=True)
    iam = OUT / "serve-iam.json"
    iam.unlink(missing_ok=True)
    key = Registry(iam).create("bench-reader", "reader")[1]
    results = []
    for backend in args.backends.split(","):
        emulator = None
        if backend == "lmdb":
            store = str(OUT / "serve-store.lmdb")
            if not (OUT / "serve-store.lmdb" / "data.mdb").exists():
                export_into(store)
        else:
            emulator = Emulator()
            store = "bigtable://bench/bench/predictions"
            started = time.time()
            export_into(store)
            print(f"exported {ROWS:,} rows into the Bigtable emulator in {time.time() - started:.0f}s", flush=True)
        try:
            for workers in [int(w) for w in args.workers.split(",")]:
                r = measure(store, workers, key, str(iam), args.duration)
                r["backend"] = backend
                results.append(r)
                print(json.dumps(r), flush=True)
        finally:
            if emulator:
                emulator.stop()
    (OUT / "serve.json").write_text(json.dumps(results, indent=2))
    print("\nbackend  workers  max rps (const / 1 id / 100 ids)  1id/const  p50/p99/p99.9 ms: "
          "raw floor, const route, 1 id @50%, 1 id @80%, 100 ids @50%, 100 ids @80%")
    for r in results:
        def lat(k: str) -> str:
            x = r[k]
            return f"{x['p50_ms']}/{x['p99_ms']}/{x['p999_ms']}"
        print(f"{r['backend']:<8} {r['workers']:<8} {r['max_rps_constant']:.0f} / {r['max_rps_one_id']:.0f} / {r['max_rps_100_ids']:.0f}"
              f"   {ratio(r['max_rps_one_id'], r['max_rps_constant'])}   {lat('raw_floor_at_one_id_50pct_rate')}"
              f"   {lat('constant_at_one_id_50pct_rate')}   {lat('one_id_at_50pct')}   {lat('one_id_at_80pct')}"
              f"   {lat('100_ids_at_50pct')}   {lat('100_ids_at_80pct')}")


if __name__ == "__main__":
    main()
