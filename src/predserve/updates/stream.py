"""``predserve stream``: a streaming Beam job applying updates from a Pub/Sub subscription.

Each message's data is one update, as a line of ``predserve push`` (store/updates.py has the
rules); a message without ``"sequence"`` gets its Pub/Sub publish time in microseconds, so a
redelivered message carries the same sequence and changes nothing. A bad message (not JSON,
no id, a column the current snapshot lacks, over the size limit) goes to the dead-letter topic
with the reason in its ``predserve_error`` attribute, never dropped and never crashing the job.

Two shapes of the same job, chosen by the runner:

- **Locally (DirectRunner, the default)**: ``PeriodicImpulse`` ticks, and on each tick
  ``PullApplyAck`` pulls a batch from the subscription, applies it in one atomic step,
  publishes its bad messages to the dead-letter topic and only then acknowledges the batch.
  Beam's own ``ReadFromPubSub`` cannot be used here: on the DirectRunner it acknowledges
  every message as soon as it is pulled, so a killed job would lose what it had pulled but
  not yet applied. With ``PullApplyAck`` a killed job's unacknowledged messages are
  redelivered after the subscription's acknowledgement deadline, and their sequences make
  applying them again change nothing.
- **On Dataflow (any other runner)**: ``ReadFromPubSub`` → ``ValidateAndApply`` (buffers a
  bundle, applies it in ``finish_bundle``) → ``WriteToPubSub`` for the dead letters. Dataflow
  acknowledges a message only once the bundle that read it has committed, and retries a
  failed bundle, so nothing acknowledged is lost; redelivery is again harmless.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue
from apache_beam.transforms.window import GlobalWindow

from predserve.errors import StoreError
from predserve.store.updates import Update, parse_update
from predserve.updates.apply import BatchOutcome, apply_batch, current_columns, open_update_store

log = logging.getLogger(__name__)

SUBSCRIPTION = re.compile(r"^projects/([a-z][a-z0-9-]{4,28}[a-z0-9]|[A-Za-z0-9_.:-]+)/subscriptions/([A-Za-z][A-Za-z0-9._~+%-]{2,254})$")
TOPIC = re.compile(r"^projects/([a-z][a-z0-9-]{4,28}[a-z0-9]|[A-Za-z0-9_.:-]+)/topics/([A-Za-z][A-Za-z0-9._~+%-]{2,254})$")
DEFAULT_MAX_MESSAGES = 1000  # pulled (and applied atomically) per batch
DEFAULT_POLL_INTERVAL = 0.05  # seconds between pulls when the subscription was empty
# A dead letter's attribute values are at most 1024 bytes in Pub/Sub.
MAX_REASON = 1000
# The columns the current snapshot has are looked up again after this many seconds (a publish may change them).
COLUMNS_TTL = 5.0


def check_subscription(path: str) -> str:
    if not SUBSCRIPTION.match(path or ""):
        raise StoreError(f"bad subscription {path!r}: give its full name, projects/PROJECT/subscriptions/NAME")
    return path


def check_topic(path: str) -> str:
    if not TOPIC.match(path or ""):
        raise StoreError(f"bad dead-letter topic {path!r}: give its full name, projects/PROJECT/topics/NAME")
    return path


def parse_message(data: bytes, publish_time: Any) -> Update | str:
    """The update one message carries, or why it is bad (its publish time is the default sequence)."""
    default = int(publish_time.timestamp() * 1_000_000) if publish_time is not None else None
    try:
        return parse_update(data, default_sequence=default)
    except StoreError as exc:
        return str(exc)


def dead_letter_attributes(model: str, message_id: str, reason: str, attributes: dict[str, str] | None) -> dict[str, str]:
    """What a dead letter carries beside the original data: the original attributes, and why."""
    return {**(attributes or {}), "predserve_error": reason[:MAX_REASON], "predserve_model": model,
            "predserve_message_id": message_id or ""}


@dataclass
class BatchCounts:
    """One applied batch, as the job logs it."""

    messages: int
    applied: int
    ignored: int
    dead_lettered: int


class _Columns:
    """The current snapshot's columns, looked up at most every COLUMNS_TTL seconds."""

    def __init__(self) -> None:
        self._columns: list[str] | None = None
        self._at = 0.0

    def get(self, store: Any, model: str) -> list[str] | None:
        if time.monotonic() - self._at > COLUMNS_TTL:
            self._columns, self._at = current_columns(store, model), time.monotonic()
        return self._columns


def apply_messages(store: Any, model: str, columns: list[str] | None,
                   messages: Sequence[tuple[str, bytes, Any]]) -> BatchOutcome[str]:
    """Apply (message id, data, publish time) messages, all the good ones in one atomic step."""
    items = [(message_id, parse_message(data, publish_time)) for message_id, data, publish_time in messages]
    return apply_batch(store, model, items, skip_bad=True, columns=columns)


class PullApplyAck(beam.DoFn):
    """On each tick: pull a batch, apply it, dead-letter its bad messages, then acknowledge it.

    Nothing is acknowledged before it is applied (or published to the dead-letter topic): if
    the store or the topic fails, the batch is left unacknowledged and Pub/Sub redelivers it.
    """

    def __init__(self, subscription: str, store_url: str, model: str, dead_letter_topic: str,
                 max_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        self.subscription, self.store_url, self.model = subscription, store_url, model
        self.dead_letter_topic, self.max_messages = dead_letter_topic, max_messages

    def setup(self) -> None:
        from google.cloud import pubsub_v1

        self._subscriber = pubsub_v1.SubscriberClient()
        self._publisher = pubsub_v1.PublisherClient()
        self._store = open_update_store(self.store_url, self.model)
        self._columns = _Columns()

    def teardown(self) -> None:
        self._store.close()
        self._subscriber.close()

    def process(self, tick: Any) -> Iterator[BatchCounts]:
        # Drain what is waiting, batch by batch, then let the next tick come.
        while True:
            counts = self.pull_once()
            if counts is None:
                return
            yield counts
            if counts.messages < self.max_messages:
                return

    def pull_once(self) -> BatchCounts | None:
        from google.api_core import exceptions as gexc

        try:
            with warnings.catch_warnings():
                # Discouraged for throughput, but without it an empty pull waits seconds (the
                # emulator holds it ~4 s), which would be the visibility latency of the next update.
                warnings.filterwarnings("ignore", "The return_immediately flag is deprecated", DeprecationWarning)
                response = self._subscriber.pull(subscription=self.subscription, max_messages=self.max_messages,
                                                 return_immediately=True, timeout=30)
        except (gexc.DeadlineExceeded, gexc.ServiceUnavailable) as exc:
            log.warning("pulling from %s failed (%s); trying again on the next tick", self.subscription, exc)
            return None
        received = list(response.received_messages)
        if not received:
            return None
        by_id = {r.message.message_id: r.message for r in received}
        try:
            outcome = apply_messages(self._store, self.model, self._columns.get(self._store, self.model),
                                     [(r.message.message_id, r.message.data, r.message.publish_time) for r in received])
            self._dead_letter([(message_id, by_id[message_id].data, dict(by_id[message_id].attributes), reason)
                               for message_id, reason in outcome.bad])
        except Exception as exc:  # noqa: BLE001 - unacknowledged, the batch comes back; the job keeps running
            log.error("applying %d updates failed, leaving them unacknowledged for redelivery: %s", len(received), exc)
            return None
        self._subscriber.acknowledge(subscription=self.subscription, ack_ids=[r.ack_id for r in received])
        result = outcome.result
        return BatchCounts(len(received), result.applied if result else 0, result.ignored if result else 0, len(outcome.bad))

    def _dead_letter(self, letters: Iterable[tuple[str, bytes, dict[str, str], str]]) -> None:
        futures = [self._publisher.publish(self.dead_letter_topic, data,
                                           **dead_letter_attributes(self.model, message_id, reason, attributes))
                   for message_id, data, attributes, reason in letters]
        for future in futures:
            future.result(timeout=60)


class ValidateAndApply(beam.DoFn):
    """Buffer a bundle of ``PubsubMessage``s and apply it in ``finish_bundle`` (the Dataflow shape).

    Bad messages come out of the ``dead_letter`` output as PubsubMessages for WriteToPubSub.
    """

    DEAD_LETTER = "dead_letter"

    def __init__(self, store_url: str, model: str, max_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        self.store_url, self.model, self.max_messages = store_url, model, max_messages

    def setup(self) -> None:
        self._store = open_update_store(self.store_url, self.model)
        self._columns = _Columns()

    def teardown(self) -> None:
        self._store.close()

    def start_bundle(self) -> None:
        self._buffer: list[Any] = []

    def process(self, message: Any) -> Iterator[Any]:
        self._buffer.append(message)
        if len(self._buffer) >= self.max_messages:
            yield from (beam.pvalue.TaggedOutput(self.DEAD_LETTER, letter) for letter in self._flush())

    def finish_bundle(self) -> Iterator[Any]:
        for letter in self._flush():
            yield beam.pvalue.TaggedOutput(self.DEAD_LETTER, WindowedValue(letter, 0, [GlobalWindow()]))

    def _flush(self) -> list[Any]:
        from apache_beam.io.gcp.pubsub import PubsubMessage

        messages, self._buffer = self._buffer, []
        if not messages:
            return []
        by_id = {m.message_id: m for m in messages}
        outcome = apply_messages(self._store, self.model, self._columns.get(self._store, self.model),
                                 [(m.message_id, m.data, m.publish_time) for m in messages])
        return [PubsubMessage(by_id[i].data, dead_letter_attributes(self.model, i, reason, by_id[i].attributes))
                for i, reason in outcome.bad]


class LogBatches(beam.DoFn):
    def process(self, counts: BatchCounts) -> Iterator[BatchCounts]:
        log.info("applied %d of %d messages (%d not newer than their id's last update, %d dead-lettered)",
                 counts.applied, counts.messages, counts.ignored, counts.dead_lettered)
        yield counts


def is_local(beam_args: Sequence[str]) -> bool:
    """True unless the Beam options name a runner other than the DirectRunner."""
    runner = None
    for index, arg in enumerate(beam_args):
        if arg.startswith("--runner="):
            runner = arg.split("=", 1)[1]
        elif arg == "--runner" and index + 1 < len(beam_args):
            runner = beam_args[index + 1]
    return runner is None or runner.lower().removesuffix("runner") in ("direct", "bundlebaseddirect")


def build(pipeline: beam.Pipeline, subscription: str, store_url: str, model: str, dead_letter_topic: str,
          local: bool, max_messages: int = DEFAULT_MAX_MESSAGES, poll_interval: float = DEFAULT_POLL_INTERVAL) -> None:
    """Add the stream's transforms to ``pipeline`` (``local``: the pull-apply-ack shape)."""
    if local:
        from apache_beam.transforms.periodicsequence import PeriodicImpulse

        (pipeline
         | "Tick" >> PeriodicImpulse(fire_interval=poll_interval)
         | "PullApplyAck" >> beam.ParDo(PullApplyAck(subscription, store_url, model, dead_letter_topic, max_messages))
         | "Log" >> beam.ParDo(LogBatches()))
        return
    from apache_beam.io.gcp.pubsub import ReadFromPubSub, WriteToPubSub

    results = (pipeline
               | "Read" >> ReadFromPubSub(subscription=subscription, with_attributes=True)
               | "ValidateAndApply" >> beam.ParDo(ValidateAndApply(store_url, model, max_messages))
               .with_outputs(ValidateAndApply.DEAD_LETTER))
    results[ValidateAndApply.DEAD_LETTER] | "DeadLetter" >> WriteToPubSub(dead_letter_topic, with_attributes=True)


def run(subscription: str, store_url: str, model: str, dead_letter_topic: str, beam_args: Sequence[str] = (),
        max_messages: int = DEFAULT_MAX_MESSAGES, poll_interval: float = DEFAULT_POLL_INTERVAL,
        local: bool | None = None) -> None:
    """Run the stream until it is stopped. Checks the store and model before starting the job."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    check_subscription(subscription)
    check_topic(dead_letter_topic)
    if not 1 <= max_messages <= 1000:
        raise StoreError(f"--max-messages must be from 1 to 1000 (Pub/Sub's most per pull), not {max_messages}")
    open_update_store(store_url, model).close()  # fail now, not inside the job, when there is nothing to update
    options = PipelineOptions(list(beam_args))
    options.view_as(StandardOptions).streaming = True
    with beam.Pipeline(options=options) as pipeline:
        build(pipeline, subscription, store_url, model, dead_letter_topic,
              is_local(beam_args) if local is None else local, max_messages, poll_interval)
