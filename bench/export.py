"""Export benchmark: ML.PREDICT over N generated users -> published store snapshot on Beam's
DirectRunner, end to end (query, Parquet staging, rendering, writes, gates, publish). Same-run
baseline: a plain single-process Python loop that reads the same Parquet shards and writes the
same bytes (orjson-rendered bodies) into LMDB. Each measurement runs in its own process, so
its peak RSS is its own.

Beside the DirectRunner, in the same run: the same export on Beam's DaskRunner (a local
`dask scheduler` and two single-threaded `dask worker` processes, warmed up by a small export
first), and an export of a same-shaped table from the BigQuery emulator (bqemulator; CTAS,
Storage Read streams) into LMDB.

The profile's cost (issue 14: at most 10% of the export at 1M rows): pairs of 1M-row exports
into a store that already holds a published, profiled snapshot, one with the profile and the
drift against that snapshot (the default) and one without (``run_export(profile=False)``),
interleaved; the medians and their ratios are reported (elapsed and CPU seconds), and the CPU
seconds of the work they add, measured alone (steady where the ratios of two noisy figures are not).

    .venv/bin/python bench/export.py [--rows 1000000] [--stores lmdb,bigtable] [--big 10000000]
    .venv/bin/python bench/export.py --profile-only [--repeat 5]     # just the profile's cost
    .venv/bin/python bench/export.py --end-to-end-only [--rows 1000000] [--rounds 3]

End to end (issue 21, the figure users see): the wall clock of the `predserve export` command
(a fresh process: start-up, staging, statistics, Beam, profile, drift, gates, publish) of a
DuckDB table of N predictions into LMDB, against the plain single-process loop (pyarrow ->
orjson per row -> LMDB) over the same table's Parquet, timed without its staging; the two
alternate, several rounds, each round's ratio printed with the machine's load. ``--big N``
runs the same once at N rows (100,000,000 needs about 45 GB of disk: the warehouse table,
the staged shards and a store about twice its raw bytes; everything is deleted afterwards)
and adds the command's peak RSS (RssAnon sampled, and ru_maxrss) and the store's size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import OUT, Emulator, peak_rss_mb, prepared_warehouse

QUERY = "SELECT user_id, predicted_churned, predicted_churned_probs FROM ML.PREDICT(MODEL churn, TABLE users)"


def run_pipeline(rows: int, store: str, beam_args: list[str], warehouse: str | None = None, table: str | None = None,
                 profile: bool = True) -> dict:
    from predserve.pipeline import run_export

    warehouse = warehouse or str(prepared_warehouse(rows))
    source = {"table": table} if table else {"query": QUERY}
    sampler = AnonPeak()
    started = time.perf_counter()
    summary = run_export(warehouse=warehouse, model="churn", key="user_id", store_url=store, beam_args=beam_args,
                         profile=profile, **source)
    seconds = time.perf_counter() - started
    sampler.stop()
    assert summary.published and summary.rows == rows
    out = {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds), "peak_rss_mb": peak_rss_mb(),
           "peak_anon_mb": sampler.peak_mb}
    if not store.startswith("bigtable://"):
        from predserve.store import open_store

        out["store_mb"] = round((Path(store) / "data.mdb").stat().st_size / 1e6, 1)
        with open_store(store, readonly=True) as st:
            raw = sum(len(k) + len(v) for k, v in st.items("churn", summary.snapshot))
        out["raw_mb"] = round(raw / 1e6, 1)
        out["store_vs_raw"] = round(out["store_mb"] / out["raw_mb"], 2)
    return out


class AnonPeak:
    """Samples RssAnon (heap, not the LMDB file pages that RSS also counts) every 0.2 s."""

    def __init__(self) -> None:
        import threading

        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.peak_mb = max(self.peak_mb, round(int(line.split()[1]) / 1024, 1))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_baseline(rows: int) -> dict:
    """Plain loop: Parquet (the same shards the pipeline reads) -> orjson bodies -> LMDB."""
    import lmdb
    import orjson
    import pyarrow.parquet as pq

    from predserve import Warehouse

    shards = OUT / "baseline-shards"
    shutil.rmtree(shards, ignore_errors=True)
    with Warehouse(prepared_warehouse(rows), read_only=True) as wh:
        wh.copy_to_parquet(QUERY, shards)
    path = OUT / "baseline.lmdb"
    shutil.rmtree(path, ignore_errors=True)
    env = lmdb.open(str(path), map_size=1 << 36, max_dbs=2)
    db = env.open_db(b"data")
    started = time.perf_counter()
    written = 0
    for shard in sorted(shards.glob("*.parquet")):
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=65_536):
            items = []
            for row in batch.to_pylist():
                key = str(row.pop("user_id"))
                body = orjson.dumps({"model": "churn", "id": key, "snapshot": 1, "prediction": row})
                items.append((b"churn\x00" + key.encode(), body))
            with env.begin(write=True) as txn:
                txn.cursor(db=db).putmulti(items)
            written += len(items)
    seconds = time.perf_counter() - started
    assert written == rows
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds), "peak_rss_mb": peak_rss_mb()}


# A DuckDB table of ``rows`` predictions shaped like ML.PREDICT's (id, label, ARRAY<STRUCT<label, prob>>),
# generated by DuckDB itself, so that 100M rows need no memory beyond DuckDB's buffers.
PREDICTIONS_TABLE_SQL = """
CREATE TABLE predictions AS
SELECT x AS user_id, CAST((x * 7919) % 1000 >= 500 AS BIGINT) AS predicted_churned,
       [{{'label': 1::BIGINT, 'prob': ((x * 7919) % 1000) / 1000.0}}, {{'label': 0::BIGINT, 'prob': 1 - ((x * 7919) % 1000) / 1000.0}}]
         AS predicted_churned_probs
FROM range(1, {rows} + 1) AS t(x)
"""


def predictions_warehouse(rows: int) -> Path:
    """A DuckDB file holding ``predictions`` (cached in bench/out)."""
    import duckdb

    path = OUT / f"predictions-{rows}.duckdb"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        con = duckdb.connect(str(tmp))
        con.execute(PREDICTIONS_TABLE_SQL.format(rows=rows))
        con.close()
        tmp.rename(path)
    return path


def run_table_loop(rows: int) -> dict:
    """The plain loop over the predictions table's Parquet (staged by DuckDB, not timed): pyarrow ->
    a dict per row -> orjson -> LMDB putmulti in one process."""
    import duckdb
    import lmdb
    import orjson
    import pyarrow.parquet as pq

    shards = OUT / "loop-shards"
    shutil.rmtree(shards, ignore_errors=True)
    con = duckdb.connect(str(predictions_warehouse(rows)), read_only=True)
    con.execute(f"COPY predictions TO '{shards}' (FORMAT PARQUET, FILE_SIZE_BYTES '16MB', ROW_GROUP_SIZE 50000)")
    con.close()
    path = OUT / "loop.lmdb"
    shutil.rmtree(path, ignore_errors=True)
    env = lmdb.open(str(path), map_size=1 << 40, max_dbs=2)
    db = env.open_db(b"data")
    started = time.perf_counter()
    written = 0
    for shard in sorted(shards.glob("*.parquet")):
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=65_536):
            items = []
            for row in batch.to_pylist():
                key = str(row.pop("user_id"))
                items.append((b"churn\x00" + key.encode(), orjson.dumps({"model": "churn", "id": key, "snapshot": 1, "prediction": row})))
            with env.begin(write=True) as txn:
                txn.cursor(db=db).putmulti(items)
            written += len(items)
    seconds = time.perf_counter() - started
    env.close()
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(shards, ignore_errors=True)
    assert written == rows
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds)}


def run_command(rows: int, store: Path, extra: tuple[str, ...] = ()) -> dict:
    """``predserve export`` of the predictions table in a fresh process: wall clock, peak RSS, store size."""
    shutil.rmtree(store, ignore_errors=True)
    cmd = [sys.executable, "-m", "predserve.cli", "export", "-w", str(predictions_warehouse(rows)), "--model", "churn",
           "--key", "user_id", "--table", "predictions", "--store", str(store), "--json", *extra]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    anon = 0.0
    while proc.poll() is None:  # the child's heap (RssAnon: not the LMDB pages its RSS also counts)
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    anon = max(anon, int(line.split()[1]) / 1024)
        except FileNotFoundError:
            break
        time.sleep(0.2)
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(err[-3000:])
    summary = json.loads(out)
    assert summary["published"] and summary["rows"] == rows
    maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child so far
    store_bytes = (store / "data.mdb").stat().st_size
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds), "peak_anon_mb": round(anon),
            "children_maxrss_mb": round(maxrss), "store_mb": round(store_bytes / 1e6)}


def raw_bytes(store: Path) -> int:
    """The bytes of ids and bodies in the store's current snapshot."""
    from predserve.store import open_store

    with open_store(str(store), readonly=True) as st:
        snapshot = st.current("churn").id
        return sum(len(k) + len(v) for k, v in st.items("churn", snapshot))


def end_to_end(rows: int, rounds: int) -> dict:
    """Command and loop alternately, ``rounds`` times; each round's ratio and the medians."""
    predictions_warehouse(rows)
    store = OUT / "end-to-end.lmdb"
    runs = []
    for i in range(rounds):
        first, second = ("command", "loop") if i % 2 == 0 else ("loop", "command")
        got: dict = {}
        for what in (first, second):
            got[what] = run_command(rows, store) if what == "command" else run_table_loop(rows)
        raw = raw_bytes(store)
        got["command"]["store_vs_raw"] = round(got["command"]["store_mb"] * 1e6 / raw, 2)
        got["ratio"] = round(got["loop"]["seconds"] / got["command"]["seconds"], 2)
        got["load_1min"] = round(os.getloadavg()[0], 2)
        runs.append(got)
        print(f"end to end, {rows:,} rows, round {i + 1}: command {got['command']['seconds']}s, loop {got['loop']['seconds']}s "
              f"= {got['ratio']}x the loop; store {got['command']['store_vs_raw']}x raw; peak heap {got['command']['peak_anon_mb']} MB; "
              f"load {got['load_1min']}", flush=True)
    shutil.rmtree(store, ignore_errors=True)
    ratios = sorted(r["ratio"] for r in runs)
    return {"rows": rows, "rounds": runs, "median_ratio": ratios[len(ratios) // 2]}


def run_dask(rows: int, store: str, workers: int = 2) -> dict:
    """The same export on Beam's DaskRunner: a scheduler and ``workers`` single-threaded workers."""
    from tests.support.production import start_dask_cluster

    logs = OUT / "dask-logs"
    logs.mkdir(parents=True, exist_ok=True)
    cluster = start_dask_cluster(logs, workers)
    try:
        # Warm-up: each worker imports Beam, DuckDB and predserve on its first task.
        from predserve.pipeline import run_export

        run_export(warehouse=str(prepared_warehouse(rows)), model="churn", key="user_id", store_url=store + "-warmup",
                   query=QUERY + " WHERE user_id <= 200000", beam_args=cluster.beam_args())
        shutil.rmtree(store + "-warmup", ignore_errors=True)
        return run_pipeline(rows, store, cluster.beam_args())
    finally:
        cluster.stop()


# The shape of the warehouse path's ML.PREDICT rows (id, label, ARRAY<STRUCT<label, prob>>).
BQ_PREDICTIONS_SQL = """
CREATE TABLE predictions AS
SELECT x AS user_id, IF(MOD(x * 7919, 1000) >= 500, 1, 0) AS predicted_churned,
       [STRUCT(1 AS label, MOD(x * 7919, 1000) / 1000.0 AS prob), STRUCT(0 AS label, 1 - MOD(x * 7919, 1000) / 1000.0 AS prob)]
         AS predicted_churned_probs
FROM UNNEST(GENERATE_ARRAY(1, {rows})) AS x
"""


def run_bigquery(rows: int, store: str) -> dict:
    """BigQuery emulator -> LMDB: a table of ``rows`` predictions, exported through the Storage Read API."""
    from google.cloud import bigquery

    from predserve.pipeline.bigquery import rest_client
    from tests.support.processes import stop_process_group
    from tests.support.production import BQ_PROJECT, start_bigquery_emulator

    emulator = start_bigquery_emulator(OUT / "bqemulator.log")
    os.environ.update(emulator.environment())
    try:
        client = rest_client(BQ_PROJECT)
        client.create_dataset("bench")
        client.query(BQ_PREDICTIONS_SQL.format(rows=rows), job_config=bigquery.QueryJobConfig(default_dataset=f"{BQ_PROJECT}.bench")).result()
        client.close()
        return run_pipeline(rows, store, [], warehouse=f"bigquery://{BQ_PROJECT}/bench", table="predictions")
    finally:
        stop_process_group(emulator.proc)


def run_beam_bigtableio(rows: int, store: str) -> dict:
    """The same export, but writing with Beam's own WriteToBigTable instead of the store's writer."""
    import apache_beam as beam
    from apache_beam.io.gcp.bigtableio import WriteToBigTable
    from google.cloud.bigtable.row import DirectRow

    from predserve.pipeline.render import BodyRenderer
    from predserve.pipeline.sources import WarehouseSource
    from predserve.store import open_store
    from predserve.store.bigtable import DATA_FAMILY, data_key, snapshot_prefix

    project, instance, table = store.removeprefix("bigtable://").split("/")
    started = time.perf_counter()
    source = WarehouseSource(str(prepared_warehouse(rows)), QUERY + f" LIMIT {rows}", "user_id")
    source.prepare()
    st = open_store(store)  # creates the table
    snap = st.create_snapshot("churn").id
    prefix = snapshot_prefix("churn", snap)

    def to_rows(t):
        ids, bodies = BodyRenderer("churn", snap, "user_id").render(t)
        for i, body in zip(ids, bodies):
            row = DirectRow(row_key=data_key(prefix, i))
            row.set_cell(DATA_FAMILY, b"v", body)
            yield row

    with beam.Pipeline() as p:
        _ = p | source.read() | beam.FlatMap(to_rows) | WriteToBigTable(project, instance, table)
    source.cleanup()
    seconds = time.perf_counter() - started
    assert st.count("churn", snap) == rows
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds), "peak_rss_mb": peak_rss_mb()}


def run_with_baseline_snapshot(rows: int, store: str, profile: bool) -> dict:
    """One export (timed) into a store that already holds a published, profiled snapshot of the same rows,
    so that the timed export with its profile also measures its drift against that snapshot."""
    from predserve.pipeline import run_export

    run_export(warehouse=str(prepared_warehouse(rows)), model="churn", key="user_id", store_url=store, query=QUERY)
    before = resource.getrusage(resource.RUSAGE_SELF)
    out = run_pipeline(rows, store, [], profile=profile)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime  # every thread of this process
    result = {**{k: out[k] for k in ("rows", "seconds", "rows_per_s", "peak_rss_mb")}, "cpu_seconds": round(cpu, 2)}
    if profile:
        result["added_work_cpu_s"] = added_work_cpu(rows, store)
    return result


def added_work_cpu(rows: int, store: str) -> float:
    """CPU seconds of the work the profile adds, measured alone on the same rows: its three
    statements (DuckDB on one thread, the calling one), then the drift between the store's two
    snapshots (both samples read from both, the bodies compared)."""
    from predserve.pipeline import drift
    from predserve.pipeline.sources import WarehouseSource
    from predserve.store import open_store

    source = WarehouseSource(str(prepared_warehouse(rows)), QUERY, "user_id")
    try:
        source.prepare()
        started = time.thread_time()
        profile, _ = source.profile()
        with open_store(store) as st:
            old, new = sorted(st.state("churn").snapshots)[-2:]
            kinds = {name: column.kind for name, column in profile.columns.items()}
            drift.compare_sample(st, "churn", old, new, kinds)
        return round(time.thread_time() - started, 3)
    finally:
        source.cleanup()


def measure_profile_overhead(rows: int, store: str, pairs: int) -> dict:
    """Interleaved pairs of exports with and without the profile (and drift): the medians of their
    elapsed and CPU seconds (all threads; steadier than elapsed time on a shared machine), and ratios."""
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    for _ in range(pairs):
        runs["on"].append(measure("profile_on", rows, store))
        runs["off"].append(measure("profile_off", rows, store))

    def median(mode: str, figure: str) -> float:
        return sorted(r[figure] for r in runs[mode])[pairs // 2]

    out: dict = {"rows": rows, "pairs": pairs,
                 "added_work_cpu_s": sorted(r["added_work_cpu_s"] for r in runs["on"])[pairs // 2]}
    for figure in ("seconds", "cpu_seconds"):
        on, off = median("on", figure), median("off", figure)
        out[figure] = {"with_profile": on, "without": off, "ratio": round(on / off, 3),
                       "all_with_profile": [r[figure] for r in runs["on"]], "all_without": [r[figure] for r in runs["off"]]}
    return out


def print_profile_overhead(overhead: dict) -> None:
    for figure, name in (("seconds", "elapsed"), ("cpu_seconds", "CPU")):
        f = overhead[figure]
        print(f"profile + drift, {overhead['rows']:,} rows, {name}: {f['with_profile']}s with them vs {f['without']}s without "
              f"= {f['ratio']:.3f}x ({f['ratio'] - 1:+.1%}; limit +10%), medians of {overhead['pairs']} interleaved pairs")
    alone, cpu = overhead["added_work_cpu_s"], overhead["cpu_seconds"]["without"]
    print(f"the work they add, measured alone (profile statements + drift): {alone} CPU s = {alone / cpu:.1%} "
          f"of the export's {cpu} CPU s without them")


def child(mode: str, rows: int, store: str, beam_args: list[str]) -> None:
    if mode == "baseline":
        result = run_baseline(rows)
    elif mode in ("profile_on", "profile_off"):
        result = run_with_baseline_snapshot(rows, store, profile=mode == "profile_on")
    elif mode == "dask":
        result = run_dask(rows, store)
    elif mode == "bigquery":
        result = run_bigquery(rows, store)
    elif mode == "beam_bigtableio":
        emulator = Emulator()
        try:
            result = run_beam_bigtableio(rows, store)
        finally:
            emulator.stop()
    else:
        emulator = Emulator() if store.startswith("bigtable://") else None
        try:
            result = run_pipeline(rows, store, beam_args)
        finally:
            if emulator:
                emulator.stop()
    print(json.dumps(result))


def measure(mode: str, rows: int, store: str = "", beam_args: tuple[str, ...] = (), repeat: int = 1) -> dict:
    """Run one measurement ``repeat`` times in fresh processes; keep the median run (noisy machine)."""
    runs = []
    for _ in range(repeat):
        if store and not store.startswith("bigtable://"):
            shutil.rmtree(store, ignore_errors=True)
        cmd = [sys.executable, __file__, "--child", mode, "--rows", str(rows), "--store", store, "--", *beam_args]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    runs.sort(key=lambda r: r["seconds"])
    median = runs[len(runs) // 2]
    if repeat > 1:
        median["all_seconds"] = [r["seconds"] for r in runs]
    return median


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--stores", default="lmdb,bigtable")
    parser.add_argument("--big", type=int, default=0, help="also export this many rows once into LMDB (e.g. 10000000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the main measurements; the median is reported")
    parser.add_argument("--profile-only", action="store_true", help="measure only the profile's cost (with vs without)")
    parser.add_argument("--end-to-end-only", action="store_true", help="measure only the command vs the loop (and --big)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the end-to-end comparison")
    parser.add_argument("--child")
    parser.add_argument("--store", default="")
    parser.add_argument("beam_args", nargs="*")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rows, args.store, args.beam_args)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    if args.end_to_end_only:
        results = {"end_to_end": end_to_end(args.rows, args.rounds)}
        if args.big:
            results["end_to_end_big"] = big(args.big)
        (OUT / "export-end-to-end.json").write_text(json.dumps(results, indent=2))
        return
    prepared_warehouse(args.rows)
    if args.profile_only:
        overhead = measure_profile_overhead(args.rows, str(OUT / "export-bench.lmdb"), args.repeat)
        (OUT / "export-profile.json").write_text(json.dumps(overhead, indent=2))
        print_profile_overhead(overhead)
        return
    results: dict = {"baseline_loop": measure("baseline", args.rows, repeat=args.repeat)}
    print("baseline", json.dumps(results["baseline_loop"]), flush=True)
    for store in filter(None, args.stores.split(",")):
        if store == "lmdb":
            path = OUT / "export-bench.lmdb"
            results["lmdb"] = measure("pipeline", args.rows, str(path), repeat=args.repeat)
            results["profile_overhead"] = measure_profile_overhead(args.rows, str(path), args.repeat)
            print("profile", json.dumps(results["profile_overhead"]), flush=True)
            results["lmdb_multiprocess"] = measure("pipeline", args.rows, str(path),
                                                   ("--direct_num_workers=2", "--direct_running_mode=multi_processing"))
            results["lmdb_dask_2_workers"] = measure("dask", args.rows, str(path))
            results["bigquery_emulator_to_lmdb"] = measure("bigquery", args.rows, str(path))
        else:
            bt_rows = min(args.rows, 200_000)
            results["bigtable_emulator"] = measure("pipeline", bt_rows, "bigtable://bench/bench/export")
            results["bigtable_emulator_beam_WriteToBigTable"] = measure("beam_bigtableio", bt_rows, "bigtable://bench/bench/export")
        print(store, json.dumps(results), flush=True)
    results["end_to_end"] = end_to_end(args.rows, args.rounds)
    if args.big:
        results["end_to_end_big"] = big(args.big)
    (OUT / "export.json").write_text(json.dumps(results, indent=2))
    base = results["baseline_loop"]["rows_per_s"]
    print(f"\nbaseline loop (Parquet -> orjson -> LMDB): {base:,} rows/s")
    if "profile_overhead" in results:
        print_profile_overhead(results["profile_overhead"])
    for name, r in results.items():
        if name in ("baseline_loop", "profile_overhead", "end_to_end", "end_to_end_big"):
            continue
        extra = f", store {r['store_mb']} MB = {r['store_vs_raw']}x the {r['raw_mb']} MB of ids+bodies" if "store_mb" in r else ""
        if name in ("lmdb_multiprocess", "lmdb_dask_2_workers", "bigquery_emulator_to_lmdb") and "lmdb" in results:
            extra += f"; {r['rows_per_s'] / results['lmdb']['rows_per_s']:.2f}x the DirectRunner's"
        print(f"{name:<40} {r['rows']:>10,} rows in {r['seconds']:>6}s = {r['rows_per_s']:>8,} rows/s "
              f"({r['rows_per_s'] / base:.2f}x baseline), peak RSS {r['peak_rss_mb']} MB (heap {r.get('peak_anon_mb')} MB){extra}")


def big(rows: int) -> dict:
    """One end-to-end round at ``rows`` (command, then loop), then every file it made is deleted."""
    free = shutil.disk_usage(OUT).free
    print(f"--big {rows:,}: {free / 1e9:.0f} GB free before", flush=True)
    try:
        result = end_to_end(rows, 1)
        result["disk_free_gb_before"] = round(free / 1e9)
        return result
    finally:
        (OUT / f"predictions-{rows}.duckdb").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
