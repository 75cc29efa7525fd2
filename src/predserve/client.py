"""A Python client for the predserve HTTP API.

    from predserve.client import Client

    with Client("http://127.0.0.1:8000", key) as client:
        p = client.get("churn", "42")               # Prediction(model, id, snapshot, prediction, stale, default)
        p.prediction["predicted_churned"]
        many = client.batch_get("churn", ids)       # one entry per id, in order; None where there is no prediction
        client.get("offers", (42, "DE"))            # a composite key (--key user_id,country) as a tuple: id "42|DE"

``AsyncClient`` has the same methods as coroutines. Both keep connections open between calls
(a pool, with keep-alive), give every call a timeout, and retry a bounded number of times
with exponential backoff and jitter when the server answers 503 or cannot be reached; never
on any other error. Errors are typed: ``NotFound``, ``Unauthorized``, ``Forbidden``,
``Unavailable`` (after the retries; it names the server and how many tries it made),
``BadRequest``, all ``ClientError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence
from urllib.parse import quote

import httpx
import orjson

from predserve.keys import join_key
from tenacity import (
    AsyncRetrying, RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_random,
)

DEFAULT_MAX_BATCH = 1000  # the server's default --max-batch
KEEPALIVE_SECONDS = 4.0  # under the server's default --header-timeout (5 s), which closes idle connections


class ClientError(Exception):
    """An error answer of the API (or no answer at all): ``status`` is its HTTP status (0 for none)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status, self.message = status, message


class BadRequest(ClientError):
    """400, 405, 408 or 413: the request was malformed or too large; it will not succeed as it is."""


class Unauthorized(ClientError):
    """401: no key, or a key the server does not know (revoked, rotated, mistyped)."""


class Forbidden(ClientError):
    """403: the key is valid but its service account lacks the role for this model or route."""


class NotFound(ClientError):
    """404: the model has no published snapshot, or (for ``get``) the snapshot has no such id."""


class Unavailable(ClientError):
    """503 or no answer (connection refused or reset, timeout), still so after the retries."""


class ServerError(ClientError):
    """500: a bug in the server; its log says what happened."""


ERRORS: dict[int, type[ClientError]] = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
                                        405: BadRequest, 408: BadRequest, 413: BadRequest, 503: Unavailable}


@dataclass(frozen=True)
class Prediction:
    """One id's prediction. ``stale``: its snapshot is older than the model's max_age;
    ``default``: the model's fallback prediction for an id its snapshot does not hold."""

    model: str
    id: str
    snapshot: int
    prediction: dict[str, Any]
    stale: bool = False
    default: bool = False


# ---- the protocol, shared by both clients ---------------------------------------------------
Id = str | tuple[Any, ...]  # a composite key's values as a tuple, joined as the export joined them


def as_id(entity_id: Id) -> str:
    """The id the API takes: a string as it is, a tuple of key values joined (predserve.keys)."""
    return join_key(entity_id) if isinstance(entity_id, (tuple, list)) else entity_id


def needs_batch(entity_id: str) -> bool:
    """Ids a URL path cannot carry intact ('/' separates segments; '.' and '..' are dot segments;
    an empty segment is no segment) are fetched with a one-id batchGet instead."""
    return "/" in entity_id or entity_id in ("", ".", "..")


def one_path(model: str, entity_id: str) -> str:
    return f"/v1/models/{quote(model, safe='')}/predictions/{quote(entity_id, safe='')}"


def batch_path(model: str) -> str:
    return f"/v1/models/{quote(model, safe='')}/predictions:batchGet"


def chunks(ids: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def check(response: httpx.Response) -> Any:
    """The decoded body of a 200, or the typed error of anything else."""
    if response.status_code == 200:
        return orjson.loads(response.content)
    try:
        message = orjson.loads(response.content)["error"]["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = response.text[:200] or response.reason_phrase
    error = ERRORS.get(response.status_code, ServerError if response.status_code >= 500 else ClientError)
    raise error(response.status_code, message)


def unreachable(exc: httpx.TransportError) -> Unavailable:
    return Unavailable(0, f"the server did not answer: {type(exc).__name__}: {exc}")


def tries(count: int) -> str:
    return f"{count} {'try' if count == 1 else 'tries'}"


def prediction(entry: dict[str, Any], stale: bool) -> Prediction:
    return Prediction(entry["model"], entry["id"], entry["snapshot"], entry["prediction"],
                      stale=stale or bool(entry.get("stale")), default=bool(entry.get("default")))


def batch_results(body: dict[str, Any]) -> list[Prediction | None]:
    stale = bool(body.get("stale"))
    return [None if "error" in entry else prediction(entry, stale) for entry in body["results"]]


@dataclass(frozen=True)
class Settings:
    """What both clients are configured with."""

    url: str
    key: str | None
    timeout: float
    attempts: int
    backoff: float
    max_backoff: float
    max_batch: int

    def http_options(self) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        return {"base_url": self.url, "headers": headers, "timeout": httpx.Timeout(self.timeout),
                "limits": httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEPALIVE_SECONDS)}

    def retry_options(self) -> dict[str, Any]:
        return {"stop": stop_after_attempt(self.attempts), "retry_error_callback": self.gave_up,
                "wait": wait_exponential(multiplier=self.backoff, max=self.max_backoff) + wait_random(0, self.backoff),
                "retry": retry_if_exception_type(Unavailable)}

    def gave_up(self, state: RetryCallState) -> Any:
        """After the last try: the last Unavailable, naming the server and how many tries were made."""
        exc = state.outcome.exception() if state.outcome is not None else None
        if not isinstance(exc, Unavailable):
            raise exc or RuntimeError("the retries ended without an outcome")  # never: only Unavailable is retried
        raise Unavailable(exc.status, f"{self.url}: {exc.message} (gave up after {tries(state.attempt_number)} "
                          f"in {state.seconds_since_start or 0:.2f} s)") from exc


def settings(url: str, key: str | None, timeout: float, retries: int, backoff: float, max_backoff: float,
             max_batch: int) -> Settings:
    if retries < 0 or max_batch < 1 or timeout <= 0:
        raise ValueError("retries must be >= 0, max_batch >= 1 and timeout > 0")
    return Settings(url.rstrip("/"), key, timeout, retries + 1, backoff, max_backoff, max_batch)


# ---- the clients --------------------------------------------------------------------------
class Client:
    """A thread-safe client with a connection pool. Use it as a context manager, or call ``close``.

    ``retries``: extra attempts after a 503 or a connection failure (0 disables them), waiting
    ``backoff`` seconds, doubling up to ``max_backoff``, with jitter. ``max_batch``: the
    server's ``--max-batch``; ``batch_get`` splits longer lists into requests of that size.
    """

    def __init__(self, url: str, key: str | None = None, *, timeout: float = 2.0, retries: int = 3,
                 backoff: float = 0.05, max_backoff: float = 1.0, max_batch: int = DEFAULT_MAX_BATCH,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings(url, key, timeout, retries, backoff, max_backoff, max_batch)
        self._http = httpx.Client(transport=transport, **self.settings.http_options())

    def _call(self, method: str, path: str, body: bytes | None = None) -> Any:
        for attempt in Retrying(**self.settings.retry_options()):
            with attempt:
                try:
                    response = self._http.request(method, path, content=body,
                                                  headers={"Content-Type": "application/json"} if body else None)
                except httpx.TransportError as exc:
                    raise unreachable(exc) from exc
                return check(response)

    def get(self, model: str, entity_id: Id) -> Prediction:
        """The prediction for one id (a tuple for a composite key); ``NotFound`` when the model or the id has none."""
        entity_id = as_id(entity_id)
        if needs_batch(entity_id):
            found = self.batch_get(model, [entity_id])[0]
            if found is None:
                raise NotFound(404, f"no prediction for id {entity_id!r} in model {model!r}")
            return found
        return prediction(self._call("GET", one_path(model, entity_id)), False)

    def batch_get(self, model: str, ids: Sequence[Id]) -> list[Prediction | None]:
        """The predictions for many ids, in their order (None where there is none), in as many
        requests as the server's batch limit needs."""
        results: list[Prediction | None] = []
        for part in chunks([as_id(i) for i in ids], self.settings.max_batch):
            results += batch_results(self._call("POST", batch_path(model), orjson.dumps({"ids": list(part)})))
        return results

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """``Client`` for asyncio: the same arguments, methods and errors, as coroutines."""

    def __init__(self, url: str, key: str | None = None, *, timeout: float = 2.0, retries: int = 3,
                 backoff: float = 0.05, max_backoff: float = 1.0, max_batch: int = DEFAULT_MAX_BATCH,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings(url, key, timeout, retries, backoff, max_backoff, max_batch)
        self._http = httpx.AsyncClient(transport=transport, **self.settings.http_options())

    async def _call(self, method: str, path: str, body: bytes | None = None) -> Any:
        async for attempt in AsyncRetrying(**self.settings.retry_options()):
            with attempt:
                try:
                    response = await self._http.request(method, path, content=body,
                                                        headers={"Content-Type": "application/json"} if body else None)
                except httpx.TransportError as exc:
                    raise unreachable(exc) from exc
                return check(response)

    async def get(self, model: str, entity_id: Id) -> Prediction:
        entity_id = as_id(entity_id)
        if needs_batch(entity_id):
            found = (await self.batch_get(model, [entity_id]))[0]
            if found is None:
                raise NotFound(404, f"no prediction for id {entity_id!r} in model {model!r}")
            return found
        return prediction(await self._call("GET", one_path(model, entity_id)), False)

    async def batch_get(self, model: str, ids: Sequence[Id]) -> list[Prediction | None]:
        results: list[Prediction | None] = []
        for part in chunks([as_id(i) for i in ids], self.settings.max_batch):
            results += batch_results(await self._call("POST", batch_path(model), orjson.dumps({"ids": list(part)})))
        return results

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
