"""The client's and the API's edges a newcomer meets (issue 26 item 11): an Unavailable that
names the server and its tries, `iam rotate --key-only`, and an id holding '/' (a%2Fb)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from click.testing import CliRunner

from predserve.cli import main
from predserve.client import AsyncClient, Client, NotFound, Unavailable
from predserve.iam import Registry
from tests.support.processes import free_port
from tests.support.servers import ApiServer, launch_api_server, stop_api_server
from tests.support.snapshots import publish_rows


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    store = str(tmp_path_factory.mktemp("edges") / "store.lmdb")
    publish_rows(store, "m", {"a/b": {"v": 1}, "plain": {"v": 2}, "x|y/z": {"v": 3}})
    publish_rows(store, "stale", {"1": {"v": 1}}, max_age=0.0)
    running = launch_api_server(store, None, "--no-auth", "--stale", "refuse")
    yield running
    stop_api_server(running)


def test_unavailable_names_the_server_and_how_many_tries_it_made(server: ApiServer) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    with Client(nobody, retries=2, backoff=0.01) as client, pytest.raises(Unavailable) as refused:
        client.get("churn", "1")
    assert refused.value.status == 0
    assert str(refused.value).startswith(f"{nobody}: the server did not answer: ConnectError")
    assert "gave up after 3 tries in " in str(refused.value)

    async def once() -> None:
        async with AsyncClient(nobody, retries=0) as client:
            await client.get("churn", "1")

    with pytest.raises(Unavailable, match=r"gave up after 1 try in "):
        asyncio.run(once())
    with Client(server.url, retries=1, backoff=0.01) as client, pytest.raises(Unavailable) as stale:
        client.get("stale", "1")  # a 503 from the server, retried once
    assert stale.value.status == 503 and stale.value.message.startswith(f"{server.url}: ")
    assert "max_age" in stale.value.message and stale.value.message.endswith("s)") and "after 2 tries" in stale.value.message


def test_iam_rotate_key_only_prints_just_the_new_key(tmp_path: Path) -> None:
    runner = CliRunner()
    iam = str(tmp_path / "iam.json")
    old = runner.invoke(main, ["iam", "create", "--iam", iam, "--key-only", "app"]).output.strip()
    rotated = runner.invoke(main, ["iam", "rotate", "--iam", iam, "--key-only", "app"])
    assert rotated.exit_code == 0 and rotated.output.count("\n") == 1
    new = rotated.output.strip()
    assert new.startswith("psk_") and new != old
    registry = Registry(iam)
    assert registry.authenticate(new) is not None and registry.authenticate(old) is None


def test_an_id_holding_a_slash_is_served_when_encoded(server: ApiServer) -> None:
    with httpx.Client(base_url=server.url) as http:
        for path, entity_id in [("a%2Fb", "a/b"), ("a%2fb", "a/b"), ("x%7Cy%2Fz", "x|y/z")]:
            found = http.get(f"/v1/models/m/predictions/{path}")
            assert found.status_code == 200 and found.json()["id"] == entity_id, found.text
        missing = http.get("/v1/models/m/predictions/no%2Fsuch")
        assert missing.status_code == 404
        assert missing.json()["error"]["message"] == "no prediction for id 'no/such' in model 'm' (snapshot 1)"
        unknown = http.get("/v1/models/nomodel/predictions/a%2Fb")
        assert unknown.status_code == 404 and "'nomodel'" in unknown.json()["error"]["message"]
        bad = http.get("/v1/models/m/predictions/%FF%2Fb")
        assert bad.status_code == 400 and "not valid UTF-8" in bad.json()["error"]["message"]
        assert http.get("/v1/models/m/predictions/a/b").status_code == 404  # an unencoded '/' is another path
    with Client(server.url) as client:  # the client fetches such ids too
        assert client.get("m", "a/b").prediction == {"v": 1}
        with pytest.raises(NotFound, match="no/such"):
            client.get("m", "no/such")
