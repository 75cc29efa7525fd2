"""Store benchmark: bulk write rows/s, point reads/s with p50/p99 for single gets and batches
of 100, on 1,000,000 stored predictions, for LMDB and the Bigtable emulator; each beside a
same-run baseline that calls the underlying library directly (py-lmdb; the Bigtable data
client); and LMDB's size on disk against the raw bytes.

    .venv/bin/python bench/store.py [--rows 1000000] [--backends lmdb,bigtable]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import struct
import time

import lmdb
import numpy as np

from common import OUT, Emulator, ratio

BATCH = 50_000


def dataset(rows: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(3)
    out = []
    for i in range(1, rows + 1):
        p = rng.random()
        body = (f'{{"model":"churn","id":"{i}","snapshot":1,"prediction":{{"predicted_churned":{int(p > 0.5)},'
                f'"predicted_churned_probs":[{{"label":0,"prob":{1 - p!r}}},{{"label":1,"prob":{p!r}}}]}}}}')
        out.append((str(i).encode(), body.encode()))
    return out


def timed(fn, ops: list) -> dict:
    lat = np.empty(len(ops))
    started = time.perf_counter()
    for n, op in enumerate(ops):
        t = time.perf_counter()
        fn(op)
        lat[n] = time.perf_counter() - t
    total = time.perf_counter() - started
    return {"ops_per_s": round(len(ops) / total), "p50_us": round(float(np.percentile(lat, 50)) * 1e6, 1),
            "p99_us": round(float(np.percentile(lat, 99)) * 1e6, 1)}


def bench_lmdb(data: list[tuple[bytes, bytes]], reads: int) -> dict:
    from predserve.store import open_store

    path, bare_path = OUT / "store-bench.lmdb", OUT / "store-bench-bare.lmdb"
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(bare_path, ignore_errors=True)
    rng = random.Random(5)
    single = [data[rng.randrange(len(data))][0] for _ in range(reads)]
    batches = [[data[rng.randrange(len(data))][0] for _ in range(100)] for _ in range(reads // 100)]

    store = open_store(str(path))
    started = time.perf_counter()
    snap = store.create_snapshot("churn").id
    writer = store.writer("churn", snap)
    for i in range(0, len(data), BATCH):
        writer.write(data[i:i + BATCH])
    store.finish_snapshot("churn", snap, len(data))
    store.publish("churn", snap)
    write_s = time.perf_counter() - started

    env = lmdb.open(str(bare_path), map_size=1 << 34, max_dbs=2, readahead=False, meminit=False)
    db = env.open_db(b"data")
    prefix = b"churn\x00" + struct.pack(">Q", 1)
    started = time.perf_counter()
    for i in range(0, len(data), BATCH):
        with env.begin(write=True) as txn:
            txn.cursor(db=db).putmulti([(prefix + k, v) for k, v in data[i:i + BATCH]], overwrite=False)
    bare_write_s = time.perf_counter() - started

    reader = open_store(str(path), readonly=True)
    # Warm up: fault every page of both files into this process once, so neither side pays
    # first-touch page faults inside its timed loop.
    sum(1 for _ in reader.items("churn", snap))
    with env.begin() as txn:
        sum(1 for _ in txn.cursor(db=db))

    def bare_get(key: bytes) -> bytes | None:
        with env.begin() as txn:
            return txn.get(prefix + key, db=db)

    def bare_many(keys: list[bytes]) -> list:
        with env.begin() as txn:
            return [txn.get(prefix + k, db=db) for k in keys]

    result = {
        "backend": "lmdb", "rows": len(data),
        "write_rows_per_s": round(len(data) / write_s), "bare_write_rows_per_s": round(len(data) / bare_write_s),
        "get": timed(lambda k: reader.get("churn", snap, k), single),
        "bare_get": timed(bare_get, single),
        "get_100": timed(lambda ks: reader.get_many("churn", snap, ks), batches),
        "bare_get_100": timed(bare_many, batches),
        "raw_bytes": sum(len(k) + len(v) for k, v in data),
        "disk_bytes": store.disk_bytes(),
    }
    assert reader.get("churn", snap, data[7][0]) == data[7][1]
    result["write_vs_bare"] = round(result["write_rows_per_s"] / result["bare_write_rows_per_s"], 3)
    result["get_vs_bare"] = round(result["get"]["ops_per_s"] / result["bare_get"]["ops_per_s"], 3)
    result["get_100_vs_bare"] = round(result["get_100"]["ops_per_s"] / result["bare_get_100"]["ops_per_s"], 3)
    result["disk_vs_raw"] = round(result["disk_bytes"] / result["raw_bytes"], 3)
    env.close()
    return result


def bench_bigtable(data: list[tuple[bytes, bytes]], reads: int) -> dict:
    from predserve.store import open_store
    from predserve.store.bigtable import LATEST, data_key, snapshot_prefix

    emulator = Emulator()
    try:
        store = open_store("bigtable://bench/bench/store")
        started = time.perf_counter()
        snap = store.create_snapshot("churn").id
        writer = store.writer("churn", snap)
        for i in range(0, len(data), BATCH):
            writer.write(data[i:i + BATCH])
        writer.close()
        store.finish_snapshot("churn", snap, len(data))
        store.publish("churn", snap)
        write_s = time.perf_counter() - started
        rng = random.Random(5)
        single = [data[rng.randrange(len(data))][0] for _ in range(reads)]
        batches = [[data[rng.randrange(len(data))][0] for _ in range(100)] for _ in range(reads // 100)]
        reader = open_store("bigtable://bench/bench/store", readonly=True, read_timeout=1.0)
        prefix = snapshot_prefix("churn", snap)
        table = reader.table  # the data client itself: the baseline
        result = {
            "backend": "bigtable-emulator", "rows": len(data), "write_rows_per_s": round(len(data) / write_s),
            "get": timed(lambda k: reader.get("churn", snap, k), single),
            "bare_get": timed(lambda k: table.read_row(data_key(prefix, k), row_filter=LATEST), single),
            "get_100": timed(lambda ks: reader.get_many("churn", snap, ks), batches),
        }
        assert reader.get("churn", snap, data[7][0]) == data[7][1]
        result["get_vs_bare"] = round(result["get"]["ops_per_s"] / result["bare_get"]["ops_per_s"], 3)
        return result
    finally:
        emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reads", type=int, default=100_000)
    parser.add_argument("--backends", default="lmdb,bigtable")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    data = dataset(args.rows)
    results = []
    for backend in args.backends.split(","):
        r = bench_lmdb(data, args.reads) if backend == "lmdb" else bench_bigtable(data, args.reads // 10)
        results.append(r)
        print(json.dumps(r), flush=True)
    (OUT / "store.json").write_text(json.dumps(results, indent=2))
    for r in results:
        print(f"\n{r['backend']}: {r['rows']:,} rows")
        print(f"  bulk write      {r['write_rows_per_s']:>10,} rows/s" +
              (f"   bare py-lmdb {r['bare_write_rows_per_s']:,} rows/s -> {r['write_vs_bare']:.2f}x" if "bare_write_rows_per_s" in r else ""))
        for name in ("get", "get_100"):
            line = f"  {name:<14}  {r[name]['ops_per_s']:>10,} ops/s  p50 {r[name]['p50_us']} us  p99 {r[name]['p99_us']} us"
            bare = r.get(f"bare_{name}")
            if bare:
                line += f"   bare {bare['ops_per_s']:,} ops/s p50 {bare['p50_us']} us p99 {bare['p99_us']} us -> {ratio(r[name]['ops_per_s'], bare['ops_per_s'])}"
            print(line)
        if "disk_bytes" in r:
            print(f"  size on disk    {r['disk_bytes'] / 1e6:.0f} MB for {r['raw_bytes'] / 1e6:.0f} MB of keys+values -> {r['disk_vs_raw']:.2f}x")


if __name__ == "__main__":
    main()
