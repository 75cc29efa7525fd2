"""Bearer-key authentication and role checks, shared by the hot path and the admin routes."""

from __future__ import annotations

from predserve.iam import Registry, ServiceAccount
from predserve.serving.errors import UNAUTHENTICATED, ApiError

MISSING_KEY = "missing credentials: send `Authorization: Bearer KEY` (create a key with `predserve iam create`)"


def authorize(registry: Registry | None, authorization: str | None, model: str | None = None,
              admin: bool = False) -> ServiceAccount | None:
    """The account behind an ``Authorization`` header value, if it may do what is asked.

    ``model``: the account must be allowed to read that model's predictions; ``admin``: it
    must hold the admin role. Raises 401 without a valid key and 403 without the role.
    ``registry`` None means authentication is off: everyone may do everything.
    """
    if registry is None:
        return None
    registry.reload_if_changed()
    if model is not None and not admin:  # a prediction read: the same header was allowed this model before
        known = registry.readers.get((authorization, model))  # type: ignore[arg-type]
        if known is not None:
            return known
    if not authorization or not authorization.startswith("Bearer "):
        raise ApiError(401, MISSING_KEY, UNAUTHENTICATED)
    account = registry.authenticate(authorization[7:].strip())
    if account is None:
        raise ApiError(401, "invalid or revoked key", UNAUTHENTICATED)
    if admin and not account.is_admin:
        raise ApiError(403, f"service account {account.name!r} lacks the admin role")
    if model is not None and not account.can_read(model):
        raise ApiError(403, f"service account {account.name!r} may not read predictions of model {model!r}")
    if model is not None and not admin:
        readers = registry.readers
        if len(readers) > 10_000:  # clients choose headers and model names: keep it bounded
            readers.clear()
        readers[(authorization, model)] = account
    return account
