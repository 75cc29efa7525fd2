"""Helpers shared by the serving and client tests: keys for each kind of caller, the app in process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from predserve.iam import Registry
from predserve.serving import ServeConfig, ServingApp, ServingContext, create_app

GET = "/v1/models/{model}/predictions/{id}"
BATCH = "/v1/models/{model}/predictions:batchGet"


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
