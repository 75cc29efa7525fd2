"""Updates benchmark (issue 20): fresh predictions written while the API serves.

Every figure is beside a baseline measured in the same run. Server (`predserve serve`, one
worker) on CPU 0; the load generators, the writer and the prober on CPU 1 (taskset). Loopback
only, bounded in time.

  - the one-id route's maximum (wrk), then rounds of a *quiet* run and an *updates* run (the
    order flipping each round). In each, a prober process (this script, --companion) asks the
    API, and in *updates* a writer process of its own (--writer, as `predserve stream` is one)
    applies --rate updates/s (random ids, every --tick seconds what is due) through
    ``predserve.updates.push.push``: the code of `predserve push`, whose batches are what
    `predserve stream` applies per pull. Meanwhile the open-loop load generator runs at half
    the maximum (bench/loadgen.py: p50/p99 from each request's scheduled send), then wrk at
    the maximum. Beside the clients' figures: the server's CPU per request and its store reads
    slower than 1 ms (its own histogram), which the machine's other load moves far less.
  - update-to-visible latency: the prober asks (batchGet, every --probe-interval s,
    --probe-ids ids a request) for every --track-every'th update until its new body is
    served; the latency runs from the update's scheduled time (when it reached the writer) and
    from its commit. The prober asks as much in *quiet* runs (random ids), so both carry the
    same extra load.
  - `predserve push` of --push-rows JSON lines (the CLI, one process per run, its start
    included) beside a plain loop doing the same writes with py-lmdb directly (parse the line,
    one write transaction per 1,000 lines: the id's sequence, the rendered body, the log entry,
    the head), alternating.

    .venv/bin/python bench/updates.py [--rows 100000] [--rate 1000] [--duration 6] [--rounds 4] [--push-rows 30000]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import orjson

from common import OUT, ROOT, ratio, stop
from serve import LOAD_CPU, ONE_LUA, PY, Server, lmdb_store, open_loop, reader_key, wrk_run

MODEL = "churn"
BATCH_ROUTE = f"/v1/models/{MODEL}/predictions:batchGet"


# ---- the companion process: writer and prober -----------------------------------------------
@dataclass
class Tracked:
    id: str
    prediction: bytes  # the update's prediction as the store renders it: found verbatim in the served body
    scheduled: float  # time.monotonic() when the update reached the writer (CLOCK_MONOTONIC: shared by processes)
    committed: float


def prediction(marker: int, rng: random.Random) -> dict[str, Any]:
    """A prediction shaped as the churn snapshot's, unique to ``marker`` (so its body can be recognised)."""
    prob = rng.random() / 2 + marker * 1e-12
    return {"predicted_churned": int(prob > 0.5),
            "predicted_churned_probs": [{"label": 0, "prob": 1 - prob}, {"label": 1, "prob": prob}]}


def write_updates(args: argparse.Namespace, stop: threading.Event, follow: Callable[[list[Tracked]], None]) -> dict[str, Any]:
    """Apply ``args.rate`` updates/s until ``stop``: every ``args.tick`` s, what is due, as one push batch.
    ``follow`` gets the tracked updates of each batch once it has committed."""
    from predserve.updates.apply import open_update_store
    from predserve.updates.push import push

    rng = random.Random(args.seed)
    ids = rng.sample(range(1, args.rows + 1), args.rows)
    marker_base = args.seed * 10_000_000
    store = open_update_store(args.store, MODEL)
    batches, applied, failed, commit_s = 0, 0, 0, []
    follow([])  # started
    start, began_usage = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
    made = 0
    while not stop.is_set():
        due = int((time.monotonic() - start) * args.rate) - made
        if due > 0:
            lines, tracked = [], []
            for _ in range(due):
                entity_id = str(ids[made % len(ids)])
                body = prediction(marker_base + made, rng)
                lines.append(orjson.dumps({"id": entity_id, "prediction": body}) + b"\n")
                if made % args.track_every == 0:
                    tracked.append((entity_id, orjson.dumps(body), start + made / args.rate))
                made += 1
            began = time.monotonic()
            report = push(store, MODEL, io.BytesIO(b"".join(lines)), batch_size=len(lines))
            committed = time.monotonic()
            commit_s.append(committed - began)
            batches += 1
            applied += report.applied
            failed += len(lines) - report.applied
            if tracked:
                follow([Tracked(entity_id, body, scheduled, committed) for entity_id, body, scheduled in tracked])
        stop.wait(max(0.0, args.tick - (time.monotonic() - start) % args.tick))
    store.close()
    elapsed = time.monotonic() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"made": made, "applied": applied, "not_applied": failed, "batches": batches, "rate": round(made / elapsed, 1),
            "batch_ms_p50": round(float(np.percentile(commit_s, 50)) * 1000, 2) if commit_s else None,
            "batch_ms_p99": round(float(np.percentile(commit_s, 99)) * 1000, 2) if commit_s else None,
            "cpu_share": round((usage.ru_utime + usage.ru_stime - began_usage.ru_utime - began_usage.ru_stime) / elapsed, 3)}


def writer_process(args: argparse.Namespace) -> None:
    """The writer on its own (as `predserve stream` runs): until standard input closes. Each
    tracked update is printed once committed, as [id, prediction, scheduled, committed]; then a summary."""
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()

    def follow(tracked: list[Tracked]) -> None:
        if not tracked:
            sys.stdout.write("[]\n")  # the first call: writing has started
        for t in tracked:
            sys.stdout.write(json.dumps([t.id, t.prediction.decode(), t.scheduled, t.committed]) + "\n")
        sys.stdout.flush()

    print(json.dumps({"summary": write_updates(args, stop, follow)}), flush=True)


class Prober(threading.Thread):
    """Asks the API, every ``probe_interval`` s, for the followed updates until each is served, in
    batchGets padded with random ids to ``probe_ids`` ids: the same requests whether or not updates run."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(daemon=True)
        self.args = args
        self.lock = threading.Lock()
        self.pending: list[Tracked] = []
        self.seen: list[tuple[float, float, float]] = []  # (scheduled, scheduled -> visible, commit -> visible)
        self.requests = self.errors = self.overflow = 0

    def follow(self, tracked: list[Tracked]) -> None:
        with self.lock:
            self.pending.extend(tracked)

    def take(self, drain: float = 5.0) -> dict[str, Any]:
        """What was measured since the last take (after waiting up to ``drain`` s for the pending updates)."""
        deadline = time.monotonic() + drain
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        with self.lock:
            out = {"probe_requests": self.requests, "probe_errors": self.errors, "probe_overflow": self.overflow,
                   "never_seen": len(self.pending), "seen": self.seen}
            self.pending, self.seen, self.requests, self.errors, self.overflow = [], [], 0, 0, 0
        return out

    def run(self) -> None:
        import httpx

        args = self.args
        rng = random.Random(args.seed)
        with httpx.Client(base_url=f"http://127.0.0.1:{args.port}", headers={"Authorization": f"Bearer {args.key}"},
                          timeout=10) as client:
            while True:
                began = time.monotonic()
                with self.lock:
                    asked = self.pending[: args.probe_ids]
                    self.overflow += len(self.pending) > args.probe_ids
                ids = [t.id for t in asked] + [str(rng.randint(1, args.rows)) for _ in range(args.probe_ids - len(asked))]
                try:
                    response = client.post(BATCH_ROUTE, json={"ids": ids})
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                answered = time.monotonic()
                with self.lock:
                    self.requests += 1
                    if not ok:
                        self.errors += 1
                    else:
                        found = [t for t in asked if t.prediction in response.content]
                        self.seen.extend((t.scheduled, answered - t.scheduled, answered - t.committed) for t in found)
                        self.pending = [t for t in self.pending if t not in found]
                time.sleep(max(0.0, args.probe_interval - (time.monotonic() - began)))


def companion(args: argparse.Namespace) -> None:
    """The prober throughout, and a writer process between an ``updates`` line and an ``end`` line
    on standard input (``quiet`` ... ``end``: the prober alone). Each ``end`` prints the run as a JSON line."""
    prober = Prober(args)
    prober.start()
    print("ready", flush=True)
    for number, line in enumerate(iter(sys.stdin.readline, "")):
        mode = line.strip()
        prober.take(drain=0)
        began, usage = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
        writer, summary = None, {}  # type: subprocess.Popen | None, dict[str, Any]
        if mode == "updates":
            writer = subprocess.Popen(
                ["taskset", "-c", args.writer_cpu, PY, __file__, "--writer", "--store", args.store, "--rows", str(args.rows),
                 "--rate", str(args.rate), "--tick", str(args.tick), "--track-every", str(args.track_every),
                 "--seed", str(args.seed + number)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            if writer.stdout.readline().strip() != "[]":  # type: ignore[union-attr]
                raise SystemExit("the writer did not start")
            reader = threading.Thread(target=follow_writer, args=(writer, prober, summary))
            reader.start()
        print("begun", flush=True)
        if sys.stdin.readline().strip() != "end":
            raise SystemExit("expected 'end'")
        if writer is not None:
            writer.stdin.close()  # type: ignore[union-attr]
            reader.join()
            if writer.wait(30) or not summary:
                raise SystemExit(f"the writer failed ({writer.returncode})")
        measured = prober.take()
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime) / (time.monotonic() - began)
        print(json.dumps({"writer": summary, **measured, "prober_cpu_share": round(cpu, 3)}), flush=True)


def follow_writer(writer: subprocess.Popen, prober: Prober, summary: dict[str, Any]) -> None:
    for line in writer.stdout:  # type: ignore[union-attr]
        got = json.loads(line)
        if isinstance(got, dict):
            summary.update(got["summary"])
        elif got:
            prober.follow([Tracked(got[0], got[1].encode(), got[2], got[3])])


class Companion:
    """The prober's process, which starts the writer's; both pinned to --writer-cpu (by default the load generator's)."""

    def __init__(self, args: argparse.Namespace, store: str, port: int, key: str) -> None:
        self.proc = subprocess.Popen(
            ["taskset", "-c", args.writer_cpu, PY, __file__, "--companion", "--store", store, "--port", str(port),
             "--key", key, "--rows", str(args.rows), "--rate", str(args.rate), "--tick", str(args.tick),
             "--writer-cpu", args.writer_cpu,
             "--track-every", str(args.track_every), "--probe-interval", str(args.probe_interval),
             "--probe-ids", str(args.probe_ids)],
            cwd=ROOT / "bench", stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self._line() != "ready":
            raise RuntimeError("the companion process did not start")

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the companion process ended ({self.proc.wait()})")
        return line.strip()

    def _say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def begin(self, mode: str) -> None:
        self._say(mode)
        if self._line() != "begun":
            raise RuntimeError("the companion process did not begin its run")

    def end(self) -> dict[str, Any]:
        self._say("end")
        return json.loads(self._line())

    def __enter__(self) -> "Companion":
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)


# ---- the serving rounds ----------------------------------------------------------------------
def store_reads(port: int) -> dict[str, float]:
    """The server's one-id store reads so far, by bucket upper bound (its own Prometheus histogram)."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found = re.findall(r'predserve_store_read_seconds_bucket\{le="([^"]+)",operation="get"\} (\S+)', text)
    found += re.findall(r'predserve_store_read_seconds_bucket\{operation="get",le="([^"]+)"\} (\S+)', text)
    return {bound: float(count) for bound, count in found}


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes have used so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return ticks / os.sysconf("SC_CLK_TCK")


def slow_reads(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Of the reads between two scrapes: how many, and the share slower than 1 ms and 10 ms."""
    count = after["+Inf"] - before["+Inf"]
    over = {f"over_{label}": round((count - (after[bound] - before[bound])) / count, 5) if count else 0.0
            for bound, label in (("0.001", "1ms"), ("0.01", "10ms"))}
    return {"reads": count, **over}


def percentiles(values: list[float]) -> dict[str, float | None]:
    ms = np.array(values) * 1000
    return {f"p{q}_ms": round(float(np.percentile(ms, q)), 1) if len(ms) else None for q in (50, 99)} | {
        "max_ms": round(float(ms.max()), 1) if len(ms) else None, "samples": len(ms)}


def serving_rounds(args: argparse.Namespace, store: str, iam: str, key: str) -> dict[str, Any]:
    one = ONE_LUA.format(key=key, rows=args.rows)
    runs: dict[str, list[dict[str, Any]]] = {"quiet": [], "updates": []}
    pooled: dict[str, list[tuple[float, float, float]]] = {}  # every round's samples, by phase
    with Server("predserve", store, iam) as server, Companion(args, store, server.port, key) as side:
        side.begin("quiet")  # the maximum with the prober asking, as in every run
        wrk_run(server.port, one, 1)  # warm-up
        maximum = wrk_run(server.port, one, args.wrk_duration)
        side.end()
        half = maximum["rps"] * 0.5
        print(f"one-id maximum {maximum['rps']:.0f} req/s; open loop at {half:.0f}/s", flush=True)
        for round_ in range(args.rounds):
            for mode in ("quiet", "updates") if round_ % 2 == 0 else ("updates", "quiet"):
                side.begin(mode)
                reads = store_reads(server.port)
                pids = [server.proc.pid, *server.workers()]
                cpu0, t0 = cpu_seconds(pids), time.monotonic()
                loaded = open_loop(server.port, key, half, args.duration, rows=args.rows)
                cpu1, t1 = cpu_seconds(pids), time.monotonic()
                loaded["store_reads"] = slow_reads(reads, store_reads(server.port))
                closed = wrk_run(server.port, one, args.wrk_duration)
                cpu2, t2 = cpu_seconds(pids), time.monotonic()
                # the server's CPU per request: what the route costs, whatever share of CPU 0 the machine leaves it
                loaded["server_cpu_us_per_request"] = round((cpu1 - cpu0) / (loaded["sent"] or 1) * 1e6, 1)
                closed["server_cpu_us_per_request"] = round((cpu2 - cpu1) / (closed["requests"] or 1) * 1e6, 1)
                measured = side.end()
                seen = measured.pop("seen")
                run = {"open_loop": loaded, "max": {k: v for k, v in closed.items() if k != "output"}, **measured}
                if mode == "updates":
                    for phase, (a, b) in (("half_load", (t0, t1)), ("max_load", (t1, t2))):
                        phase_seen = [s for s in seen if a <= s[0] < b]
                        pooled.setdefault(phase, []).extend(phase_seen)
                        run[f"visible_{phase}"] = percentiles([s[1] for s in phase_seen])
                        run[f"visible_after_commit_{phase}"] = percentiles([s[2] for s in phase_seen])
                print(json.dumps({"round": round_, "mode": mode, **run}), flush=True)
                runs[mode].append(run)
    quiet, updates = runs["quiet"], runs["updates"]
    pairs = list(zip(updates, quiet))
    return {
        "one_id_max_rps": maximum["rps"], "open_loop_rate": round(half), "runs": runs,
        "visible": {phase: percentiles([x[1] for x in samples]) for phase, samples in pooled.items()},
        "visible_after_commit": {phase: percentiles([x[2] for x in samples]) for phase, samples in pooled.items()},
        "worst_round_visible_p99_ms": max(r["visible_half_load"]["p99_ms"] or 0 for r in updates),
        "max_rps_updates_vs_quiet": round(statistics.median(u["max"]["rps"] / q["max"]["rps"] for u, q in pairs), 3),
        "server_cpu_per_request_updates_vs_quiet": round(statistics.median(
            u["max"]["server_cpu_us_per_request"] / q["max"]["server_cpu_us_per_request"] for u, q in pairs), 3),
        "p99_updates_vs_quiet": round(statistics.median(u["open_loop"]["p99_ms"] / q["open_loop"]["p99_ms"] for u, q in pairs), 2),
        "failed_requests": sum(r["open_loop"]["errors"] + r["open_loop"]["unanswered"] + r["max"]["non_2xx"]
                               + r["max"]["socket_errors"] + r["probe_errors"] for r in quiet + updates),
        "updates_not_applied": sum(r["writer"]["not_applied"] for r in updates),
        "updates_never_seen": sum(r["never_seen"] for r in updates),
    }


# ---- push beside a plain loop ----------------------------------------------------------------
def push_file(rows: int, count: int) -> Path:
    path = OUT / f"updates-push-{count}.jsonl"
    rng = random.Random(99)
    with path.open("wb") as f:
        for i in range(count):
            f.write(orjson.dumps({"id": str(rng.randint(1, rows)), "prediction": prediction(i, rng)}) + b"\n")
    return path


def plain_loop(store: str, lines_file: str, batch: int = 1000) -> None:
    """The same writes as an update batch, with py-lmdb directly: per 1,000 lines one write
    transaction putting each id's sequence, rendered body and log entry, then the log head."""
    import lmdb

    from predserve.store.lmdb import POSITION, SEQUENCE, _head_key, _log_prefix, _sequence_key, data_prefix
    from predserve.store.updates import Update, encode_entry, render_body

    env = lmdb.open(store, map_size=1 << 34, max_dbs=8)
    models, data, log = env.open_db(b"models"), env.open_db(b"data"), env.open_db(b"updates")
    with env.begin() as txn:
        snapshot = json.loads(txn.get(MODEL.encode(), db=models))["current"]
    prefix, head_key, log_prefix = data_prefix(MODEL, snapshot), _head_key(MODEL), _log_prefix(MODEL)
    with open(lines_file, "rb") as f:
        lines = f.readlines()
    for start in range(0, len(lines), batch):
        parsed = [orjson.loads(line) for line in lines[start:start + batch]]
        with env.begin(write=True) as txn:
            raw = txn.get(head_key, db=log)
            head = POSITION.unpack(raw)[0] if raw else 0
            applied_at = time.time()
            for obj in parsed:
                entity_id = obj["id"].encode()
                sequence = time.time_ns() // 1000
                key = _sequence_key(MODEL, entity_id)
                last = txn.get(key, db=log)
                if last is not None and SEQUENCE.unpack(last)[0] >= sequence:
                    continue
                head += 1
                body = orjson.dumps(obj["prediction"])
                txn.put(prefix + entity_id, render_body(MODEL, snapshot, obj["id"], body), db=data)
                txn.put(log_prefix + POSITION.pack(head), encode_entry(Update(obj["id"], sequence, obj["prediction"]), body, applied_at), db=log)
                txn.put(key, SEQUENCE.pack(sequence, head), db=log)
            txn.put(head_key, POSITION.pack(head), db=log)
    env.close()


def push_rounds(args: argparse.Namespace, store: str) -> dict[str, Any]:
    lines = push_file(args.rows, args.push_rows)
    commands = {
        "push": [PY, "-m", "predserve.cli", "push", "--store", store, "--model", MODEL, str(lines)],
        "plain_loop": [PY, __file__, "--plain-loop", store, str(lines)],
    }
    rates: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, command in commands.items():
            began = time.perf_counter()
            done = subprocess.run(command, cwd=ROOT / "bench", capture_output=True, text=True)
            elapsed = time.perf_counter() - began
            if done.returncode:
                raise RuntimeError(f"{name} failed ({done.returncode}): {done.stderr[-2000:]}")
            rates[name].append(round(args.push_rows / elapsed))
    result = {"rows": args.push_rows, "rows_per_s": rates,
              "push_vs_plain_loop": round(statistics.median(p / q for p, q in zip(rates["push"], rates["plain_loop"])), 3)}
    print(json.dumps(result), flush=True)
    return result


def summarize(serving: dict[str, Any], pushing: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    updates, quiet = serving["runs"]["updates"], serving["runs"]["quiet"]
    visible, after = serving["visible"]["half_load"], serving["visible_after_commit"]["half_load"]
    print(f"{args.rate:.0f}/s updates, open loop at {serving['open_loop_rate']}/s (half the one-id maximum, "
          f"{serving['one_id_max_rps']:.0f} req/s):")
    print(f"  update to visible p50 {visible['p50_ms']} ms, p99 {visible['p99_ms']} ms ({visible['samples']} samples over "
          f"{len(updates)} rounds; the worst round's p99 {serving['worst_round_visible_p99_ms']} ms); from the commit: "
          f"p50 {after['p50_ms']} ms, p99 {after['p99_ms']} ms")
    print(f"  one-id p99 {[r['open_loop']['p99_ms'] for r in updates]} ms with updates vs "
          f"{[r['open_loop']['p99_ms'] for r in quiet]} without ({serving['p99_updates_vs_quiet']}x, the median of each round's ratio)")
    print(f"  one-id max {[round(r['max']['rps']) for r in updates]} req/s with updates vs "
          f"{[round(r['max']['rps']) for r in quiet]} without ({serving['max_rps_updates_vs_quiet']}x, likewise); "
          f"update to visible p99 at the maximum {serving['visible']['max_load']['p99_ms']} ms")
    print(f"  the server's CPU per one-id request at the maximum: {[r['max']['server_cpu_us_per_request'] for r in updates]} µs "
          f"with updates vs {[r['max']['server_cpu_us_per_request'] for r in quiet]} without "
          f"({serving['server_cpu_per_request_updates_vs_quiet']}x); at half load "
          f"{[r['open_loop']['server_cpu_us_per_request'] for r in updates]} vs {[r['open_loop']['server_cpu_us_per_request'] for r in quiet]}")
    print(f"  the server's store reads slower than 1 ms: {[r['open_loop']['store_reads']['over_1ms'] for r in updates]} "
          f"with updates vs {[r['open_loop']['store_reads']['over_1ms'] for r in quiet]} without")
    print(f"  the writer: {statistics.median(r['writer']['cpu_share'] for r in updates):.0%} of a CPU; each batch "
          f"(parse, validate, one write transaction) p50 {statistics.median(r['writer']['batch_ms_p50'] for r in updates)} ms, "
          f"p99 {statistics.median(r['writer']['batch_ms_p99'] for r in updates):.1f} ms (the median round); the prober "
          f"{statistics.median(r['prober_cpu_share'] for r in quiet + updates):.0%} of a CPU")
    print(f"  failed requests {serving['failed_requests']}, updates not applied {serving['updates_not_applied']}, "
          f"never seen {serving['updates_never_seen']}")
    p = pushing["rows_per_s"]
    print(f"push {pushing['rows']:,} lines: predserve push {statistics.median(p['push']):,.0f} rows/s, plain py-lmdb loop "
          f"{statistics.median(p['plain_loop']):,.0f} rows/s ({pushing['push_vs_plain_loop']}x; "
          f"{ratio(statistics.median(p['push']), statistics.median(p['plain_loop']))} of the medians)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000, help="predictions in the LMDB store")
    parser.add_argument("--rate", type=float, default=1000.0, help="updates per second")
    parser.add_argument("--tick", type=float, default=0.05, help="seconds between the writer's batches (the stream's poll interval)")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds of open-loop load per run (at most 60)")
    parser.add_argument("--wrk-duration", type=float, default=3.0, help="seconds of wrk per run")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of a quiet and an updates run (their order flips each round)")
    parser.add_argument("--track-every", type=int, default=20, help="every n-th update is followed to its first sight")
    parser.add_argument("--probe-interval", type=float, default=0.02)
    parser.add_argument("--probe-ids", type=int, default=16)
    parser.add_argument("--push-rows", type=int, default=30_000)
    parser.add_argument("--writer-cpu", default=LOAD_CPU, help="the CPU of the writer and prober (the server has CPU 0)")
    parser.add_argument("--sections", default="serve,push")
    parser.add_argument("--companion", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--writer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--plain-loop", nargs=2, metavar=("STORE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.companion:
        companion(args)
        return
    if args.writer:
        writer_process(args)
        return
    if args.plain_loop:
        plain_loop(*args.plain_loop)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    store = OUT / "updates-store.lmdb"  # a copy: the updates must not change serve.py's store
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(lmdb_store(args.rows), store)
    iam, key = reader_key()
    results: dict[str, Any] = {"load_average_before": os.getloadavg()}
    sections = args.sections.split(",")
    if "serve" in sections:
        results["serve"] = serving_rounds(args, str(store), iam, key)
    if "push" in sections:
        results["push"] = push_rounds(args, str(store))
    results["load_average_after"] = os.getloadavg()
    (OUT / "updates.json").write_text(json.dumps(results, indent=2))
    if "serve" in results and "push" in results:
        summarize(results["serve"], results["push"], args)
    print(f"the machine's load average (1, 5, 15 min): {results['load_average_before']} before, {results['load_average_after']} after")
    shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
