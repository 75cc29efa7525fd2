"""The web console in a real browser: Debian's chromium, headless, driven by Playwright, against
`predserve serve` on loopback over a real export of the demo's churn model.

One browser for the module; each test opens its own browser context (its own sessionStorage).
The tests fail, never skip, when chromium is missing: `make test` installs it with apt-get.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from predserve.datagen import INVERTED_PREDICT_SQL, PREDICT_SQL
from predserve.iam import Registry
from predserve.pipeline import GatePolicy, GateRefused, run_export
from predserve.store import open_store
from tests.support.servers import ApiServer, launch_api_server, stop_api_server

CHROMIUM = os.environ.get("PREDSERVE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
WAIT_MS = 15_000  # the longest a view may take to show what a test waits for (the model view refreshes every 5 s)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian's chromium is missing ({CHROMIUM}): run `make test`, which installs it with apt-get "
                    "(or set PREDSERVE_CHROMIUM to a Chromium binary)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Deployment:
    """A store with a demo-like churn model, service accounts, and the API serving it."""

    def __init__(self, store: str, iam: str, server: ApiServer, keys: dict[str, str]) -> None:
        self.store, self.iam, self.server, self.keys = store, iam, server, keys
        self.url = server.url


@pytest.fixture(scope="module")
def deployment(trained_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Snapshot 1 and 2 published (daily max_age, like the demo's), snapshot 3 refused by the drift gates."""
    directory = tmp_path_factory.mktemp("console-browser")
    store, iam = str(directory / "store.lmdb"), str(directory / "iam.json")

    def export(query: str) -> None:
        run_export(warehouse=str(trained_warehouse), model="churn", key="user_id", store_url=store, query=query, max_age=86400)

    export(PREDICT_SQL.format(model="churn"))
    export(PREDICT_SQL.format(model="churn"))
    with pytest.raises(GateRefused):
        export(INVERTED_PREDICT_SQL.format(model="churn"))
    registry = Registry(iam)
    keys = {"admin": registry.create("console-admin", "admin")[1], "reader": registry.create("app-reader", "reader")[1]}
    server = launch_api_server(store, iam)
    try:
        yield Deployment(store, iam, server, keys)
    finally:
        stop_api_server(server)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page in a fresh browser context; a script error on it fails the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, errors


def eventually(check: Any, seconds: float = WAIT_MS / 1000) -> Any:
    """``check()``'s first true value within ``seconds``. (Playwright's wait_for_function evaluates a
    string in the page, which the console's Content-Security-Policy forbids, as it should.)"""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"not true within {seconds} s"
            return value
        time.sleep(0.1)


def sign_in(page: Any, deployment: Deployment, key: str | None = None) -> None:
    page.goto(deployment.url + "/console")
    page.fill("#key", key or deployment.keys["admin"])
    page.click("#login button[type=submit]")


# ---- signing in -----------------------------------------------------------------------------------
def test_a_wrong_key_is_refused_with_a_clear_message(page: Any, deployment: Deployment) -> None:
    sign_in(page, deployment, "psk_000000000000_" + "A" * 43)
    error = page.locator("#login-error")
    error.wait_for()
    assert error.inner_text().startswith("This key was refused: invalid or revoked key")
    assert page.locator("#nav").is_hidden() and page.locator("#view").is_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    page.fill("#key", deployment.keys["reader"])  # a valid key without the admin role
    page.click("#login button[type=submit]")
    eventually(lambda: "lacks the admin role" in error.inner_text())
    assert "This key cannot open the console" in error.inner_text() and "app-reader" in error.inner_text()
    assert page.locator("#view").is_hidden()


def test_signing_in_shows_the_model_with_its_snapshot_and_freshness(page: Any, deployment: Deployment, browser: Any) -> None:
    sign_in(page, deployment)
    row = page.locator("#models tr[data-model=churn]")
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[0] == "churn" and cells[1] == "2" and cells[2] == "3,000"
    assert re.fullmatch(r"\d+(m \d+)?s of 1d 0h", cells[3]), cells[3]
    assert cells[4] == "fresh" and cells[6].startswith("refused snapshot 3")
    assert page.locator("#who").inner_text() == "signed in as console-admin"
    page.reload()  # the key is kept for this tab's session: no second sign-in
    page.locator("#models tr[data-model=churn]").wait_for()
    assert page.locator("#login").is_hidden()
    other = browser.new_context()  # another browser session knows no key
    try:
        fresh = other.new_page()
        fresh.goto(deployment.url + "/console")
        fresh.locator("#login").wait_for()
        assert fresh.locator("#login-error").is_hidden()
    finally:
        other.close()
    page.click("#logout")
    page.locator("#login").wait_for()
    assert page.evaluate("sessionStorage.length") == 0


# ---- the views ------------------------------------------------------------------------------------
def test_looking_up_an_id_shows_the_stored_prediction_and_the_read_latency(page: Any, deployment: Deployment) -> None:
    sign_in(page, deployment)
    page.locator("#models").wait_for()
    page.click("#nav a[data-view=lookup]")
    page.locator("#lookup-model option[value=churn]").wait_for(state="attached")
    page.fill("#lookup-id", "42")
    page.click("#lookup-form button[type=submit]")
    body = page.locator("#lookup-body")
    body.wait_for()
    with open_store(deployment.store, readonly=True) as store:
        stored = json.loads(store.get("churn", 2, b"42"))
    assert json.loads(body.inner_text()) == stored
    assert re.fullmatch(r"\d+\.\d{3} ms", page.locator("#read-ms").inner_text())
    page.fill("#lookup-id", "no-such-user")
    page.click("#lookup-form button[type=submit]")
    eventually(lambda: body.inner_text() == "no prediction for this id")


def test_the_timeline_shows_the_refusal_and_a_rollback_appears(page: Any, deployment: Deployment) -> None:
    sign_in(page, deployment)
    page.locator("#models a").first.click()
    refused = page.locator("#timeline li[data-event=refused]")
    refused.wait_for()
    assert "snapshot 3 (3,000 rows); snapshot 2 kept serving" in refused.inner_text()
    assert "prediction_drift: predicted_churned: L-infinity distance" in refused.inner_text()
    assert "changed_labels" in refused.inner_text()
    assert page.locator("#timeline li[data-event=rolled_back]").count() == 0
    column = page.locator("#profile .column[data-column=predicted_churned]")
    assert "L-infinity distance 0.0000" in column.inner_text()  # snapshot 2 against snapshot 1: the same predictions
    assert column.locator(".drift").get_attribute("data-verdict") == "within"  # as the API judged it
    assert "is within the limit 0.1 (--max-drift)" in column.locator(".verdicts li[data-gate=prediction_drift]").inner_text()
    assert column.locator("svg rect.bar.s2").count() > 0 and column.locator("svg rect.bar.s1").count() > 0
    with open_store(deployment.store) as writer:
        writer.rollback("churn")
    rolled = page.locator("#timeline li[data-event=rolled_back]")
    rolled.wait_for()  # the page refreshes every 5 s, the server's pointer cache every 1 s
    assert "back to snapshot 1 (3,000 rows), from 2" in rolled.inner_text()
    assert page.locator("#timeline li").first.get_attribute("data-event") == "rolled_back"
    assert page.locator(".facts dd").first.inner_text() == "1"
    with open_store(deployment.store) as writer:  # leave the model as the other tests expect it
        writer.rollback("churn", 2)


def test_the_traffic_chart_moves_under_load(page: Any, deployment: Deployment) -> None:
    sign_in(page, deployment)
    page.locator("#models").wait_for()
    page.click("#nav a[data-view=traffic]")
    chart = page.locator("#traffic-requests")
    chart.wait_for()
    before = chart.locator("path").first.get_attribute("d")
    assert "worker process" in page.locator("#workers").inner_text()
    load = threading.Thread(target=send_load, args=(deployment, 600, 3.0))  # bounded: 600 requests, loopback
    load.start()
    total = page.locator('#traffic-table tr[data-route="*"] td').nth(2)
    try:
        eventually(lambda: float(chart.get_attribute("data-max") or 0) >= 50)
        eventually(lambda: int(total.inner_text().replace(",", "")) >= 600)
    finally:
        load.join()
    assert chart.locator("path").first.get_attribute("d") != before
    latency = page.locator("#traffic-latency path[data-series=p99]").get_attribute("d")
    assert latency and latency.startswith("M")


def send_load(deployment: Deployment, requests: int, seconds: float) -> None:
    """``requests`` predictions spread over about ``seconds``, with the reader's key."""
    headers = {"Authorization": f"Bearer {deployment.keys['reader']}"}
    with httpx.Client(base_url=deployment.url, headers=headers, timeout=10) as client:
        started = time.monotonic()
        for i in range(requests):
            assert client.get(f"/v1/models/churn/predictions/{i % 3000 + 1}").status_code == 200
            ahead = started + seconds * (i + 1) / requests - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


def test_service_accounts_show_names_roles_and_models_but_no_keys(page: Any, deployment: Deployment) -> None:
    sign_in(page, deployment)
    page.locator("#models").wait_for()
    page.click("#nav a[data-view=accounts]")
    page.locator("#accounts tr[data-account=app-reader]").wait_for()
    reader = page.locator("#accounts tr[data-account=app-reader] td").all_inner_texts()
    assert reader[:3] == ["app-reader", "reader", "all models"]
    text = page.locator("#view").inner_text()
    assert "console-admin" in text and not any(key in text for key in deployment.keys.values())


# ---- security -------------------------------------------------------------------------------------
def test_the_content_security_policy_blocks_injected_script(page: Any, deployment: Deployment) -> None:
    """An inline script that found its way into the page does not run, and the page refuses to be framed."""
    sign_in(page, deployment)
    page.locator("#models").wait_for()
    blocked = page.evaluate("""() => new Promise((resolve) => {
        document.addEventListener('securitypolicyviolation', (e) => resolve(e.violatedDirective), {once: true});
        const script = document.createElement('script');
        script.textContent = 'window.injected = true';
        document.body.append(script);
    })""")
    assert blocked.startswith("script-src") and page.evaluate("window.injected === undefined")
    # frame-ancestors 'none': the browser refuses to show the console in a frame, not a page without the policy
    page.goto(deployment.url + "/healthz")  # a page of the same origin without the console's policy (which forbids frames)
    page.set_content(f'<iframe name="console" src="{deployment.url}/console"></iframe>'
                     f'<iframe name="probe" src="{deployment.url}/healthz"></iframe>')
    urls = {frame.name: frame.url for frame in page.frames}
    assert urls["console"].startswith("chrome-error://") and urls["probe"] == deployment.url + "/healthz"


def test_no_auth_opens_the_console_without_a_key(page: Any, deployment: Deployment) -> None:
    server = launch_api_server(deployment.store, None, "--no-auth")
    try:
        page.goto(server.url + "/console")
        page.locator("#models tr[data-model=churn]").wait_for()
        assert page.locator("#who").inner_text() == "authentication is off (--no-auth)"
        assert page.locator("#login").is_hidden() and page.locator("#logout").is_hidden()
    finally:
        stop_api_server(server)


# ---- drift verdicts: the page shows the API's, and decides nothing -----------------------------------
def test_the_page_shows_each_drift_verdict_the_api_returns(page: Any, deployment: Deployment, trained_warehouse: Path) -> None:
    """A known shift published with --allow-drift (a second model, so the other tests' model stays as it is)."""
    for query, policy in ((PREDICT_SQL, None), (INVERTED_PREDICT_SQL, GatePolicy(allow_drift=True))):
        run_export(warehouse=str(trained_warehouse), model="shifted", key="user_id", store_url=deployment.store,
                   query=query.format(model="churn"), policy=policy)
    with httpx.Client(base_url=deployment.url, headers={"Authorization": f"Bearer {deployment.keys['admin']}"}) as api:
        drift = eventually(lambda: api.get("/v1/models/shifted").json().get("history", [{}])[-1].get("drift"))
    assert drift["columns"]["predicted_churned"]["verdict"] == "over"
    sign_in(page, deployment)
    page.locator("#models tr[data-model=shifted]").wait_for()
    page.goto(deployment.url + "/console#/models/shifted")
    page.locator("#profile .column[data-column=predicted_churned] .drift").wait_for()
    for name, figures in drift["columns"].items():
        shown = page.locator(f"#profile .column[data-column={name}]")
        assert shown.locator(".drift").get_attribute("data-verdict") == figures["verdict"], name
        items = shown.locator(".verdicts li")
        assert items.count() == len(figures["verdicts"])
        for i, verdict in enumerate(figures["verdicts"]):
            assert items.nth(i).get_attribute("data-over") == str(verdict["over"]).lower()
            assert items.nth(i).inner_text() == f"{verdict['gate']}: {verdict['why']}"
    label = page.locator("#profile .column[data-column=predicted_churned]")
    assert label.locator(".badge").first.inner_text() == "over the limit"
    assert "is above the limit 0.1 (--max-drift)" in label.inner_text()
