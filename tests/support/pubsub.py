"""The gcloud SDK's Pub/Sub emulator (a Java program), which `predserve stream`'s tests read from."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import free_port, stop_process_group, wait_for_port

PUBSUB_PROJECT = "test-project"


class PubSubEmulator:
    """The emulator in its own process group; PUBSUB_EMULATOR_HOST must point at ``host``."""

    def __init__(self, host: str, proc: subprocess.Popen) -> None:
        self.host, self.proc = host, proc

    def topic(self, name: str) -> str:
        """Create a topic; returns its full name."""
        from google.cloud import pubsub_v1

        return pubsub_v1.PublisherClient().create_topic(name=f"projects/{PUBSUB_PROJECT}/topics/{name}").name

    def subscription(self, topic: str, name: str, ack_deadline: int = 10) -> str:
        """Create a subscription of ``topic``; returns its full name."""
        from google.cloud import pubsub_v1

        with pubsub_v1.SubscriberClient() as subscriber:
            return subscriber.create_subscription(name=f"projects/{PUBSUB_PROJECT}/subscriptions/{name}", topic=topic,
                                                  ack_deadline_seconds=ack_deadline).name


def start_pubsub_emulator(data: Path) -> PubSubEmulator:
    """`gcloud beta emulators pubsub start` on a free port, its data and log in ``data``; fails the test if it can't."""
    gcloud = shutil.which("gcloud")
    if not gcloud:
        pytest.fail("gcloud is missing: install the Google Cloud SDK with its pubsub-emulator component "
                    "(apt-get install google-cloud-cli google-cloud-cli-pubsub-emulator, or "
                    "`gcloud components install pubsub-emulator`); it needs Java (`make test` installs a JRE)")
    if not shutil.which("java"):
        pytest.fail("java is missing: the Pub/Sub emulator needs it (`make test` installs openjdk-17-jre-headless)")
    port = free_port()
    log_path = data / "emulator.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([gcloud, "beta", "emulators", "pubsub", "start", f"--host-port=127.0.0.1:{port}",
                                 f"--project={PUBSUB_PROJECT}", f"--data-dir={data}"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, proc, timeout=90)
    except RuntimeError as exc:
        stop_process_group(proc)
        pytest.fail(f"the Pub/Sub emulator did not start ({exc}): {log_path.read_text()[-2000:]}")
    return PubSubEmulator(f"127.0.0.1:{port}", proc)
