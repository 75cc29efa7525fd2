"""The console's server side in-process, over httpx's ASGI transport: its admin JSON routes, the
page's files and security headers, the model timeline and profiles in the model detail, and the
traffic samples' arithmetic. Real LMDB stores and real exports; the browser tests are in
test_console.py, the multi-worker merge in test_serving_server.py."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from predserve.datagen import INVERTED_PREDICT_SQL, PREDICT_SQL
from predserve.pipeline import GateRefused, run_export
from predserve.serving import traffic
from predserve.serving.console import STATIC
from predserve.serving.metrics import UNKNOWN_MODEL
from predserve.serving.schemas import Lookup, ModelDetail, Traffic
from predserve.serving.traffic_share import TrafficShare
from predserve.serving.traffic import LATENCY_BOUNDS, Cell, TrafficSampler, decode_second, encode_second, merge, quantile
from predserve import settings
from predserve.store import open_store
from tests.support.serving import in_process, InProcess, make_keys
from tests.support.snapshots import publish_rows

pytestmark = pytest.mark.anyio
ONE = "/v1/models/churn/predictions/{}"
GET_ROUTE = "/v1/models/{model}/predictions/{entity_id}"
INVERTED = INVERTED_PREDICT_SQL.format(model="churn")  # every label flipped: the drift gates refuse it



@pytest.fixture(scope="module")
def timeline_store(trained_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, dict[str, str]]:
    """Two published exports of the churn model, a refused one (labels inverted), a rollback to the first."""
    directory = tmp_path_factory.mktemp("console")
    store, iam = str(directory / "store.lmdb"), str(directory / "iam.json")

    def export(query: str, **options: Any) -> Any:
        return run_export(warehouse=str(trained_warehouse), model="churn", key="user_id", store_url=store,
                          query=query, max_age=3600, **options)

    export(PREDICT_SQL.format(model="churn"))
    export(PREDICT_SQL.format(model="churn"))
    with pytest.raises(GateRefused):
        export(INVERTED)
    with open_store(store) as writer:
        writer.rollback("churn", 1)
    return store, iam, make_keys(iam)


@pytest.fixture
def console(timeline_store: tuple[str, str, dict[str, str]]) -> Iterator[InProcess]:
    store, iam, keys = timeline_store
    server = in_process(store, iam, keys)
    yield server
    server.context.close()


# ---- the model detail: history with profiles and drift, the timeline (issue 14 item 4) -----------
async def test_model_detail_carries_profiles_drift_and_the_timeline(console: InProcess) -> None:
    async with console.client("admin") as admin:
        response = await admin.get("/v1/models/churn")
        listing = (await admin.get("/v1/models")).json()["models"]
    assert response.status_code == 200
    detail = response.json()
    ModelDetail.model_validate(detail)
    assert detail["snapshot"] == 1 and detail["max_age"] == 3600 and detail["stale"] is False
    first, second = detail["history"]
    assert first["profile"]["rows"] == 3000 and first["drift"] is None
    assert set(first["profile"]["columns"]) == {"predicted_churned", "predicted_churned_probs"}
    probabilities = first["profile"]["columns"]["predicted_churned_probs"]
    assert probabilities["kind"] == "probabilities" and "values" not in probabilities  # absent fields stay absent
    assert sum(probabilities["labels"]["1"]) == 3000
    assert second["drift"]["baseline"] == 1 and second["drift"]["columns"]["predicted_churned"]["distance"] == 0
    assert second["drift"]["sample"]["in_both"] == second["drift"]["sample"]["ids"] > 0
    events = detail["events"]  # newest first
    assert [(e["event"], e["snapshot"], e["previous"]) for e in events] == [
        ("rolled_back", 1, 2), ("refused", 3, 2), ("published", 2, 1), ("published", 1, None)]
    refused = events[1]
    assert refused["rows"] == 3000 and {g["gate"] for g in refused["gates"]} == {"prediction_drift", "changed_labels"}
    assert "predicted_churned: L-infinity distance" in refused["gates"][0]["detail"]
    assert "above the limit 0.1" in refused["gates"][0]["detail"]
    assert listing[0]["last_event"] == events[0]


async def test_the_openapi_document_describes_the_console_routes_and_their_bodies(console: InProcess) -> None:
    async with console.client(None) as client:
        spec = (await client.get("/openapi.json")).json()
    paths, schemas = spec["paths"], spec["components"]["schemas"]
    for path in ("/console", "/v1/console/session", "/v1/console/traffic", "/v1/console/lookup/{model}/{entity_id}"):
        assert path in paths, path
    assert "/console/static/{name}" not in paths
    ok = paths["/v1/models/{model}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"] == "#/components/schemas/ModelDetail"
    history = schemas["HistoryEntry"]["properties"]
    assert "profile" in history and "drift" in history
    for name in ("Profile", "ColumnProfile", "DriftReport", "ColumnDriftReport", "Verdict", "DriftLimits", "Event",
                 "Traffic", "TrafficSeries", "Lookup", "Session", "AccountList"):
        assert name in schemas, name
    # each drift verdict with the limit it used: the records of predserve.store.reports, as the API returns them
    assert history["drift"]["anyOf"][0]["$ref"] == "#/components/schemas/DriftReport"
    column = schemas["ColumnDriftReport"]["properties"]
    assert column["verdicts"]["items"]["$ref"] == "#/components/schemas/Verdict"
    assert column["verdict"]["enum"] == ["over", "within", "not gated"]
    verdict = schemas["Verdict"]
    assert {"gate", "figure", "value", "limit", "limit_from", "over", "why"} <= set(verdict["required"])
    assert set(verdict["properties"]["gate"]["enum"]) == {"prediction_drift", "changed_labels", "moved_values"}
    limits = schemas["DriftLimits"]["properties"]
    assert limits["max_drift"]["default"] == settings.MAX_DRIFT and "column_max_drift" in limits
    assert {"limits", "limits_recorded", "verdict"} <= set(schemas["DriftReport"]["required"])
    assert {"401", "403"} <= set(paths["/v1/console/traffic"]["get"]["responses"])


# ---- the routes the page reads ------------------------------------------------------------------
async def test_console_routes_need_the_admin_role(console: InProcess) -> None:
    routes = ["/v1/console/session", "/v1/console/traffic", "/v1/console/lookup/churn/1"]
    async with console.client(None) as anonymous, console.client("reader") as reader, console.client("admin") as admin:
        for route in routes:
            assert (await anonymous.get(route)).status_code == 401, route
            assert (await reader.get(route)).status_code == 403, route
            assert (await admin.get(route)).status_code == 200, route
        session = (await admin.get("/v1/console/session")).json()
    assert session["auth"] is True and session["account"] == "ops-admin" and session["workers"] == 1


async def test_no_auth_opens_the_console_routes(small_store: str) -> None:
    server = in_process(small_store, None, auth=False)
    try:
        async with server.client(None) as client:
            session = (await client.get("/v1/console/session")).json()
            assert (await client.get("/v1/console/traffic")).status_code == 200
    finally:
        server.context.close()
    assert session["auth"] is False and session["account"] is None


@pytest.fixture
def small_store(tmp_path: Path) -> str:
    path = str(tmp_path / "small.lmdb")
    publish_rows(path, "churn", {"1": {"p": 1}, "2": {"p": 2}}, max_age=0.0, default_prediction={"p": 0})
    return path


async def test_lookup_returns_the_stored_bytes_and_the_read_latency(console: InProcess,
                                                                    timeline_store: tuple[str, str, dict[str, str]]) -> None:
    async with console.client("admin") as admin:
        found = await admin.get("/v1/console/lookup/churn/42")
        missing = await admin.get("/v1/console/lookup/churn/nobody")
        no_model = await admin.get("/v1/console/lookup/nope/1")
        too_long = await admin.get("/v1/console/lookup/churn/" + "9" * 600)
    assert found.status_code == 200
    answer = Lookup.model_validate(found.json()).model_dump()
    assert answer["found"] is True and answer["snapshot"] == 1 and answer["stale"] is False and answer["read_ms"] >= 0
    with open_store(timeline_store[0], readonly=True) as store:
        stored = store.get("churn", 1, b"42")
    assert found.content.endswith(b',"body":' + stored + b"}")  # the stored bytes, not re-encoded
    assert missing.status_code == 200 and missing.json()["found"] is False and missing.json()["body"] is None
    assert no_model.status_code == 404 and "'nope'" in no_model.json()["error"]["message"]
    assert too_long.status_code == 400 and "over the maximum" in too_long.json()["error"]["message"]


async def test_lookup_shows_stale_snapshots_and_default_predictions(small_store: str) -> None:
    server = in_process(small_store, None, auth=False)
    try:
        async with server.client(None) as client:
            found = (await client.get("/v1/console/lookup/churn/1")).json()
            fallback = (await client.get("/v1/console/lookup/churn/unknown")).json()
    finally:
        server.context.close()
    assert found["found"] is True and found["stale"] is True and found["body"]["prediction"] == {"p": 1}
    assert fallback["found"] is False and fallback["body"]["default"] is True and fallback["body"]["prediction"] == {"p": 0}


async def test_service_accounts_never_show_keys_or_hashes(console: InProcess) -> None:
    async with console.client("admin") as admin:
        accounts = (await admin.get("/v1/serviceAccounts")).json()["service_accounts"]
    assert {a["name"] for a in accounts} == {"reader-all", "reader-other", "ops-admin"}
    other = next(a for a in accounts if a["name"] == "reader-other")
    assert other["roles"] == {"reader": ["other"]}
    for account in accounts:
        assert set(account) == {"name", "key_id", "roles", "created_at"}
    text = str(accounts)
    assert not any(key in text for key in console.keys.values())
    assert not re.search(r"[0-9a-f]{64}", text)  # no SHA-256 hash


# ---- the page's files ---------------------------------------------------------------------------
async def test_the_page_and_its_script_are_served_with_a_strict_policy(console: InProcess) -> None:
    async with console.client(None) as client:
        page = await client.get("/console")
        script = await client.get("/console/static/console.js")
        again = await client.get("/console/static/console.js", headers={"If-None-Match": script.headers["etag"]})
        unknown = await client.get("/console/static/console.css")  # inlined into the page, not served alone
        traversal = await client.get("/console/static/..%2Fapp.py")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    css = (STATIC / "console.css").read_bytes()
    style_hash = base64.b64encode(hashlib.sha256(css).digest()).decode()
    for response in (page, script):
        policy = dict(part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
        assert policy == {"default-src": "'none'", "script-src": "'self'", "style-src": f"'sha256-{style_hash}'",
                          "img-src": "data:", "connect-src": "'self'", "base-uri": "'none'", "form-action": "'none'",
                          "frame-ancestors": "'none'"}
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
    assert again.status_code == 304 and again.content == b""
    assert unknown.status_code == 404 and traversal.status_code == 404
    html = page.text
    assert "<style>" + css.decode() + "</style>" in html  # exactly the hashed sheet
    assert '<script src="/console/static/console.js" defer></script>' in html
    assert not re.search(r"<script>|<script [^>]*>[^<]|\son[a-z]+=|style=", html)  # no inline script, handler or style attribute


def test_the_script_never_writes_html() -> None:
    """Every value reaches the page as text: no innerHTML, outerHTML, insertAdjacentHTML, document.write or eval."""
    source = (STATIC / "console.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in source, sink
    assert "textContent" in source and "createTextNode" in source


# ---- traffic ------------------------------------------------------------------------------------
async def test_traffic_counts_requests_errors_and_latency_per_route_and_model(small_store: str) -> None:
    server = in_process(small_store, None, auth=False)
    try:
        async with server.client(None) as client:
            for _ in range(7):
                assert (await client.get(ONE.format(1))).status_code == 200
            for _ in range(2):
                assert (await client.get("/v1/models/nope/predictions/1")).status_code == 404
            answer = (await client.get("/v1/console/traffic?seconds=10")).json()
            bad = await client.get("/v1/console/traffic?seconds=0")
    finally:
        server.context.close()
    Traffic.model_validate(answer)
    assert bad.status_code == 400
    series = {(s["route"], s["model"]): s for s in answer["series"]}
    churn = series[(GET_ROUTE, "churn")]
    assert len(churn["points"]) == 10 and [p[0] for p in churn["points"]] == list(range(answer["now"] - 9, answer["now"] + 1))
    assert sum(p[1] for p in churn["points"]) == 7 and churn["last_minute"]["requests"] == 7
    assert churn["last_minute"]["error_rate"] == 0 and 0 < churn["last_minute"]["p50_ms"] <= churn["last_minute"]["p99_ms"]
    unknown = series[(GET_ROUTE, UNKNOWN_MODEL)]  # a name no published model answered to
    assert unknown["last_minute"]["requests"] == 2 and unknown["last_minute"]["client_error_rate"] == 1
    everything = series[("*", "*")]
    assert everything["prediction"] and everything["last_minute"]["requests"] == 9
    assert answer["series"][0]["route"] == "*"
    assert answer["workers"]["configured"] == 1 and answer["workers"]["reporting"] == [answer["workers"]["answered_by"]]


def test_percentiles_from_the_bins_are_within_a_bin_of_the_exact_ones() -> None:
    rng = random.Random(5)
    latencies = [rng.lognormvariate(-8, 1.2) for _ in range(20_000)]  # around 0.3 ms, a long tail
    sampler = TrafficSampler()
    for seconds in latencies:
        sampler.observe("r", "m", 200, seconds)
    cell = sampler.cells[("r", "m")]
    ordered = sorted(latencies)
    for q in (0.5, 0.9, 0.99, 0.999):
        exact = ordered[int(q * len(ordered)) - 1]
        estimate = quantile(cell.bins, cell.requests, q)
        assert abs(estimate - exact) / exact < 0.19, (q, estimate, exact)  # a bin spans 2^(1/4) = 1.19x
    assert quantile({}, 0, 0.5) is None
    assert quantile({len(LATENCY_BOUNDS): 3}, 3, 0.99) == LATENCY_BOUNDS[-1]  # beyond the last bound


def test_the_sampler_keeps_the_window_and_workers_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_000_000.2]
    monkeypatch.setattr(traffic.time, "time", lambda: clock[0])
    sampler = TrafficSampler(window=3)
    for second in range(6):  # six seconds of two requests each; a 500 in the last one
        clock[0] = 1_000_000.2 + second
        sampler.observe("r", "m", 200, 0.001)
        sampler.observe("r", "m", 500 if second == 5 else 404, 0.002)
    kept = sampler.since(0)
    assert [second for second, _ in kept] == [1_000_002, 1_000_003, 1_000_004, 1_000_005]  # 3 completed + the current
    other = [decode_second(encode_second(second, cells)) for second, cells in sampler.since(1_000_004)]  # as another worker reads them
    merged = merge([kept, other])
    last = merged[1_000_005][("r", "m")]
    assert (last.requests, last.client_errors, last.server_errors) == (4, 0, 2)
    assert merged[1_000_003][("r", "m")].requests == 2
    assert sum(last.bins.values()) == 4
    with pytest.raises((ValueError, TypeError)):
        decode_second(b'[1, [["r", "m", "x"]]]')
    empty = Cell()
    empty.add(last)
    assert empty.to_list() == last.to_list()


def test_workers_share_their_seconds_as_appended_lines(tmp_path: Path) -> None:
    """What one worker writes and another reads (the real server's two workers: test_serving_server.py)."""
    sampler = TrafficSampler()
    now = int(time.time())

    def second(at: int, requests: int) -> None:
        cell = Cell()
        cell.requests, cell.bins = requests, {40: requests}
        sampler.past.append((at, {(GET_ROUTE, "churn"): cell}))

    for at in range(now - 10, now - 5):
        second(at, 1)
    writer, reader = TrafficShare(str(tmp_path), 2), TrafficShare(str(tmp_path), 2)
    writer.own = tmp_path / "worker-111.jsonl"  # another worker's file (both live in this process here)
    writer.write_if_wanted(sampler)
    assert not writer.own.exists() and reader.others() == []  # no console asked: nothing written
    reader.ask()
    writer.write_if_wanted(sampler)
    [(pid, view)] = reader.others()
    assert pid == 111 and [at for at, _ in view] == list(range(now - 10, now - 5))

    while int(time.time()) <= now:  # a second completed after the first write is appended, and only it is read
        time.sleep(0.05)
    second(now, 2)
    writer.write_if_wanted(sampler)
    assert len(writer.own.read_bytes().splitlines()) == 6
    [(_, view)] = reader.others()
    assert [at for at, _ in view][-2:] == [now - 6, now] and view[-1][1][(GET_ROUTE, "churn")].requests == 2
    assert reader.readers[writer.own].offset == writer.own.stat().st_size

    line = encode_second(now + 1, {(GET_ROUTE, "churn"): Cell()})  # a line caught half-written is read once complete
    with writer.own.open("ab") as file:
        file.write(line[:10])
    assert len(reader.others()[0][1]) == 6
    with writer.own.open("ab") as file:
        file.write(line[10:])
    assert reader.others()[0][1][-1][0] == now + 1

    writer.lines = 2 * traffic.WINDOW_SECONDS + 1  # past twice the window: the file is rewritten, and read afresh
    inode = writer.own.stat().st_ino
    writer.write_if_wanted(sampler)
    assert writer.own.stat().st_ino != inode
    assert [at for at, _ in reader.others()[0][1]] == [*range(now - 10, now - 5), now]  # the sampler's seconds, once each

    old = time.time() - 10  # a worker that stopped writing is left out
    os.utime(writer.own, (old, old))
    assert reader.others() == []


def test_the_console_docs_list_every_route_and_show_every_view() -> None:
    from predserve.serving.console import console as router
    from tests.support.processes import ROOT

    doc = (ROOT / "docs/console.md").read_text()
    for route in router.routes:
        path = route.path.replace("{entity_id}", "{id}").replace("{name}", "console.js")  # type: ignore[attr-defined]
        assert path in doc, f"docs/console.md does not describe {path}"
    shots = re.findall(r"\]\((console-[a-z]+\.png)\)", doc)
    assert len(shots) == 6
    for name in shots:
        size = (ROOT / "docs" / name).stat().st_size
        assert size < 150_000, f"docs/{name} is {size} bytes; keep screenshots small"


def test_every_console_file_is_package_data() -> None:
    """A wheel or sdist carries what `predserve serve` reads from serving/static/ (both were checked by hand:
    docs/console.md)."""
    import fnmatch
    import tomllib

    from tests.support.processes import ROOT

    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["predserve.serving"]
    files = [path.relative_to(STATIC.parent).as_posix() for path in STATIC.iterdir()]
    assert sorted(files) == ["static/console.css", "static/console.js", "static/index.html"]
    assert all(any(fnmatch.fnmatch(name, glob) for glob in globs) for name in files)
