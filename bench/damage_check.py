"""What the truncation check costs an LMDB read: a get with the check (one ``lseek`` on data.mdb
before the transaction, see store/lmdb_files.py) beside the same get without it, same run, same
store; plus ``os.fstat`` and ``os.lseek`` alone.

    .venv/bin/python bench/damage_check.py [--rows 200000] [--reads 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import time

from common import OUT, ratio


def best_ns(variants: dict, ops: list, rounds: int = 15) -> dict[str, float]:
    """ns per call of each variant: the best of ``rounds`` passes, the variants alternating pass by
    pass so that both see the same machine noise (the minimum is the least disturbed pass). CPU
    time of this process, so that other processes on a shared machine are not counted."""
    best = {name: float("inf") for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            started = time.process_time()  # CPU time: the time other processes take is not counted
            for op in ops:
                fn(op)
            best[name] = min(best[name], (time.process_time() - started) / len(ops))
    return {name: value * 1e9 for name, value in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--reads", type=int, default=100_000)
    args = parser.parse_args()

    from predserve.store import open_store
    from predserve.store.lmdb import LmdbStore

    class Unchecked(LmdbStore):
        """The same store without the size check (the read path before it existed)."""

        def _read_txn(self, remember_size: bool = False):  # type: ignore[no-untyped-def]
            return self.env.begin(buffers=False)

    path = OUT / "damage-check.lmdb"
    shutil.rmtree(path, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    ids = [str(i).encode() for i in range(args.rows)]
    with open_store(str(path)) as store:
        snap = store.create_snapshot("m").id
        writer = store.writer("m", snap)
        writer.write_columns(ids, [b'{"prediction":{"p":0.5}}' + b" " * 150] * len(ids))
        writer.close()
        store.finish_snapshot("m", snap, len(ids))
        store.publish("m", snap)

    rng = random.Random(7)
    reads = [ids[rng.randrange(len(ids))] for _ in range(args.reads)]
    checked = open_store(str(path), readonly=True)
    unchecked = Unchecked(str(path), readonly=True)
    fd = os.open(path / "data.mdb", os.O_RDONLY)
    figures = best_ns({
        "get_checked_ns": lambda i: checked.get("m", snap, i),
        "get_unchecked_ns": lambda i: unchecked.get("m", snap, i),
        "lseek_ns": lambda _: os.lseek(fd, 0, os.SEEK_END),
        "fstat_ns": lambda _: os.fstat(fd).st_size,
    }, reads)
    figures["check_cost_ns"] = figures["get_checked_ns"] - figures["get_unchecked_ns"]
    figures["check_share_of_get"] = figures["check_cost_ns"] / figures["get_unchecked_ns"]
    figures = {k: round(v, 3 if k.endswith("get") else 1) for k, v in figures.items()}

    print(f"LMDB get, {args.rows:,} rows, {args.reads:,} random reads (best of 15 alternating passes)")
    print(f"  get with the size check    {figures['get_checked_ns']:8.0f} ns")
    print(f"  get without it (baseline)  {figures['get_unchecked_ns']:8.0f} ns   checked/baseline rate "
          f"{ratio(figures['get_unchecked_ns'], figures['get_checked_ns'])}")
    print(f"  the check costs            {figures['check_cost_ns']:8.0f} ns   = {figures['check_share_of_get']:.1%} of a bare get")
    print(f"  os.lseek(SEEK_END) alone   {figures['lseek_ns']:8.0f} ns;  os.fstat alone {figures['fstat_ns']:.0f} ns")
    (OUT / "damage_check.json").write_text(json.dumps(figures, indent=2))
    os.close(fd)
    checked.close()
    unchecked.close()
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
