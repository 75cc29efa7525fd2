"""The images `make image` builds, run from their own root filesystems (tests/support/oci.py: unpacked
from the OCI archives, the entrypoint run with the image's env and user under unshare + chroot,
root filesystem read-only). `make test` builds them first; without them these tests fail.

The serve image answers from an LMDB store mounted in and from the Bigtable emulator, goes
ready, and stops cleanly on SIGTERM; the export image runs `predserve export` and the command
line a Flex Template launcher runs, from the BigQuery emulator into the Bigtable emulator, and
the served bodies are the rows.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from predserve.store import open_store
from tests.support import oci
from tests.support.bigtable import bigtable_url
from tests.support.processes import ROOT, free_port
from tests.support.production import BQ_PROJECT, BigQueryEmulator
from tests.support.serving import make_keys
from tests.support.snapshots import publish_rows

SERVE_ARCHIVE = ROOT / "dist/predserve-serve.oci.tar"
EXPORT_ARCHIVE = ROOT / "dist/predserve-export.oci.tar"
# What the serve image must not hold (the list, and what they pull in).
NOT_SERVING = ("duckdb", "apache_beam", "sklearn", "xgboost", "pyarrow", "numpy", "scipy", "sqlglot")
ROWS = {str(i): {"churn_probability": i / 100, "plan": "pro" if i % 2 else "free"} for i in range(1, 40)}


def unpacked(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> oci.Image:
    if not archive.is_file():
        pytest.fail(f"{archive} is missing: build the images with `make image` (make test does)")
    return oci.unpack(archive, tmp_path_factory.mktemp(archive.name.split(".")[0]) / "rootfs")


@pytest.fixture(scope="session")
def serve_image(tmp_path_factory: pytest.TempPathFactory) -> oci.Image:
    return unpacked(SERVE_ARCHIVE, tmp_path_factory)


@pytest.fixture(scope="session")
def export_image(tmp_path_factory: pytest.TempPathFactory) -> oci.Image:
    return unpacked(EXPORT_ARCHIVE, tmp_path_factory)


def site_packages(image: oci.Image) -> Path:
    return image.root / "opt/predserve/lib/python3.11/site-packages"


class Served:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5)

    def logged(self) -> str:
        return self.log.read_text()


def wait_ready(served: Served, timeout: float = 30.0) -> float:
    """Seconds until /readyz answered 200."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if served.proc.poll() is not None:
            pytest.fail(f"the serve image exited with {served.proc.returncode}:\n{served.logged()}")
        try:
            if served.get("/readyz").status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    pytest.fail(f"the serve image was not ready within {timeout}s:\n{served.logged()}")


@pytest.fixture
def run_serve_image(serve_image: oci.Image, tmp_path: Path) -> Iterator:
    started: list[Served] = []

    def run(env: dict[str, str], mounts: list[tuple] = ()) -> Served:
        port = free_port()
        log = tmp_path / f"serve-{port}.log"
        with log.open("wb") as out:
            proc = oci.start(serve_image, env={"PORT": str(port), **env}, mounts=mounts, stdout=out, stderr=subprocess.STDOUT)
        served = Served(proc, port, log)
        started.append(served)
        return served

    yield run
    for served in started:
        if served.proc.poll() is None:
            oci.terminate(served.proc)


# ---- the serve image ---------------------------------------------------------------------
def test_the_serve_image_holds_the_api_and_nothing_else(serve_image: oci.Image, export_image: oci.Image) -> None:
    installed = {p.name.split("-")[0].lower() for p in site_packages(serve_image).iterdir()}
    assert "predserve" in installed and "granian" in installed and "lmdb" in installed
    assert sorted(set(NOT_SERVING) & installed) == []
    assert set(NOT_SERVING) <= {p.name.split("-")[0].lower() for p in site_packages(export_image).iterdir()}
    assert serve_image.entrypoint == ["predserve", "serve"]
    user, _, group = serve_image.user.partition(":")
    assert int(user) != 0 and int(group) != 0  # numeric, so Kubernetes' runAsNonRoot can check it
    assert serve_image.env["PREDSERVE_HOST"] == "0.0.0.0" and "PREDSERVE_PORT" not in serve_image.env


def test_the_serve_image_answers_from_an_lmdb_store_mounted_in_and_stops_on_sigterm(run_serve_image, tmp_path: Path) -> None:
    store = tmp_path / "store"
    snapshot = publish_rows(str(store), "churn", ROWS)
    os.chown(store, 65532, 65532)  # the image's user opens it (LMDB's lock file), as fsGroup would arrange
    for name in os.listdir(store):
        os.chown(store / name, 65532, 65532)
    served = run_serve_image({"PREDSERVE_STORE": "/data/store", "PREDSERVE_NO_AUTH": "1"}, [(store, "/data/store")])
    wait_ready(served)
    answer = served.get("/v1/models/churn/predictions/7")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"model": "churn", "id": "7", "snapshot": snapshot, "prediction": ROWS["7"]}
    assert served.get("/v1/models/churn/predictions/nope").status_code == 404
    assert served.get("/healthz").status_code == 200
    # SIGTERM while a request is in flight (its body half sent): it is answered, then the server exits 0
    body = json.dumps({"ids": ["3", "4"]}).encode()
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    sock.sendall(b"POST /v1/models/churn/predictions:batchGet HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:5])
    time.sleep(0.2)
    os.kill(oci.entrypoint_pid(served.proc), signal.SIGTERM)
    time.sleep(0.3)
    sock.sendall(body[5:])
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert served.proc.wait(timeout=20) == 0, served.logged()
    assert "Traceback" not in served.logged()


def test_the_serve_image_checks_keys_from_a_read_only_file_mounted_in(run_serve_image, tmp_path: Path) -> None:
    """As Cloud Run mounts a Secret Manager secret: the service-account file read-only, no lock file beside it."""
    store, keys = tmp_path / "store", tmp_path / "secret"
    publish_rows(str(store), "churn", ROWS)
    for path in [store, *store.iterdir()]:
        os.chown(path, 65532, 65532)
    keys.mkdir()
    reader = make_keys(str(keys / "predserve-iam.json"))["reader"]
    for lock in keys.glob("*.lock"):
        lock.unlink()
    (keys / "predserve-iam.json").chmod(0o644)
    served = run_serve_image({"PREDSERVE_STORE": "/data/store", "PREDSERVE_IAM": "/secrets/iam/predserve-iam.json"},
                             [(store, "/data/store"), (keys, "/secrets/iam", "ro")])
    wait_ready(served)
    path = "/v1/models/churn/predictions/3"
    assert httpx.get(served.url + path, timeout=5).status_code == 401
    answer = httpx.get(served.url + path, headers={"Authorization": f"Bearer {reader}"}, timeout=5)
    assert answer.status_code == 200 and answer.json()["prediction"] == ROWS["3"]
    assert oci.terminate(served.proc) == 0, served.logged()


def test_the_serve_image_answers_from_bigtable_with_its_environment(run_serve_image, bigtable_emulator: str) -> None:
    url = bigtable_url()
    snapshot = publish_rows(url, "churn", ROWS)
    served = run_serve_image({"PREDSERVE_STORE": url, "PREDSERVE_NO_AUTH": "1", "PREDSERVE_MAX_BATCH": "2",
                              "BIGTABLE_EMULATOR_HOST": bigtable_emulator})
    wait_ready(served)
    assert served.get("/v1/models/churn/predictions/12").json()["prediction"] == ROWS["12"]
    too_many = httpx.post(served.url + "/v1/models/churn/predictions:batchGet", json={"ids": ["1", "2", "3"]}, timeout=5)
    assert too_many.status_code == 413  # PREDSERVE_MAX_BATCH reached the server
    assert served.get("/v1/models/churn").json()["snapshot"] == snapshot
    assert oci.terminate(served.proc) == 0, served.logged()


def test_without_a_store_the_serve_image_says_which_variable_to_set(serve_image: oci.Image) -> None:
    proc = oci.start(serve_image, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "PREDSERVE_STORE" in err.decode()


# ---- the export image --------------------------------------------------------------------
@pytest.fixture(scope="module")
def users_dataset(bigquery_emulator: BigQueryEmulator) -> str:
    name = f"img_{uuid.uuid4().hex[:8]}"
    client = bigquery_emulator.client()
    client.create_dataset(name)
    client.query(f"CREATE TABLE `{BQ_PROJECT}.{name}.scores` AS SELECT x AS user_id, x / 10 AS score, "
                 f"IF(MOD(x, 2) = 0, 'pro', 'free') AS plan FROM UNNEST(GENERATE_ARRAY(1, 50)) AS x").result()
    client.close()
    return name


def run_export_image(image: oci.Image, emulators: dict[str, str], args: list[str], entrypoint: list[str] | None = None) -> str:
    proc = oci.start(image, args, env=emulators, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, entrypoint=entrypoint)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode()
    return out.decode()


def test_the_export_image_exports_from_bigquery_into_bigtable_as_the_cli_and_as_the_flex_template(
        export_image: oci.Image, bigquery_emulator: BigQueryEmulator, bigtable_emulator: str, users_dataset: str,
        run_serve_image) -> None:
    emulators = {**bigquery_emulator.environment(), "BIGTABLE_EMULATOR_HOST": bigtable_emulator}
    store = bigtable_url()
    warehouse = f"bigquery://{BQ_PROJECT}/{users_dataset}"
    # 1. the image's entrypoint, as a Cloud Run job or a CronJob runs it
    out = run_export_image(export_image, emulators, ["-w", warehouse, "--model", "scores", "--key", "user_id",
                                                     "--table", "scores", "--store", store, "--json"])
    first = json.loads(out[out.index("{"):])
    assert first["published"] and first["rows"] == 50
    # 2. what Google's launcher runs: python $FLEX_TEMPLATE_PYTHON_PY_FILE --PARAMETER=VALUE ... pipeline options
    launcher = ["python", export_image.env["FLEX_TEMPLATE_PYTHON_PY_FILE"]]
    out = run_export_image(export_image, emulators, [
        f"--warehouse={warehouse}", "--model=scores", "--key=user_id", "--query=SELECT user_id, score, plan FROM scores",
        f"--store={store}", "--allow_drift=true", "--max_row_drop=0.9", "--runner=DirectRunner", "--job_name=predserve-test"],
        entrypoint=launcher)
    assert "--extra_package=/opt/predserve/dist/predserve-" in out  # the wheel the workers would install
    assert "published snapshot" in out, out
    with open_store(store, readonly=True) as opened:
        second = opened.current("scores").id
    assert second > first["snapshot"]
    served = run_serve_image({"PREDSERVE_STORE": store, "PREDSERVE_NO_AUTH": "1", "BIGTABLE_EMULATOR_HOST": bigtable_emulator})
    wait_ready(served)
    for x in (1, 2, 50):
        body = served.get(f"/v1/models/scores/predictions/{x}").json()
        assert body == {"model": "scores", "id": str(x), "snapshot": second,
                        "prediction": {"score": x / 10, "plan": "pro" if x % 2 == 0 else "free"}}
