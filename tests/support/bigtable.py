"""Google's Bigtable emulator: started per session by conftest's fixture, or privately by a test."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.processes import ROOT, free_port, stop_process_group, wait_for_port

EMULATOR_PROJECT, EMULATOR_INSTANCE = "test-project", "test-instance"


def _gcloud_emulator() -> str | None:
    """The emulator binary of an installed gcloud SDK (what `gcloud beta emulators bigtable start` runs)."""
    gcloud = shutil.which("gcloud")
    if not gcloud:
        return None
    binary = Path(os.path.realpath(gcloud)).parent.parent / "platform/bigtable-emulator/cbtemulator"
    return str(binary) if binary.exists() else None


def _emulator_command(port: int) -> list[str]:
    """gcloud's emulator when the user has it, else the one `make test` builds from Debian's Go packages."""
    gcloud = _gcloud_emulator()
    if gcloud:
        return [gcloud, "--host=127.0.0.1", f"--port={port}"]
    built = os.environ.get("PREDSERVE_BIGTABLE_EMULATOR") or str(ROOT / ".cache/bin/bigtable-emulator")
    if Path(built).exists():
        return [built, "-host", "127.0.0.1", "-port", str(port)]
    pytest.fail("the Bigtable emulator is missing: run `make test` (it builds .cache/bin/bigtable-emulator) "
                "or install the gcloud SDK's bigtable emulator component")


def start_emulator(port: int) -> subprocess.Popen:
    """Start the emulator in its own process group (gcloud runs it as a grandchild)."""
    proc = subprocess.Popen(_emulator_command(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_for_port(port, proc)
    return proc


@contextmanager
def private_emulator(command: list[str] | None = None) -> Iterator[dict]:
    """A test's own emulator (which it may stop and restart), set as BIGTABLE_EMULATOR_HOST meanwhile.

    Yields {"port", "proc"}; a test that restarts the emulator stores the new process in
    "proc", and that is the one stopped at the end. ``command`` (a binary and its flags, the
    port appended last) replaces the default emulator.
    """
    port = free_port()
    previous = os.environ.get("BIGTABLE_EMULATOR_HOST")
    if command:
        proc = subprocess.Popen(command + [str(port)], stdout=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(port, proc)
    else:
        proc = start_emulator(port)
    handle = {"port": port, "proc": proc}
    try:
        os.environ["BIGTABLE_EMULATOR_HOST"] = f"127.0.0.1:{port}"
        yield handle
    finally:
        stop_process_group(handle["proc"])
        if previous is None:
            os.environ.pop("BIGTABLE_EMULATOR_HOST", None)
        else:
            os.environ["BIGTABLE_EMULATOR_HOST"] = previous


def bigtable_url() -> str:
    return f"bigtable://{EMULATOR_PROJECT}/{EMULATOR_INSTANCE}/t{uuid.uuid4().hex[:12]}"
