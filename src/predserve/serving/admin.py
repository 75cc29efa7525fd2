"""Admin routes (FastAPI): models and their snapshots, service accounts.

Every route here needs the admin role. A new admin feature is one more ``APIRouter``
included by ``create_admin_app``; its handlers take the ``Context`` and ``Admin`` dependencies.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from predserve.iam import IamError, ServiceAccount
from predserve.serving.auth import authorize
from predserve.serving.context import ServingContext
from predserve.serving.errors import ApiError, ErrorBody
from predserve.serving.pointers import CurrentSnapshot
from predserve.serving.schemas import AccountList, ModelDetail, ModelList
from predserve.store.reports import snapshot_report


def serving_context(request: Request) -> ServingContext:
    """The worker's serving context (set on the FastAPI app when the worker starts)."""
    return request.app.state.context  # type: ignore[no-any-return]


def require_admin(request: Request, context: Annotated[ServingContext, Depends(serving_context)]) -> ServiceAccount | None:
    return authorize(context.keys, request.headers.get("authorization"), admin=True)


Context = Annotated[ServingContext, Depends(serving_context)]
Admin = Annotated[ServiceAccount | None, Depends(require_admin)]

ERROR_TEXT = {400: "bad input", 401: "no or invalid key", 403: "the key lacks the role", 404: "not found",
              405: "method not allowed", 408: "the request body did not arrive in time", 413: "request too large",
              503: "store unavailable or snapshot too old"}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error statuses."""
    return {c: {"model": ErrorBody, "description": ERROR_TEXT[c]} for c in codes}


class NewAccount(BaseModel):
    name: str = Field(description="3-63 characters: lowercase letters, digits and '-'")
    role: str = Field("reader", description="reader or admin")
    models: list[str] | None = Field(None, description="for readers: the models it may read (default: all)")


async def summary(context: ServingContext, snapshot: CurrentSnapshot) -> dict[str, Any]:
    info = snapshot.info
    events = snapshot.state.events
    # One read of the update log's head (a network call on Bigtable): off the event loop.
    updates = await asyncio.to_thread(context.store.updates_since_publish, snapshot.model, snapshot.state)
    return {
        "model": snapshot.model, "snapshot": info.id, "created_at": info.created_at, "published_at": info.published_at,
        "rows": info.rows, "age_seconds": round(snapshot.age(), 3), "max_age": snapshot.max_age, "stale": snapshot.is_stale(),
        "last_event": events[-1] if events else None, "updates_since_publish": updates,
    }


models = APIRouter(tags=["models (admin)"])


# Optional fields absent from the stored JSON (a categorical column has no histogram) stay absent.
@models.get("/v1/models", summary="List published models (admin)", responses=errors(401, 403, 503),
            response_model=ModelList, response_model_exclude_unset=True)
async def list_models(context: Context, _: Admin) -> dict[str, Any]:
    return {"models": [await summary(context, snapshot) for snapshot in await context.published()]}


@models.get("/v1/models/{model}", summary="Model detail: current snapshot, age, history with profiles and drift, "
            "timeline (admin)", responses=errors(401, 403, 404, 503), response_model=ModelDetail,
            response_model_exclude_unset=True)
async def model_detail(model: str, context: Context, _: Admin) -> dict[str, Any]:
    snapshot = await context.pointers.get(model)
    if snapshot is None:
        raise ApiError(404, f"model {model!r} has no published snapshot in this store")
    detail = await summary(context, snapshot)
    detail["schema"] = snapshot.info.metadata.get("schema")
    detail["history"] = [
        {"snapshot": s.id, "state": s.state, "rows": s.rows, "created_at": s.created_at, "published_at": s.published_at,
         "current": s.id == snapshot.id, **dict(snapshot_report(s.metadata))}
        for s in sorted(snapshot.state.snapshots.values(), key=lambda s: s.id)
    ]
    detail["events"] = snapshot.state.events[::-1]
    return detail


accounts = APIRouter(tags=["service accounts (admin)"])


@accounts.get("/v1/serviceAccounts", summary="List service accounts (admin)", responses=errors(401, 403),
              response_model=AccountList)
async def list_accounts(context: Context, _: Admin) -> dict[str, Any]:
    return {"service_accounts": [a.public() for a in context.registry.accounts()]}


@accounts.post("/v1/serviceAccounts", summary="Create a service account; the key is returned once (admin)",
               responses=errors(400, 401, 403, 408, 413))
async def create_account(account: NewAccount, context: Context, _: Admin) -> dict[str, Any]:
    try:
        created, key = context.registry.create(account.name, account.role, account.models)
    except IamError as exc:
        raise ApiError(400, str(exc)) from None
    return {**created.public(), "key": key}


@accounts.delete("/v1/serviceAccounts/{name}", summary="Delete a service account (admin)", responses=errors(401, 403, 404))
async def delete_account(name: str, context: Context, _: Admin) -> dict[str, Any]:
    try:
        context.registry.delete(name)
    except IamError as exc:
        raise ApiError(404, str(exc)) from None
    return {"deleted": name}
