"""Updates benchmark (issue 20): fresh predictions written while the API serves.

Every figure is beside a baseline measured in the same run. Server (`predserve serve`, one
worker) on CPU 0; the load generator, the writer and the prober on CPU 1 (taskset). Loopback
only, bounded in time.

  - the one-id route's maximum (wrk), then rounds alternating *quiet* and *updates* (the order
    flipping each round). In each, a companion process (this script, --companion) runs a
    prober, and in *updates* also a writer applying --rate updates/s (random ids, every
    --tick seconds what is due, through ``predserve.updates.push.push``: the code of
    `predserve push`, whose batches are what `predserve stream` applies per pull). Meanwhile:
    the open-loop load generator at half the maximum (bench/loadgen.py: p50/p99 from each
    request's scheduled send), then wrk at the maximum.
  - update-to-visible latency: the prober asks the API (batchGet, every --probe-interval s,
    --probe-ids ids a request) for every --track-every'th update until its new body is
    served; the latency runs from the update's scheduled time (when it reached the writer) and
    from its commit. The prober asks as much in *quiet* rounds (random ids), so both carry the
    same extra load.
  - `predserve push` of --push-rows JSON lines (the CLI, one process per run, its start
    included) beside a plain loop doing the same writes with py-lmdb directly (parse the line,
    one write transaction per 1,000 lines: the id's sequence, the rendered body, the log entry,
    the head), alternating.

    .venv/bin/python bench/updates.py [--rows 100000] [--rate 1000] [--duration 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def write_updates(args: argparse.Namespace, seed: int, stop: threading.Event, prober: Prober, out: dict[str, Any]) -> None:
    """Apply ``args.rate`` updates/s until ``stop``: every ``args.tick`` s, what is due, as one push batch."""
    from predserve.updates.apply import open_update_store
    from predserve.updates.push import push

    rng = random.Random(seed)
    ids = rng.sample(range(1, args.rows + 1), args.rows)
    marker_base = seed * 10_000_000
    store = open_update_store(args.store, MODEL)
    batches, applied, failed, commit_s = 0, 0, 0, []
    start = time.monotonic()
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
            prober.follow([Tracked(entity_id, body, scheduled, committed) for entity_id, body, scheduled in tracked])
        stop.wait(max(0.0, args.tick - (time.monotonic() - start) % args.tick))
    store.close()
    out.update(made=made, applied=applied, not_applied=failed, batches=batches,
               rate=round(made / (time.monotonic() - start), 1),
               commit_ms_p50=round(float(np.percentile(commit_s, 50)) * 1000, 2) if commit_s else None,
               commit_ms_p99=round(float(np.percentile(commit_s, 99)) * 1000, 2) if commit_s else None)


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
    """The prober throughout, and the writer between an ``updates`` line and an ``end`` line on
    standard input (``quiet`` ... ``end``: the prober alone). Each ``end`` prints the run as a JSON line."""
    prober = Prober(args)
    prober.start()
    print("ready", flush=True)
    for number, line in enumerate(iter(sys.stdin.readline, "")):
        mode = line.strip()
        stop, writer_out = threading.Event(), {}  # type: threading.Event, dict[str, Any]
        writer = threading.Thread(target=write_updates, args=(args, args.seed + number, stop, prober, writer_out))
        prober.take(drain=0)
        began, usage = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
        if mode == "updates":
            writer.start()
        if sys.stdin.readline().strip() != "end":
            raise SystemExit("expected 'end'")
        stop.set()
        if mode == "updates":
            writer.join()
        measured = prober.take()
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime) / (time.monotonic() - began)
        print(json.dumps({"writer": writer_out, **measured, "companion_cpu_share": round(cpu, 3)}), flush=True)


class Companion:
    """The companion process, pinned to --writer-cpu (by default the load generator's)."""

    def __init__(self, args: argparse.Namespace, store: str, port: int, key: str) -> None:
        self.proc = subprocess.Popen(
            ["taskset", "-c", args.writer_cpu, PY, __file__, "--companion", "--store", store, "--port", str(port),
             "--key", key, "--rows", str(args.rows), "--rate", str(args.rate), "--tick", str(args.tick),
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

    def end(self) -> dict[str, Any]:
        self._say("end")
        return json.loads(self._line())

    def __enter__(self) -> "Companion":
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)


# ---- the serving rounds ----------------------------------------------------------------------
def percentiles(values: list[float]) -> dict[str, float | None]:
    ms = np.array(values) * 1000
    return {f"p{q}_ms": round(float(np.percentile(ms, q)), 1) if len(ms) else None for q in (50, 99)} | {
        "max_ms": round(float(ms.max()), 1) if len(ms) else None, "samples": len(ms)}


def serving_rounds(args: argparse.Namespace, store: str, iam: str, key: str) -> dict[str, Any]:
    one = ONE_LUA.format(key=key, rows=args.rows)
    runs: dict[str, list[dict[str, Any]]] = {"quiet": [], "updates": []}
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
                t0 = time.monotonic()
                loaded = open_loop(server.port, key, half, args.duration, rows=args.rows)
                t1 = time.monotonic()
                closed = wrk_run(server.port, one, args.wrk_duration)
                t2 = time.monotonic()
                measured = side.end()
                seen = measured.pop("seen")
                run = {"open_loop": loaded, "max": {k: v for k, v in closed.items() if k != "output"}, **measured}
                if mode == "updates":
                    for phase, (a, b) in (("half_load", (t0, t1)), ("max_load", (t1, t2))):
                        phase_seen = [s for s in seen if a <= s[0] < b]
                        run[f"visible_{phase}"] = percentiles([s[1] for s in phase_seen])
                        run[f"visible_after_commit_{phase}"] = percentiles([s[2] for s in phase_seen])
                print(json.dumps({"round": round_, "mode": mode, **run}), flush=True)
                runs[mode].append(run)
    quiet, updates = runs["quiet"], runs["updates"]
    pairs = list(zip(updates, quiet))
    return {
        "one_id_max_rps": maximum["rps"], "open_loop_rate": round(half), "runs": runs,
        "visible_half_load": merged(updates, "visible_half_load"),
        "max_rps_updates_vs_quiet": round(statistics.median(u["max"]["rps"] / q["max"]["rps"] for u, q in pairs), 3),
        "p99_updates_vs_quiet": round(statistics.median(u["open_loop"]["p99_ms"] / q["open_loop"]["p99_ms"] for u, q in pairs), 2),
        "failed_requests": sum(r["open_loop"]["errors"] + r["open_loop"]["unanswered"] + r["max"]["non_2xx"]
                               + r["max"]["socket_errors"] + r["probe_errors"] for r in quiet + updates),
        "updates_not_applied": sum(r["writer"]["not_applied"] for r in updates),
        "updates_never_seen": sum(r["never_seen"] for r in updates),
    }


def merged(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Not a percentile of percentiles: the median round's figures (by p99), beside the worst."""
    ordered = sorted((r[key] for r in runs if r[key]["samples"]), key=lambda x: x["p99_ms"])
    return {"median_round": ordered[len(ordered) // 2], "worst_round": ordered[-1]} if ordered else {}


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
    visible = serving["visible_half_load"]["median_round"]
    worst = serving["visible_half_load"]["worst_round"]
    print(f"{args.rate}/s updates, open loop at {serving['open_loop_rate']}/s (half the one-id maximum, "
          f"{serving['one_id_max_rps']:.0f} req/s):")
    print(f"  update to visible p50 {visible['p50_ms']} ms, p99 {visible['p99_ms']} ms (median round; worst round p99 "
          f"{worst['p99_ms']} ms; {visible['samples']} samples a round)")
    after = merged(updates, "visible_after_commit_half_load")["median_round"]
    print(f"  commit to visible p50 {after['p50_ms']} ms, p99 {after['p99_ms']} ms")
    print(f"  one-id p99 {[r['open_loop']['p99_ms'] for r in updates]} ms with updates vs "
          f"{[r['open_loop']['p99_ms'] for r in quiet]} without ({serving['p99_updates_vs_quiet']}x)")
    print(f"  one-id max {[round(r['max']['rps']) for r in updates]} req/s with updates vs "
          f"{[round(r['max']['rps']) for r in quiet]} without ({serving['max_rps_updates_vs_quiet']}x); "
          f"visible p99 at the maximum {merged(updates, 'visible_max_load')['median_round'].get('p99_ms')} ms")
    print(f"  CPU 1 taken by the writer and prober: {statistics.median(r['companion_cpu_share'] for r in updates):.0%} "
          f"(the prober alone: {statistics.median(r['companion_cpu_share'] for r in quiet):.0%}); the writer's commits p50 "
          f"{statistics.median(r['writer']['commit_ms_p50'] for r in updates)} ms")
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
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of open-loop load per run (at most 60)")
    parser.add_argument("--wrk-duration", type=float, default=3.0, help="seconds of wrk per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--track-every", type=int, default=20, help="every n-th update is followed to its first sight")
    parser.add_argument("--probe-interval", type=float, default=0.02)
    parser.add_argument("--probe-ids", type=int, default=16)
    parser.add_argument("--push-rows", type=int, default=50_000)
    parser.add_argument("--writer-cpu", default=LOAD_CPU, help="the CPU of the writer and prober (the server has CPU 0)")
    parser.add_argument("--sections", default="serve,push")
    parser.add_argument("--companion", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--plain-loop", nargs=2, metavar=("STORE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.companion:
        companion(args)
        return
    if args.plain_loop:
        plain_loop(*args.plain_loop)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    store = OUT / "updates-store.lmdb"  # a copy: the updates must not change serve.py's store
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(lmdb_store(args.rows), store)
    iam, key = reader_key()
    results: dict[str, Any] = {}
    sections = args.sections.split(",")
    if "serve" in sections:
        results["serve"] = serving_rounds(args, str(store), iam, key)
    if "push" in sections:
        results["push"] = push_rounds(args, str(store))
    (OUT / "updates.json").write_text(json.dumps(results, indent=2))
    if "serve" in results and "push" in results:
        summarize(results["serve"], results["push"], args)
    shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
