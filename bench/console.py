"""The web console: its first paint on loopback, and the screenshots of docs/console.md.

Serves a demo-like store with `predserve serve` (generated users; the churn model exported,
retrained as a boosted tree and exported again, a broken export with its labels inverted that
the drift gates refuse, then a rollback) and loads /console in Debian's chromium, headless,
driven by Playwright:

  - first paint: the browser's own `first-contentful-paint` of /console, over --loads page
    loads each in a new browser context (nothing cached), beside two same-run baselines in
    the same browser: /healthz of the same server (one request, JSON shown as text: what any
    page of this server costs) and a one-line HTML page given as a data: URL (no request);
  - the hot path's added work: counting a request into the traffic samples, in ns, beside the
    Prometheus bookkeeping the same call already did (its same-run baseline);
  - with --screenshots DIR: one PNG per view (login, models, one model, live traffic under a
    little load, lookup, service accounts), written as DIR/console-VIEW.png.

    .venv/bin/python bench/console.py [--rows 100000] [--loads 20] [--screenshots docs]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from common import OUT, ROOT, free_port, stop, wait_port

CHROMIUM = os.environ.get("PREDSERVE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
DATA_URL_PAGE = "data:text/html,<!doctype html><title>baseline</title><h1>predserve</h1><p>a one-line page</p>"


def prepare(rows: int) -> tuple[str, str, dict[str, str]]:
    """The store, the service-account file and its keys (rebuilt on every run: the timeline shows times)."""
    from predserve import Warehouse
    from predserve.datagen import INVERTED_PREDICT_SQL, PREDICT_SQL, TRAIN_SQL, create_users
    from predserve.iam import Registry
    from predserve.pipeline import GateRefused, run_export
    from predserve.store import open_store

    directory = OUT / "console"
    subprocess.run(["rm", "-rf", str(directory)], check=True)
    directory.mkdir(parents=True)
    warehouse, store, iam = directory / "warehouse.duckdb", str(directory / "store.lmdb"), str(directory / "iam.json")
    with Warehouse(warehouse) as wh:
        create_users(wh, rows)
        wh.sql(TRAIN_SQL.format(model="churn"))
        wh.sql(TRAIN_SQL.format(model="churn_bt").replace("'logistic_reg'", "'boosted_tree_classifier'"))  # another family

    def export(query: str) -> None:
        run_export(warehouse=str(warehouse), model="churn", key="user_id", store_url=store, query=query, max_age=86400)

    export(PREDICT_SQL.format(model="churn"))
    export(PREDICT_SQL.format(model="churn_bt"))
    try:
        export(INVERTED_PREDICT_SQL.format(model="churn"))
    except GateRefused:
        pass
    with open_store(store) as writer:
        writer.rollback("churn")
    registry = Registry(iam)
    keys = {"admin": registry.create("ops-console", "admin")[1], "reader": registry.create("app-backend", "reader", ["churn"])[1]}
    registry.create("batch-scorer", "reader")
    return store, iam, keys


class Server:
    def __init__(self, store: str, iam: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "predserve.cli", "serve", "--store", store, "--iam", iam,
                                      "--port", str(self.port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self) -> None:
        stop(self.proc)


def paint_ms(page: Any, url: str) -> float:
    """The first-contentful-paint of ``url`` (ms from the navigation's start), as the browser measured it."""
    page.goto(url)
    page.wait_for_load_state("load")
    for _ in range(100):
        entries = page.evaluate("performance.getEntriesByName('first-contentful-paint').map((e) => e.startTime)")
        if entries:
            return float(entries[0])
        time.sleep(0.02)
    raise RuntimeError(f"no first-contentful-paint for {url}")


def first_paint(browser: Any, server: Server, loads: int) -> dict[str, Any]:
    pages = {"console": server.url + "/console", "healthz": server.url + "/healthz", "data_url": DATA_URL_PAGE}
    samples: dict[str, list[float]] = {name: [] for name in pages}
    for _ in range(loads):
        for name, url in pages.items():
            context = browser.new_context()  # nothing cached
            samples[name].append(paint_ms(context.new_page(), url))
            context.close()
    result = {name: {"median_ms": round(statistics.median(v), 1), "max_ms": round(max(v), 1)} for name, v in samples.items()}
    for baseline in ("healthz", "data_url"):
        result[f"console_vs_{baseline}"] = round(statistics.median(samples["console"]) / statistics.median(samples[baseline]), 2)
    return result


def hot_path_ns(repeat: int = 5, number: int = 500_000) -> dict[str, float]:
    """ns per request: the traffic sampler's count, and the Prometheus histogram update beside it (the baseline)."""
    import timeit

    from predserve.serving.metrics import ApiMetrics

    metrics = ApiMetrics()
    metrics.outcomes_of("churn")
    route = "/v1/models/{model}/predictions/{entity_id}"
    histogram = metrics.requests.setdefault((route, "GET", 200), metrics.read_get.__class__())

    def best(statement: Any) -> float:
        return min(timeit.repeat(statement, number=number, repeat=repeat)) / number * 1e9

    result = {"traffic_sample_ns": best(lambda: metrics.traffic.observe(route, "churn", 200, 0.00012)),
              "prometheus_histogram_ns": best(lambda: histogram.observe(0.00012)),
              "observe_request_ns": best(lambda: metrics.observe_request(route, "GET", 200, time.perf_counter() - 0.00012, "churn"))}
    result = {k: round(v) for k, v in result.items()}
    result["sample_vs_histogram"] = round(result["traffic_sample_ns"] / result["prometheus_histogram_ns"], 2)
    return result


def traffic(server: Server, key: str, seconds: float, stop_event: threading.Event) -> None:
    """A few minutes' worth of varied prediction traffic, compressed: a rate that rises and falls, a few 404s."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=5) as client:
        started = time.monotonic()
        i = 0
        while not stop_event.is_set() and time.monotonic() - started < seconds:
            elapsed = time.monotonic() - started
            rate = 40 + 120 * abs(((elapsed / 10) % 2) - 1)
            client.get(f"/v1/models/churn/predictions/{i % 150_000 + 1}")
            if i % 50 == 0:
                client.post("/v1/models/churn/predictions:batchGet", json={"ids": [str(j) for j in range(i % 1000, i % 1000 + 100)]})
            i += 1
            time.sleep(1 / rate)


def screenshots(browser: Any, server: Server, keys: dict[str, str], directory: Path) -> dict[str, int]:
    started = time.monotonic()
    load_done = threading.Event()
    load = threading.Thread(target=traffic, args=(server, keys["reader"], 40, load_done))
    load.start()
    sizes = {}
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    page = context.new_page()
    page.set_default_timeout(20_000)

    def shot(name: str, height: int | None = None) -> None:
        """The view, or its first ``height`` pixels (the PNGs stay under ~150 KB)."""
        path = directory / f"console-{name}.png"
        clip = {"x": 0, "y": 0, "width": 1000, "height": height} if height else None
        page.screenshot(path=str(path), full_page=height is not None, clip=clip)
        sizes[path.name] = path.stat().st_size

    try:
        page.goto(server.url + "/console")
        page.fill("#key", "psk_000000000000_" + "A" * 43)
        page.click("#login button[type=submit]")
        page.locator("#login-error").wait_for()
        shot("login")
        page.fill("#key", keys["admin"])
        page.click("#login button[type=submit]")
        page.locator("#models tr").first.wait_for()
        shot("models")
        page.goto(server.url + "/console#/models/churn")
        page.locator("#snapshot-picker").wait_for()
        page.select_option("#snapshot-picker", "2")  # the boosted tree's snapshot: its drift against snapshot 1
        page.locator("#profile").wait_for()
        shot("model", height=1250)
        time.sleep(max(0.0, 25 - (time.monotonic() - started)))  # let the traffic draw a few curves
        page.goto(server.url + "/console#/traffic")
        page.locator("#traffic-requests").wait_for()
        time.sleep(2)
        shot("traffic")
        page.goto(server.url + "/console#/lookup")
        page.locator("#lookup-model option").first.wait_for(state="attached")
        page.fill("#lookup-id", "42")
        page.click("#lookup-form button[type=submit]")
        page.locator("#lookup-body").wait_for()
        shot("lookup")
        page.goto(server.url + "/console#/accounts")
        page.locator("#accounts").wait_for()
        shot("accounts")
    finally:
        load_done.set()
        load.join()
        context.close()
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--loads", type=int, default=20, help="page loads timed per page (0: none)")
    parser.add_argument("--screenshots", type=Path, help="write one PNG per view into this directory")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"Debian's chromium is missing ({CHROMIUM}): `make chromium` installs it")
    from playwright.sync_api import sync_playwright

    hot_path = hot_path_ns()
    print(json.dumps({"hot_path": hot_path}), flush=True)
    store, iam, keys = prepare(args.rows)
    server = Server(store, iam)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            paint_ms(browser.new_page(), server.url + "/console")  # warm-up: the server's first answer
            results: dict[str, Any] = {"hot_path": hot_path}
            if args.loads:
                results["first_paint"] = first_paint(browser, server, args.loads)
                print(json.dumps(results["first_paint"]), flush=True)
            if args.screenshots:
                results["screenshots"] = screenshots(browser, server, keys, args.screenshots)
                print(json.dumps(results["screenshots"]), flush=True)
            browser.close()
    finally:
        server.stop()
    (OUT / "console.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
