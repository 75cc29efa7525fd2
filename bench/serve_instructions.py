"""Instructions per request (valgrind's callgrind), the apps called in-process: a figure that
does not move with the machine's load, where bench/serve.py's req/s move by ±30%.

Each case runs in a child process under ``valgrind --tool=callgrind`` that collects only while
``functools.reduce`` runs (``--toggle-collect``): the child sets up its app, warms it with the
same calls, then makes ``--calls`` requests inside one ``reduce``, each coroutine driven by
``send(None)`` inside the running uvloop (an LMDB read never suspends). Cases:

  - bare-one, bare-100: ``raw_app.bare_reader`` reading one id / 100 ids, the job's own limit (issue 23);
  - predserve-one, predserve-100: the serving app with auth, roles, metrics, stale marks and limits.

What the server adds to every request (Granian's Rust threads, the task per request) is the same
for both apps and is not in these figures: bench/serve.py measures it. Work done once a second
(the pointer cache's refresh, the service-account file's check, the traffic ring's rollover) is
amortised over ~20,000 requests in a real second but over a few hundred under valgrind, so the
harness sets the pointer TTL to an hour; per-second work is left out of the figures.

    .venv/bin/python bench/serve_instructions.py [--calls 2000] [--annotate]   (needs valgrind)
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import random
import re
import subprocess
import sys
from typing import Any

from common import OUT, ROOT

CASES = ("bare-one", "predserve-one", "bare-100", "predserve-100")  # the app (bare read or predserve), ids per request
ROWS = 100_000


def child(case: str, calls: int) -> None:
    """Set up ``case``'s app, warm it, then make ``calls`` requests inside one functools.reduce."""
    import uvloop

    from raw_app import bare_reader
    from serve import lmdb_store, plain_lmdb, reader_key

    from predserve.serving import ServeConfig, ServingContext, create_app

    store = lmdb_store(ROWS)
    os.environ["BENCH_PLAIN"] = plain_lmdb(store)
    iam, key = reader_key()
    rng = random.Random(1)
    batch = case.endswith("100")
    paths = [f"/v1/models/churn/predictions/{rng.randint(1, ROWS)}" for _ in range(calls)]
    bodies = [json.dumps({"ids": [str(rng.randint(1, ROWS)) for _ in range(100)]}).encode() for _ in range(calls)]
    headers = [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {key}".encode())]
    if batch:
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(bodies[0]))]

    async def main() -> None:
        if case.startswith("bare"):
            app = bare_reader()
            lifespan = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

            async def next_event() -> dict[str, Any]:
                return next(lifespan)

            async def ignore(message: Any) -> None:
                return None

            await app({"type": "lifespan"}, next_event, ignore)
        else:
            config = ServeConfig(store, iam_path=iam, pointer_ttl=3600)
            app = create_app(config, ServingContext.open(config))
        sent: list[int] = []

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                sent.append(message["status"])

        def request(_: object, i: int) -> None:
            scope = {"type": "http", "method": "POST" if batch else "GET", "headers": headers,
                     "path": "/v1/models/churn/predictions:batchGet" if batch else paths[i]}
            body = {"type": "http.request", "body": bodies[i], "more_body": False}

            async def receive() -> dict[str, Any]:
                return body

            coroutine = app(scope, receive, send)
            try:
                coroutine.send(None)
            except StopIteration:
                return
            raise RuntimeError("the request suspended: this harness drives only requests that do not wait")

        for i in range(calls):  # warm-up, not collected
            request(None, i)
        gc.collect()
        gc.freeze()
        sent.clear()
        functools.reduce(request, range(calls), None)  # measured (callgrind collects only in reduce)
        assert sent == [200] * calls, f"not every request was answered 200: {sorted(set(sent))}"

    uvloop.run(main())


def instructions(case: str, calls: int, annotate: bool) -> float:
    """Instructions per request of ``case``, from one callgrind run of ``calls`` requests."""
    out = OUT / f"callgrind-{case}.out"
    command = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=functools_reduce",
               f"--callgrind-out-file={out}", sys.executable, __file__, "--child", case, "--calls", str(calls)]
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT / "bench",
                         env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'bench'}"})
    if run.returncode:
        raise RuntimeError(f"{case}: the callgrind run failed:\n{run.stderr[-3000:]}")
    total = int(re.search(r"^totals: (\d+)", out.read_text(), re.M).group(1))  # type: ignore[union-attr]
    if annotate:
        print(subprocess.run(["callgrind_annotate", "--inclusive=yes", str(out)], capture_output=True, text=True).stdout[:6000])
    return total / calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--annotate", action="store_true", help="print each case's top inclusive costs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.calls)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    result = {}
    for case in args.cases.split(","):
        calls = args.calls // 10 if case.endswith("100") else args.calls  # a batch is ~100 requests' work
        result[case] = round(instructions(case, calls, args.annotate))
        print(f"{result[case]:10,} instructions per request  {case}", flush=True)
    for what in ("one", "100"):
        bare, ours = result.get(f"bare-{what}"), result.get(f"predserve-{what}")
        if bare and ours:
            print(f"{what} id{'s' if what == '100' else ''} per request: predserve {ours / bare:.2f}x the bare read's instructions (+{ours - bare:,})")
    (OUT / "serve_instructions.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
