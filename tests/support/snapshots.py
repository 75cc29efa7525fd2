"""Publishing a snapshot straight through the store (quicker than an export), written once for every test."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import orjson

from predserve.store import SnapshotStore, open_store


def publish(store: SnapshotStore, model: str, items: Callable[[int], Iterable[tuple[bytes, bytes]]], rows: int, *,
            metadata: Mapping[str, Any] | None = None, log_from: int | None = None, go_live: bool = True) -> int:
    """Create a snapshot of ``model`` holding ``items(snapshot id)`` (id, body pairs: a body names its
    snapshot), finish it with ``rows`` and publish it.

    ``log_from``: the update log position the snapshot's export started at (issue 20's rewind);
    ``go_live=False`` leaves it finished but unpublished. Returns the snapshot's id.
    """
    snapshot = store.create_snapshot(model, log_from=log_from).id
    writer = store.writer(model, snapshot)
    writer.write(items(snapshot))
    writer.close()
    store.finish_snapshot(model, snapshot, rows)
    if go_live:
        store.publish(model, snapshot, dict(metadata) if metadata is not None else None)
    return snapshot


def api_body(model: str, snapshot: int, entity_id: str, prediction: Mapping[str, Any]) -> bytes:
    """A stored body as the export renders it (what the API serves)."""
    return orjson.dumps({"model": model, "id": entity_id, "snapshot": snapshot, "prediction": prediction})


def publish_rows(store_url: str, model: str, rows: Mapping[str, Mapping[str, Any]], **metadata: Any) -> int:
    """Publish ``rows`` (id -> prediction columns) rendered as the export renders them, in a store opened here."""
    with open_store(store_url) as store:
        snapshot = store.create_snapshot(model).id
        writer = store.writer(model, snapshot)
        writer.write_columns([entity_id.encode() for entity_id in rows],
                             [api_body(model, snapshot, entity_id, prediction) for entity_id, prediction in rows.items()])
        writer.close()
        store.finish_snapshot(model, snapshot, len(rows))
        store.publish(model, snapshot, metadata)
    return snapshot



TAGGED_IDS = [str(i).encode() for i in range(1, 201)]


def publish_tagged(store: SnapshotStore, model: str, tag: str, ids: list[bytes] = TAGGED_IDS) -> int:
    """Publish a snapshot whose every value is ``tag:id`` (raw bytes: for tests of the store alone)."""
    return publish(store, model, lambda _snapshot: ((i, f"{tag}:{i.decode()}".encode()) for i in ids), len(ids))


SCORED_IDS = [str(i).encode() for i in range(1, 51)]
SCORED_SCHEMA = {"schema": [["score", "DOUBLE"], ["label", "VARCHAR"]]}


def publish_scored(store: SnapshotStore, model: str, tag: str, ids: list[bytes] = SCORED_IDS,
                   log_from: int | None = None, go_live: bool = True) -> int:
    """A snapshot shaped like the export's, whose bodies predict {"score": 0.0, "label": tag}
    (for the updates' tests: an update then shows as a body with another label)."""
    return publish(store, model, lambda snap: ((i, api_body(model, snap, i.decode(), {"score": 0.0, "label": tag})) for i in ids),
                   len(ids), metadata=SCORED_SCHEMA if go_live else None, log_from=log_from, go_live=go_live)
