"""predserve.client against a real `predserve serve` on loopback."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from predserve.client import AsyncClient, BadRequest, Client, Forbidden, NotFound, Prediction, Unauthorized, Unavailable
from tests.support.processes import free_port
from tests.support.servers import ApiServer, launch_api_server, stop_api_server
from tests.support.serving import make_keys
from tests.support.snapshots import publish_rows

ROWS = {str(i): {"score": i / 100} for i in range(1, 21)} | {"a/b": {"score": 0.5}, "..": {"score": 0.25}}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServer, dict[str, str], str]]:
    """One server over three models: churn (plain), stale (past its max_age), fallback (with a default)."""
    directory = tmp_path_factory.mktemp("client")
    store, iam = str(directory / "store.lmdb"), str(directory / "iam.json")
    publish_rows(store, "churn", ROWS)
    publish_rows(store, "stale", {"1": {"score": 1.0}}, max_age=0.0)
    publish_rows(store, "fallback", {"1": {"score": 1.0}}, default_prediction={"score": 0.0})
    keys = make_keys(iam)
    server = launch_api_server(store, iam, "--max-batch", "3")
    yield server, keys, store
    stop_api_server(server)


@pytest.fixture
def client(deployment: tuple[ApiServer, dict[str, str], str]) -> Iterator[Client]:
    server, keys, _ = deployment
    with Client(server.url, keys["reader"], max_batch=3, backoff=0.01) as c:
        yield c


def count(server: ApiServer, route: str, method: str, status: int) -> float:
    """How many requests of one route, method and status the server has answered (from /metrics)."""
    wanted = f'predserve_request_seconds_count{{method="{method}",route="{route}",status="{status}"}} '
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(wanted):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_get_returns_the_prediction(client: Client) -> None:
    assert client.get("churn", "7") == Prediction("churn", "7", 1, {"score": 0.07})


def test_ids_a_path_cannot_carry_are_fetched_too(client: Client) -> None:
    assert client.get("churn", "a/b").prediction == {"score": 0.5}
    assert client.get("churn", "..").prediction == {"score": 0.25}
    with pytest.raises(NotFound):
        client.get("churn", "no/such")


def test_batch_get_splits_at_the_server_limit_and_keeps_order(
        client: Client, deployment: tuple[ApiServer, dict[str, str], str]) -> None:
    server = deployment[0]
    before = count(server, "/v1/models/{model}/predictions:batchGet", "POST", 200)
    ids = ["5", "missing", "1", "20", "a/b", "5", "19"]
    results = client.batch_get("churn", ids)
    assert [r.id if r else None for r in results] == ["5", None, "1", "20", "a/b", "5", "19"]
    assert count(server, "/v1/models/{model}/predictions:batchGet", "POST", 200) - before == 3  # 3 + 3 + 1
    assert client.batch_get("churn", []) == []


def test_stale_and_default_marks(client: Client) -> None:
    stale = client.get("stale", "1")
    assert stale.stale and not stale.default
    assert client.batch_get("stale", ["1"])[0].stale  # type: ignore[union-attr]
    fallback = client.get("fallback", "unknown")
    assert fallback.default and fallback.prediction == {"score": 0.0} and not fallback.stale
    assert not client.get("fallback", "1").default


def test_errors_are_typed_and_4xx_is_never_retried(deployment: tuple[ApiServer, dict[str, str], str]) -> None:
    server, keys, _ = deployment
    route = "/v1/models/{model}/predictions/{entity_id}"
    before = count(server, route, "GET", 404)
    with Client(server.url, keys["reader"], retries=3) as reader:
        with pytest.raises(NotFound, match="'missing'"):
            reader.get("churn", "missing")
        with pytest.raises(NotFound, match="'nope'"):
            reader.get("nope", "1")
        with pytest.raises(BadRequest, match="over the maximum"):
            reader.get("churn", "x" * 600)
        with pytest.raises(BadRequest, match="empty id"):
            reader.get("churn", "")
    assert count(server, route, "GET", 404) - before == 2
    with Client(server.url, keys["other"]) as other, pytest.raises(Forbidden, match="'churn'"):
        other.get("churn", "1")
    with Client(server.url, "psk_000000000000_" + "A" * 43) as wrong, pytest.raises(Unauthorized) as caught:
        wrong.batch_get("churn", ["1"])
    assert caught.value.status == 401


def test_503_is_retried_with_backoff_then_unavailable(tmp_path: Path) -> None:
    store = str(tmp_path / "store.lmdb")
    publish_rows(store, "stale", {"1": {"score": 1.0}}, max_age=0.0)
    server = launch_api_server(store, None, "--no-auth", "--stale", "refuse")
    try:
        with Client(server.url, retries=2, backoff=0.2, max_backoff=0.2) as client:
            started = time.monotonic()
            with pytest.raises(Unavailable, match="max_age") as caught:
                client.get("stale", "1")
            elapsed = time.monotonic() - started
        assert caught.value.status == 503
        assert count(server, "/v1/models/{model}/predictions/{entity_id}", "GET", 503) == 3  # 1 + 2 retries
        assert elapsed >= 0.4  # two waits of 0.2 s (plus jitter)
    finally:
        stop_api_server(server)


def test_connection_errors_are_retried_until_the_server_is_up(deployment: tuple[ApiServer, dict[str, str], str]) -> None:
    _, keys, store = deployment
    server = launch_api_server(store, None, "--no-auth", wait=False)  # not listening yet
    try:
        with Client(server.url, retries=60, backoff=0.1, max_backoff=0.5) as client:
            assert client.get("churn", "3").prediction == {"score": 0.03}
    finally:
        stop_api_server(server)
    with Client(f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.01) as nobody, pytest.raises(Unavailable) as caught:
        nobody.get("churn", "1")
    assert caught.value.status == 0 and "ConnectError" in caught.value.message


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel accepts connections; nobody ever answers them
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with Client(url, timeout=0.2, retries=1, backoff=0.01) as client:
            started = time.monotonic()
            with pytest.raises(Unavailable, match="ReadTimeout"):
                client.get("churn", "1")
            assert time.monotonic() - started < 2


@pytest.mark.anyio
async def test_async_client(deployment: tuple[ApiServer, dict[str, str], str]) -> None:
    server, keys, _ = deployment
    async with AsyncClient(server.url, keys["reader"], max_batch=3) as client:
        assert (await client.get("churn", "7")).prediction == {"score": 0.07}
        assert (await client.get("churn", "a/b")).prediction == {"score": 0.5}
        results = await client.batch_get("churn", ["1", "x", "2", "3", "4"])
        assert [r.id if r else None for r in results] == ["1", None, "2", "3", "4"]
        assert (await client.get("stale", "1")).stale
        with pytest.raises(NotFound):
            await client.get("churn", "missing")
    async with AsyncClient(server.url, keys["other"]) as other:
        with pytest.raises(Forbidden):
            await other.batch_get("churn", ["1"])



def test_the_readme_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.processes import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python client"):]
    code = section[section.index("```python") + len("```python"):].split("```")[0]
    store = str(tmp_path / "store.lmdb")
    publish_rows(store, "churn", {str(i): {"predicted_churned": i % 2} for i in range(1, 100)})
    server = launch_api_server(store, None, "--no-auth")
    try:
        exec(code.replace("http://127.0.0.1:8000", server.url), {"key": None, "ids": ["1", "nobody", "42"]})
    finally:
        stop_api_server(server)
    assert capsys.readouterr().out.splitlines() == ["0 1 False False", "1 {'predicted_churned': 1}",
                                                    "nobody no prediction", "42 {'predicted_churned': 0}"]
