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


def bare_reader():
    """The job's own limit (issue 23): an ASGI app on the same server that makes the bare py-lmdb
    reads the route needs and nothing else. ``GET .../{id}``: one ``txn.get`` of the id; ``POST``
    with ``{"ids": [...]}``: the body read and parsed, one transaction, one ``txn.get`` per id,
    the bodies joined. The plain LMDB (BENCH_PLAIN, built by serve.plain_lmdb) holds the store's
    bodies under the bare ids."""
    import os

    import lmdb
    import orjson

    state = {}

    async def read(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                state["env"] = lmdb.open(os.environ["BENCH_PLAIN"], readonly=True, readahead=False)
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        env = state["env"]
        if scope["method"] == "POST":
            message, body = {"more_body": True}, b""
            while message.get("more_body"):
                message = await receive()
                body += message.get("body", b"")
            with env.begin() as txn:
                get = txn.get
                out = b'{"results":[' + b",".join([get(i.encode()) or b"null" for i in orjson.loads(body)["ids"]]) + b"]}"
        else:
            with env.begin() as txn:
                out = txn.get(scope["path"].rsplit("/", 1)[1].encode()) or b"{}"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(out)), HEADERS[1]]})
        await send({"type": "http.response.body", "body": out})

    return read
