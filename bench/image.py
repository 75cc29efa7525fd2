"""The images' sizes and the serve image's start to first answer (docs/benchmarks.md).

    make image && .venv/bin/python bench/image.py [--runs 5]

Sizes: compressed (the layers as stored in dist/*.oci.tar) and unpacked (bytes of the files of the
root filesystem tests/support/oci.py unpacks). Start to first answer: from starting the serve image's
entrypoint (unshare + chroot, as tests/test_images.py runs it) to the first 200 answer to a
prediction from an LMDB store mounted in; the baseline, measured alternately in the same run, is
`predserve serve` started from the host's virtualenv on the same store. Needs root (unshare).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.support import oci  # noqa: E402
from tests.support.processes import free_port  # noqa: E402
from tests.support.snapshots import publish_rows  # noqa: E402


def first_answer(proc: subprocess.Popen, port: int, started: float) -> float:
    url = f"http://127.0.0.1:{port}/v1/models/churn/predictions/7"
    while time.monotonic() - started < 60:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            time.sleep(0.005)
    raise RuntimeError("no answer within 60 s")


def in_image(image: oci.Image, store: Path) -> float:
    port = free_port()
    started = time.monotonic()
    proc = oci.start(image, env={"PORT": str(port), "PREDSERVE_STORE": "/data/store", "PREDSERVE_NO_AUTH": "1"},
                     mounts=[(store, "/data/store")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return first_answer(proc, port, started)
    finally:
        oci.terminate(proc)


def on_host(store: Path) -> float:
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "predserve"), "serve", "--store", str(store), "--no-auth",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return first_answer(proc, port, started)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="predserve-bench-image-"))
    try:
        sizes = {}
        images = {}
        for name in ("serve", "export"):
            archive = ROOT / f"dist/predserve-{name}.oci.tar"
            image = oci.unpack(archive, work / name)
            images[name] = image
            sizes[name] = (archive.stat().st_size, image.compressed_bytes, oci.directory_bytes(image.root))
            print(f"predserve-{name}: archive {sizes[name][0] / 1e6:,.1f} MB, layers compressed "
                  f"{sizes[name][1] / 1e6:,.1f} MB, unpacked {sizes[name][2] / 1e6:,.1f} MB")
        print(f"serve / export unpacked: {sizes['serve'][2] / sizes['export'][2]:.2f}x (target < 0.33x)")
        store = work / "store"
        publish_rows(str(store), "churn", {str(i): {"p": i / 100} for i in range(1, 1000)})
        for path in [store, *store.iterdir()]:
            os.chown(path, 65532, 65532)
        image_times, host_times = [], []
        for _ in range(args.runs):  # alternated, so both see the same machine
            image_times.append(in_image(images["serve"], store))
            host_times.append(on_host(store))
        image_median, host_median = statistics.median(image_times), statistics.median(host_times)
        print(f"start to first answer, serve image: median {image_median:.2f} s, max {max(image_times):.2f} s "
              f"({args.runs} runs)")
        print(f"start to first answer, predserve serve outside the image: median {host_median:.2f} s, "
              f"max {max(host_times):.2f} s")
        print(f"image / outside: {image_median / host_median:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
