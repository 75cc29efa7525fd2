"""`predserve stream` against the real Pub/Sub emulator: streamed updates served over HTTP on
LMDB and Bigtable, bad messages dead-lettered, a killed job losing nothing, and an export
running while updates stream and are pushed in (nothing lost across its publish)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from predserve.store import open_store
from predserve.store.updates import MAX_UPDATE_BYTES
from tests.support.snapshots import publish_scored as export

MODEL = "m"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Stream:
    """A `predserve stream` child process and its topics (the caller's fixture stops it)."""

    def __init__(self, emulator, store: str, tmp_path: Path, ack_deadline: int = 10, local: bool = True) -> None:
        self.emulator, self.store, self.tmp_path, self.local = emulator, store, tmp_path, local
        self.topic = emulator.topic(unique("updates"))
        self.subscription = emulator.subscription(self.topic, unique("updates"), ack_deadline)
        self.dead_letter_topic = emulator.topic(unique("dead"))
        self.dead_letters = emulator.subscription(self.dead_letter_topic, unique("dead"))
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        log = open(self.tmp_path / f"stream-{self.runs}.log", "wb")
        if self.local:
            cmd = [sys.executable, "-m", "predserve.cli", "stream", "--subscription", self.subscription, "--store",
                   self.store, "--model", MODEL, "--dead-letter-topic", self.dead_letter_topic, "--max-messages", "100"]
        else:  # the Dataflow shape (ReadFromPubSub -> ValidateAndApply -> WriteToPubSub), on the DirectRunner
            cmd = [sys.executable, "-c", "import sys; from predserve.updates.stream import run; "
                   "run(*sys.argv[1:5], local=False)", self.subscription, self.store, MODEL, self.dead_letter_topic]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log(self) -> str:
        return "".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.tmp_path.glob("stream-*.log")))

    def publish(self, messages: list[bytes]) -> None:
        from google.cloud import pubsub_v1

        publisher = pubsub_v1.PublisherClient()
        for future in [publisher.publish(self.topic, m) for m in messages]:
            future.result(timeout=30)

    def pull_dead_letters(self, expected: int, timeout: float = 30) -> list:
        from google.cloud import pubsub_v1

        got: list = []
        deadline = time.monotonic() + timeout
        with pubsub_v1.SubscriberClient() as subscriber:
            while len(got) < expected and time.monotonic() < deadline:
                response = subscriber.pull(subscription=self.dead_letters, max_messages=100, return_immediately=True)
                if response.received_messages:
                    got.extend(r.message for r in response.received_messages)
                    subscriber.acknowledge(subscription=self.dead_letters, ack_ids=[r.ack_id for r in response.received_messages])
                else:
                    time.sleep(0.2)
        return got

    def backlog(self) -> int:
        """Messages still undelivered or unacknowledged (pulled here and released again)."""
        from google.cloud import pubsub_v1

        with pubsub_v1.SubscriberClient() as subscriber:
            response = subscriber.pull(subscription=self.subscription, max_messages=1000, return_immediately=True)
            ids = [r.ack_id for r in response.received_messages]
            if ids:
                subscriber.modify_ack_deadline(subscription=self.subscription, ack_ids=ids, ack_deadline_seconds=0)
            return len(ids)


@pytest.fixture
def stream(pubsub_emulator, tmp_path: Path) -> Iterator[Callable[..., Stream]]:
    started: list[Stream] = []

    def make(store: str, **kwargs) -> Stream:
        s = Stream(pubsub_emulator, store, tmp_path, **kwargs)
        started.append(s)
        return s

    yield make
    for s in started:
        s.kill()


def update(entity_id: str, score: float, sequence: int | None = None, **extra) -> bytes:
    line = {"id": entity_id, "prediction": {"score": score, "label": "streamed"}, **extra}
    if sequence is not None:
        line["sequence"] = sequence
    return json.dumps(line).encode()


def wait_until(condition: Callable[[], bool], what: str, stream: Stream, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if stream.proc is not None and stream.proc.poll() is not None:
            pytest.fail(f"predserve stream exited ({stream.proc.returncode}) while waiting for {what}:\n{stream.log()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{stream.log()}")
        time.sleep(0.1)


BAD_MESSAGES = {
    b"not json": "not JSON",
    json.dumps({"prediction": {"score": 1.0}}).encode(): "no id",
    json.dumps({"id": "3", "prediction": {"colour": "red"}}).encode(): "colour",
    json.dumps({"id": "3", "prediction": {"label": "x" * MAX_UPDATE_BYTES}}).encode(): "over the limit",
}


@pytest.mark.parametrize("local", [True, False], ids=["pull-apply-ack", "dataflow-shape"])
def test_streamed_updates_are_served_over_http_and_bad_messages_dead_lettered(
        store_url: str, local: bool, stream, api_server) -> None:
    with open_store(store_url) as store:
        snap = export(store, MODEL, "export")
    s = stream(store_url, local=local)
    s.start()
    server = api_server(store_url, None, "--no-auth")
    s.publish([update("7", 0.9, 5), update("new", 0.25), json.dumps({"id": "8", "delete": True}).encode(),
               *BAD_MESSAGES])
    with server.client() as http:
        wait_until(lambda: http.get("/v1/models/m/predictions/8").status_code == 404
                   and http.get("/v1/models/m/predictions/new").status_code == 200, "the updates to be served", s)
        assert http.get("/v1/models/m/predictions/7").json() == {
            "model": MODEL, "id": "7", "snapshot": snap, "prediction": {"score": 0.9, "label": "streamed"}}
        assert http.get("/v1/models/m/predictions/new").json()["prediction"]["score"] == 0.25
        letters = s.pull_dead_letters(len(BAD_MESSAGES))
        assert sorted(m.data for m in letters) == sorted(BAD_MESSAGES)
        for letter in letters:
            assert BAD_MESSAGES[letter.data] in letter.attributes["predserve_error"]
            assert letter.attributes["predserve_model"] == MODEL and letter.attributes["predserve_message_id"]
        # an older update after a newer one, and a redelivered one, change nothing
        s.publish([update("7", 0.1, 4), update("7", 0.9, 5), update("9", 0.5, 1)])
        wait_until(lambda: http.get("/v1/models/m/predictions/9").json()["prediction"]["score"] == 0.5, "id 9", s)
        assert http.get("/v1/models/m/predictions/7").json()["prediction"]["score"] == 0.9
    assert s.backlog() == 0


def test_a_killed_stream_loses_no_acknowledged_update_and_applies_none_twice(tmp_path: Path, stream) -> None:
    store_url = str(tmp_path / "store.lmdb")
    with open_store(store_url) as store:
        export(store, MODEL, "export")
    s = stream(store_url, ack_deadline=10)
    ids = [str(i) for i in range(1, 51)]
    expected: dict[str, float] = {}
    messages = []
    for sequence in range(1, 3001):
        entity_id = ids[sequence * 7 % len(ids)]
        expected[entity_id] = float(sequence)
        messages.append(update(entity_id, float(sequence), sequence))
    s.publish(messages)
    s.start()

    def applied() -> int:
        with open_store(store_url, readonly=True) as store:
            return store.update_position(MODEL)

    wait_until(lambda: applied() > 0, "the first batch to be applied", s)
    s.kill()  # SIGKILL mid-stream: whatever was pulled and not yet acknowledged comes back
    killed_at = applied()
    s.start()

    def served() -> dict[str, float]:
        with open_store(store_url, readonly=True) as store:
            snap = store.current(MODEL).id
            return {i: json.loads(store.get(MODEL, snap, i.encode()))["prediction"]["score"] for i in ids}

    wait_until(lambda: served() == expected, "every update to be served after the restart", s, timeout=120)
    with open_store(store_url, readonly=True) as store:
        entries = store.log_entries(MODEL, 0)
    # Each (id, sequence) was applied at most once, however often it was delivered, and the final
    # bodies are the newest update of each id.
    assert len({(e.id, e.sequence) for e in entries}) == len(entries) <= len(messages)
    assert killed_at < len(entries)  # it was killed with work left, which the restarted job did
    assert s.backlog() == 0
    s.kill()


def test_nothing_is_lost_across_a_publish_while_updates_stream_and_are_pushed(
        trained_warehouse: Path, tmp_path: Path, stream) -> None:
    """An export runs while updates come in by Pub/Sub and by `predserve push`: after its publish every
    id's body is the newest update's (or the export's where there was none), none replaced by export data."""
    store = str(tmp_path / "store.lmdb")
    query = "SELECT user_id, predicted_churned FROM ML.PREDICT(MODEL churn, TABLE users)"
    base = [sys.executable, "-m", "predserve.cli", "export", "-w", str(trained_warehouse), "--model", MODEL,
            "--key", "user_id", "--query", query, "--store", store, "--allow-drift"]
    subprocess.run(base, check=True, capture_output=True)
    with open_store(store, readonly=True) as st:
        first = st.current(MODEL).id
        exported = {i.decode(): json.loads(v)["prediction"] for i, v in st.items(MODEL, first)}
    ids = sorted(exported, key=int)
    streamed_ids, pushed_ids = ids[:400], ids[400:800]
    s = stream(store)
    s.start()
    expected: dict[str, dict | None] = dict(exported)
    sequence = iter(range(1, 10**9))
    stop = threading.Event()
    errors: list[str] = []

    def stream_updates() -> None:
        n = 0
        while not stop.is_set():
            batch = []
            for _ in range(20):
                entity_id, seq = streamed_ids[n % len(streamed_ids)], next(sequence)
                n += 1
                if n % 11 == 0:
                    expected[entity_id] = None
                    batch.append(json.dumps({"id": entity_id, "delete": True, "sequence": seq}).encode())
                else:
                    expected[entity_id] = {"predicted_churned": seq}
                    batch.append(json.dumps({"id": entity_id, "prediction": {"predicted_churned": seq}, "sequence": seq}).encode())
            s.publish(batch)
            time.sleep(0.05)

    def push_updates() -> None:
        n = 0
        while not stop.is_set():
            lines = []
            for _ in range(50):
                entity_id, seq = pushed_ids[n % len(pushed_ids)], next(sequence)
                n += 1
                expected[entity_id] = {"predicted_churned": -seq}
                lines.append(json.dumps({"id": entity_id, "prediction": {"predicted_churned": -seq}, "sequence": seq}))
            done = subprocess.run([sys.executable, "-m", "predserve.cli", "push", "--store", store, "--model", MODEL, "-"],
                                  input="\n".join(lines).encode(), capture_output=True)
            if done.returncode != 0:
                errors.append(done.stderr.decode())

    workers = [threading.Thread(target=stream_updates), threading.Thread(target=push_updates)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(2)
        exported_again = subprocess.run(base, capture_output=True)  # runs for seconds while updates come in
        time.sleep(1)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert exported_again.returncode == 0, exported_again.stderr.decode()
    assert not errors, errors

    def served() -> dict[str, dict | None]:
        with open_store(store, readonly=True) as st:
            snap = st.current(MODEL).id
            return {i: (json.loads(v)["prediction"] if (v := st.get(MODEL, snap, i.encode())) else None) for i in ids}

    wait_until(lambda: served() == expected, "every update to be served after the publish", s, timeout=90)
    with open_store(store, readonly=True) as st:
        info = st.current(MODEL)
        assert info.id == first + 1
        events = st.state(MODEL).events
    assert events[-1]["event"] == "published" and events[-1]["replayed"] > 0
    assert sum(1 for v in expected.values() if v is None) > 0


def test_a_message_without_a_sequence_redelivered_after_a_newer_update_changes_nothing(tmp_path: Path, pubsub_emulator) -> None:
    """Such a message's sequence is its publish time, which Pub/Sub keeps across deliveries: the
    stream applies it once, and its redelivery, after a newer update of the same id, is ignored."""
    from google.cloud import pubsub_v1

    from predserve.store.updates import parse_update
    from predserve.updates.stream import apply_messages

    store_url = str(tmp_path / "store.lmdb")
    topic = pubsub_emulator.topic(unique("updates"))
    subscription = pubsub_emulator.subscription(topic, unique("updates"))
    pubsub_v1.PublisherClient().publish(topic, update("7", 0.9)).result(timeout=30)
    results = []
    with open_store(store_url) as store, pubsub_v1.SubscriberClient() as subscriber:
        export(store, MODEL, "export")
        for delivery in range(2):
            received: list = []
            deadline = time.monotonic() + 30
            while not received and time.monotonic() < deadline:
                received = list(subscriber.pull(subscription=subscription, max_messages=10, timeout=30).received_messages)
            assert [r.message.data for r in received] == [update("7", 0.9)], f"delivery {delivery + 1}"
            message = received[0].message
            results.append(apply_messages(store, MODEL, None, [(message.message_id, message.data, message.publish_time)]).result)
            if delivery == 0:
                # a newer update of the same id (a push: the writer's clock, after the publish time)
                store.apply_updates(MODEL, [parse_update(json.dumps({"id": "7", "prediction": {"score": 0.5, "label": "pushed"}}))])
                # not acknowledged in time: Pub/Sub delivers it again
                subscriber.modify_ack_deadline(subscription=subscription, ack_ids=[received[0].ack_id], ack_deadline_seconds=0)
            else:
                subscriber.acknowledge(subscription=subscription, ack_ids=[received[0].ack_id])
        assert [(r.applied, r.ignored) for r in results] == [(1, 0), (0, 1)]
        assert json.loads(store.get(MODEL, store.current(MODEL).id, b"7"))["prediction"] == {"score": 0.5, "label": "pushed"}


def test_a_missing_gcloud_fails_saying_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.pubsub import start_pubsub_emulator

    monkeypatch.setenv("PATH", str(tmp_path))  # no gcloud there
    with pytest.raises(pytest.fail.Exception, match="install the Google Cloud SDK with its pubsub-emulator component"):
        start_pubsub_emulator(tmp_path)
