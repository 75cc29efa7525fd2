"""`predserve demo` and `make demo` stop their whole process tree on SIGTERM and SIGINT, and the
demo says which port it serves on when the one asked for is taken (issue 26 items 4, 5, 10);
while it serves, its recommender answers a rated user with ten products (issue 22 item 3).
Real commands as subprocesses, checked with real HTTP and the process list."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyarrow.compute as pc
import pytest

from predserve import datagen
from tests.support.processes import ROOT

VENV = Path(sys.executable).parent.parent
READY = "serving until Ctrl-C"


def descendants(pid: int) -> set[int]:
    """The live (not zombie) processes below ``pid``, from `ps`."""
    children: dict[int, list[int]] = {}
    for line in subprocess.run(["ps", "-e", "-o", "pid=,ppid=,stat="], capture_output=True, text=True, check=True).stdout.splitlines():
        child, parent, stat = line.split()
        if not stat.startswith("Z"):
            children.setdefault(int(parent), []).append(int(child))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or between the open and the read
        return False


# What `make test` installs on top of `make demo` (the test, gcp and dask extras, and what only
# they need): the demo's processes run with these made unimportable, as without the extras.
TEST_ONLY_MODULES = ("pytest", "schemathesis", "playwright", "hcl2", "google.cloud.bigquery", "google.cloud.bigquery_storage",
                     "google.cloud.pubsub", "google.cloud.pubsub_v1", "dask", "distributed")
BLOCKER = f"""
import sys

class WithoutTestExtras:
    def find_spec(self, name, path=None, target=None):
        if any(name == m or name.startswith(m + ".") for m in {TEST_ONLY_MODULES!r}):
            raise ModuleNotFoundError(f"No module named {{name!r}} (only `make test` installs it)", name=name)
        return None

sys.meta_path.insert(0, WithoutTestExtras())
"""


def start(command: list[str], log: Path, base_install: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start a demo command; return it, once serving, with its output so far. With
    ``base_install`` (a directory for a sitecustomize.py), its processes cannot import the test extras."""
    env = {**os.environ, "COLUMNS": "200"}
    if base_install is not None:
        base_install.mkdir()
        (base_install / "sitecustomize.py").write_text(BLOCKER)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(base_install), env.get("PYTHONPATH")]))
    out = log.open("w")
    proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True, env=env)
    deadline = time.monotonic() + 600
    while READY not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)
    return proc, log.read_text()


def served_url(output: str) -> str:
    return re.search(r"API serving on (http://127\.0\.0\.1:\d+)", output).group(1)  # type: ignore[union-attr]


def stops_within_a_second(proc: subprocess.Popen, sig: int, url: str) -> None:
    tree = {proc.pid} | descendants(proc.pid)
    assert len(tree) >= 3, tree  # the demo, the server, its worker (and make above them)
    assert httpx.get(f"{url}/healthz").status_code == 200
    started = time.monotonic()
    os.kill(proc.pid, sig)
    while any(map(alive, tree - {proc.pid})) or proc.poll() is None:
        assert time.monotonic() - started < 1.0, [p for p in tree if alive(p)]
        time.sleep(0.02)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", timeout=1)


@pytest.fixture
def taken_port() -> int:
    """A port something listens on, as :8000 was in the report."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield busy.getsockname()[1]


def demo_command(tmp_path: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "predserve.cli", "demo", "--dir", str(tmp_path / "demo"), "--rows", "100000", "--port", str(port)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_demo_its_server_and_workers_within_a_second(tmp_path: Path, taken_port: int, sig: int) -> None:
    proc, output = start(demo_command(tmp_path, taken_port), tmp_path / "demo.log", base_install=tmp_path / "site")
    url = served_url(output)
    assert not url.endswith(f":{taken_port}")
    assert f"port {taken_port} is taken (another server?): serving on port {url.rsplit(':', 1)[1]} instead" in output
    assert "apitools" not in output and "WARNING:root" not in output  # Beam's import-time noise (item 10)
    recommends_ten_products_over_http(output, url)
    stops_within_a_second(proc, sig, url)


def recommends_ten_products_over_http(output: str, url: str) -> None:
    """The served recommender (issue 22 item 3), read with the reader key the demo printed: a rated
    user's top 10 as one list, best first, none of them a product the user rated."""
    key = re.search(r"curl -H 'Authorization: Bearer (psk_\S+)'", output).group(1)  # type: ignore[union-attr]
    response = httpx.get(f"{url}/v1/models/recommender/predictions/42", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    listed = response.json()["prediction"]["recommendations"]
    ratings = [item["predicted_rating"] for item in listed]
    assert len(listed) == 10 and ratings == sorted(ratings, reverse=True)
    rated = set(datagen.ratings_table(rated_users=42).filter(pc.equal(pc.field("user_id"), 42)).column("product_id").to_pylist())
    assert len(rated) == datagen.RATINGS_PER_USER and not rated & {item["product_id"] for item in listed}
    unrated = httpx.get(f"{url}/v1/models/recommender/predictions/{datagen.RATED_USERS + 1}", headers={"Authorization": f"Bearer {key}"})
    assert unrated.status_code == 404


def test_sigterm_of_make_demo_stops_the_whole_tree(tmp_path: Path) -> None:
    # The shared virtualenv is already installed: -o keeps make from reinstalling it.
    command = ["make", "--no-print-directory", f"VENV={VENV}", "-o", f"{VENV}/.installed", "demo",
               f"DEMO_ARGS=--dir {tmp_path / 'demo'} --rows 100000 --port 0"]
    proc, output = start(command, tmp_path / "make.log")
    stops_within_a_second(proc, signal.SIGTERM, served_url(output))


def make_dry_run(target: str, tmp_path: Path) -> str:
    venv = tmp_path / "venv"  # a virtualenv that does not exist: make would create it
    return subprocess.run(["make", "-n", "--no-print-directory", f"VENV={venv}", target], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


def test_make_demo_installs_only_what_it_runs_and_make_test_the_rest(tmp_path: Path) -> None:
    demo = make_dry_run("demo", tmp_path)
    assert "pip install -q -e .\n" in demo and "[test]" not in demo
    test = make_dry_run("test", tmp_path)
    assert "pip install -q -e .\n" in test and "pip install -q -e '.[test]'" in test
