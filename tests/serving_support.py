"""Helpers shared by the serving and client tests: small real stores, keys, an in-process app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from predserve.iam import Registry
from predserve.serving import ServeConfig, ServingApp, ServingContext, create_app
from predserve.store import open_store

GET = "/v1/models/{model}/predictions/{id}"
BATCH = "/v1/models/{model}/predictions:batchGet"


def publish_rows(store_url: str, model: str, rows: dict[str, dict[str, Any]], **metadata: Any) -> int:
    """Write one snapshot of ``rows`` (id -> prediction columns) the way the export renders them, and publish it."""
    with open_store(store_url) as store:
        snapshot = store.create_snapshot(model).id
        writer = store.writer(model, snapshot)
        writer.write_columns(
            [entity_id.encode() for entity_id in rows],
            [orjson.dumps({"model": model, "id": entity_id, "snapshot": snapshot, "prediction": prediction})
             for entity_id, prediction in rows.items()],
        )
        writer.close()
        store.finish_snapshot(model, snapshot, len(rows))
        store.publish(model, snapshot, metadata)
    return snapshot


def make_keys(iam: str) -> dict[str, str]:
    """One key per kind of caller: a reader of every model, a reader of another model only, an admin."""
    registry = Registry(iam)
    return {
        "reader": registry.create("reader-all", "reader")[1],
        "other": registry.create("reader-other", "reader", ["other"])[1],
        "admin": registry.create("ops-admin", "admin")[1],
    }


@dataclass
class InProcess:
    """The serving app with an open context, called over httpx's ASGI transport (no socket)."""

    app: ServingApp
    context: ServingContext
    keys: dict[str, str] = field(default_factory=dict)

    def client(self, who: str | None = "reader") -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://predserve.test",
                                 headers=headers)


def in_process(store_url: str, iam: str | None, keys: dict[str, str] | None = None, **overrides: Any) -> InProcess:
    config = ServeConfig(store_url, iam_path=iam, **overrides)
    context = ServingContext.open(config)
    return InProcess(create_app(config, context), context, keys or {})
