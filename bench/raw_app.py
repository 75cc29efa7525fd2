"""The same-run baselines of bench/serve.py: the least any ASGI (or RSGI) app can cost per request."""

BODY = b'{"model":"churn","id":"42","snapshot":1,"prediction":{"predicted_churned":0}}'
HEADERS = [(b"content-length", b"%d" % len(BODY)), (b"content-type", b"application/json")]


async def app(scope, receive, send):  # a 10-line raw ASGI app: one constant JSON body
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
    elif scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


class RawRsgi:
    """The same constant answer on Granian's RSGI interface (its native one, no ASGI messages)."""

    async def __rsgi__(self, scope, proto):
        proto.response_bytes(200, [("content-type", "application/json")], BODY)


rsgi_app = RawRsgi()


def store_reader():
    """An ASGI app that only reads the store: ``GET /.../{id}`` returns the stored bytes of that id
    (no auth, no pointer cache, no metrics). The store and snapshot come from BENCH_STORE."""
    import os

    from predserve.store import open_store

    state = {}

    async def read(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                state["store"] = store = open_store(os.environ["BENCH_STORE"], readonly=True, read_timeout=1.0)
                state["snapshot"] = (await store.astate("churn")).current
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = await state["store"].aget("churn", state["snapshot"], scope["path"].rsplit("/", 1)[1].encode())
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS[1:]})
        await send({"type": "http.response.body", "body": body or b"{}"})

    return read
