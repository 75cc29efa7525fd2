"""The few ASGI primitives the hot path needs: headers, responses, bounded request bodies.

Starlette's ``Request``/``Response`` would do the same with more layers; on a route answered
in tens of microseconds those layers are most of the cost (see docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, MutableMapping
from urllib.parse import unquote_to_bytes

from predserve.serving.errors import ApiError, error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
RawHeaders = list[tuple[bytes, bytes]]

JSON_HEADER = (b"content-type", b"application/json")
CLOSE_HEADER = (b"connection", b"close")


class ClientDisconnected(Exception):
    """The client went away before its request body arrived: there is nobody to answer."""


def header(scope: Scope, name: bytes) -> str | None:
    """The value of one request header (``name`` in lower case), decoded as Latin-1."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def strict_path(scope: Scope) -> str:
    """The request path decoded strictly as UTF-8 from the raw bytes the client sent.

    Servers decode the path with replacement characters, so a real U+FFFD in an id and an
    invalid byte look alike in ``scope["path"]``; the raw path tells them apart.
    """
    raw = scope.get("raw_path")
    if raw is None:
        return scope["path"]
    try:
        return unquote_to_bytes(raw.split(b"?", 1)[0]).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the request path is not valid UTF-8 (after percent-decoding); ids are UTF-8 text") from None


async def send_json(send: Send, status: int, body: bytes, extra: RawHeaders | None = None, head_only: bool = False) -> None:
    headers = [(b"content-length", b"%d" % len(body)), JSON_HEADER]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head_only else body})


async def send_error(send: Send, error: ApiError, head_only: bool = False) -> None:
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (error.headers or {}).items()]
    if error.code in (408, 413):  # the rest of the body may still be on its way: do not read it
        extra.append(CLOSE_HEADER)
    await send_json(send, error.code, error_body(error.code, error.message), extra, head_only)


def content_length(scope: Scope) -> int | None:
    value = header(scope, b"content-length")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise ApiError(400, f"invalid Content-Length header {value[:40]!r}")
    return int(value)


async def read_body(scope: Scope, receive: Receive, limit: int, timeout: float) -> bytes:
    """The request body, refused (413) past ``limit`` bytes and abandoned (408) after ``timeout`` s.

    A declared Content-Length over the limit is refused before a byte is read; a chunked body
    is read only up to the limit.
    """
    declared = content_length(scope)
    if declared is not None and declared > limit:
        raise ApiError(413, f"request body is {declared} bytes, over the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnected
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"request body is over the limit of {limit} bytes")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {timeout:g}s") from None


class BufferedReceive:
    """A ``receive`` that hands an application the body already read, then waits on the client."""

    def __init__(self, body: bytes, receive: Receive) -> None:
        self.body: bytes | None = body
        self.receive = receive

    async def __call__(self) -> Message:
        if self.body is None:
            return await self.receive()
        body, self.body = self.body, None
        return {"type": "http.request", "body": body, "more_body": False}
