"""``predserve demo``: the whole flow on generated data, then serve.

warehouse (generate users and their ratings, CREATE MODEL churn and recommender, ML.EVALUATE)
-> Beam exports of ML.PREDICT (a churn prediction per user) and of ML.RECOMMEND (each rated
user's top 10 products as one list) into an LMDB store -> a reader and an admin service account -> the API in a child process -> a few
real HTTP requests, printed with their latency and the curl command to repeat them, and the web
console's address with the admin key to sign in with.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import httpx
from rich.console import Console

from predserve.datagen import PREDICT_SQL, RECOMMEND_SQL, RECOMMENDER_SQL, TRAIN_SQL, create_ratings, create_users
from predserve.iam import Registry
from predserve.pipeline import run_export
from predserve.warehouse import Warehouse

MODEL = "churn"
RECOMMENDER = "recommender"
TOP_N = 10
SAMPLE_IDS = ("1", "42", "12345")
MAX_AGE = 24 * 3600.0  # a daily batch model: its snapshot is stale after a day without an export


def free_port(preferred: int) -> int:
    """``preferred`` if it is free (0 means any), else a free port the kernel picks."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API server exited with code {proc.returncode}; see its output above")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the API server did not answer on {url} within {timeout:.0f}s")


def run_demo(directory: Path, rows: int, port: int, serve: bool) -> None:
    console = Console()
    directory.mkdir(parents=True, exist_ok=True)
    warehouse_path = directory / "warehouse.duckdb"
    store_path = directory / "store.lmdb"
    iam_path = directory / "iam.json"
    console.rule("[bold]predserve demo")

    with console.status("generating users and training the model"):
        started = time.time()
        with Warehouse(warehouse_path) as wh:
            create_users(wh, rows)
            console.print(f"[green]✓[/] generated {rows:,} users into {warehouse_path} ({time.time() - started:.1f}s)")
            started = time.time()
            wh.sql(TRAIN_SQL.format(model=MODEL))
            metrics = wh.sql(f"SELECT * FROM ML.EVALUATE(MODEL {MODEL})").to_pylist()[0]
    console.print(f"[green]✓[/] CREATE MODEL {MODEL} (logistic_reg) trained in {time.time() - started:.1f}s")
    console.print("   ML.EVALUATE: " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if v is not None))
    with console.status("generating ratings and training the recommender"):
        started = time.time()
        with Warehouse(warehouse_path) as wh:
            create_ratings(wh)
            rated = wh.sql("SELECT COUNT(*) AS n, COUNT(DISTINCT user_id) AS users, COUNT(DISTINCT product_id) AS products "
                           "FROM ratings").to_pylist()[0]
            wh.sql(RECOMMENDER_SQL.format(model=RECOMMENDER))
            rec_metrics = wh.sql(f"SELECT * FROM ML.EVALUATE(MODEL {RECOMMENDER})").to_pylist()[0]
    console.print(f"[green]✓[/] CREATE MODEL {RECOMMENDER} (matrix_factorization) on {rated['n']:,} ratings of "
                  f"{rated['products']} products by {rated['users']:,} users, trained in {time.time() - started:.1f}s")
    console.print("   ML.EVALUATE: " + ", ".join(f"{k}={v:.3f}" for k, v in rec_metrics.items() if v is not None))

    console.print("[bold]exporting ML.PREDICT through Apache Beam (DirectRunner) into an LMDB snapshot")

    shown = [-1]

    def progress(written: int, expected: int, elapsed: float) -> None:
        if written != shown[0]:
            shown[0] = written
            console.print(f"   {written:,}/{expected:,} rows, {elapsed:.1f}s", highlight=False)

    summary = run_export(
        warehouse=str(warehouse_path), model=MODEL, key="user_id", store_url=str(store_path),
        query=PREDICT_SQL.format(model=MODEL), max_age=MAX_AGE, progress=progress,
    )
    console.print(f"[green]✓[/] published snapshot {summary.snapshot}: {summary.rows:,} rows "
                  f"in {summary.seconds:.1f}s ({summary.rows_per_second:,.0f} rows/s)")
    recs = run_export(
        warehouse=str(warehouse_path), model=RECOMMENDER, key="user_id", store_url=str(store_path),
        query=RECOMMEND_SQL.format(model=RECOMMENDER, top=TOP_N), max_age=MAX_AGE,
    )
    console.print(f"[green]✓[/] exported ML.RECOMMEND as model {RECOMMENDER}: each rated user's top {TOP_N} unrated products "
                  f"as one list, snapshot {recs.snapshot}: {recs.rows:,} rows in {recs.seconds:.1f}s")

    registry = Registry(iam_path)
    name = f"demo-reader-{int(time.time())}"
    _, key = registry.create(name, "reader", [MODEL, RECOMMENDER])
    console.print(f"[green]✓[/] service account {name} (role reader on {MODEL} and {RECOMMENDER}); "
                  "its key is shown only on this screen")
    admin_name = f"demo-admin-{int(time.time())}"
    _, admin_key = registry.create(admin_name, "admin")
    console.print(f"[green]✓[/] service account {admin_name} (role admin, for the web console)")

    chosen = free_port(port)
    if port and chosen != port:
        console.print(f"[yellow]![/] port {port} is taken (another server?): serving on port {chosen} instead (--port to choose)",
                      highlight=False)
    url = f"http://127.0.0.1:{chosen}"
    cmd = [sys.executable, "-m", "predserve.cli", "serve", "--store", str(store_path), "--port", str(chosen), "--iam", str(iam_path)]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=_die_with_parent())
    try:
        wait_until_up(url, proc)
        console.print(f"[green]✓[/] API serving on {url} (docs: {url}/docs)")
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers) as client:
            client.get(f"/v1/models/{MODEL}/predictions/1")  # warm the connection
            for entity_id in SAMPLE_IDS:
                started = time.perf_counter()
                response = client.get(f"/v1/models/{MODEL}/predictions/{entity_id}")
                elapsed_ms = (time.perf_counter() - started) * 1000
                console.print(f"\nGET /v1/models/{MODEL}/predictions/{entity_id} -> {response.status_code} in {elapsed_ms:.2f} ms")
                console.print_json(json.dumps(response.json()))
            started = time.perf_counter()
            response = client.get(f"/v1/models/{RECOMMENDER}/predictions/{SAMPLE_IDS[1]}")
            elapsed_ms = (time.perf_counter() - started) * 1000
        console.print(f"\nGET /v1/models/{RECOMMENDER}/predictions/{SAMPLE_IDS[1]} -> {response.status_code} in {elapsed_ms:.2f} ms")
        show_recommendations(console, response.json())
        console.print("\nrepeat them with:")
        for model in (MODEL, RECOMMENDER):
            console.print(f"  curl -H 'Authorization: Bearer {key}' {url}/v1/models/{model}/predictions/{SAMPLE_IDS[1]}",
                          highlight=False, soft_wrap=True)
        console.print(f"\n[bold]web console:[/] {url}/console", highlight=False, soft_wrap=True)
        console.print(f"  sign in with the admin key {admin_key}", highlight=False, soft_wrap=True)
        if not serve:
            return
        console.print("\n[bold]serving until Ctrl-C[/]")
        proc.wait()
    finally:  # also on Ctrl-C and SIGTERM (see cli/app.py): the server and its workers stop too
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def show_recommendations(console: Console, body: dict) -> None:
    """A recommender's body, one product a line (the curl command prints its JSON)."""
    listed = body.get("prediction", {}).get("recommendations")
    if not listed:
        console.print_json(json.dumps(body))
        return
    console.print(f"   snapshot {body['snapshot']}: user {body['id']}'s top {len(listed)} products (of those not rated yet)",
                  highlight=False)
    for rank, item in enumerate(listed, 1):
        console.print(f"   {rank:>2}. product {item['product_id']:>3}  predicted rating {item['predicted_rating']:.2f}", highlight=False)


def _die_with_parent() -> Callable[[], None]:
    """What the server's process runs before it starts: have Linux send it SIGTERM when the demo
    dies, even of SIGKILL, so the server never outlives the demo that started it. (libc's prctl
    is looked up here, before the fork: the child only makes the call.)"""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, int(signal.SIGTERM))
