"""A fixed-rate (open-loop) HTTP load generator that measures from each request's scheduled
send time, so queueing delay is counted (closed-loop tools like wrk hide it).

Requests are scheduled at start + i / rate. A spinning scheduler sends every due request on
an idle keep-alive connection (or queues it if all are busy: that wait counts too); latency is
the time from the *scheduled* send to the last byte of the response. Loopback only, bounded
by --duration and --rate.

    python bench/loadgen.py --port 8000 --rate 2000 --duration 10 --path-template '/v1/m/p/{id}' ...
Prints one JSON object: sent, ok, errors, achieved_rate, p50/p90/p99/p999/max in ms (of the
200s), and error_p50/error_max (of the other answers).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import time
from collections import deque

import numpy as np

HOST = "127.0.0.1"


class Connection(asyncio.Protocol):
    def __init__(self, gen: "Generator") -> None:
        self.gen = gen
        self.buffer = bytearray()
        self.scheduled = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes, scheduled: float) -> None:
        self.scheduled = scheduled
        assert self.transport is not None
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        del self.buffer[: end + 4 + length]
        self.gen.done(self, time.perf_counter() - self.scheduled, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen.lost += 1


class Generator:
    def __init__(self, requests: list[bytes], rate: float, connections: int, port: int) -> None:
        self.requests, self.rate, self.connections, self.port = requests, rate, connections, port
        self.idle: deque[Connection] = deque()
        self.backlog: deque[tuple[bytes, float]] = deque()
        self.latencies: list[float] = []
        self.error_latencies: list[float] = []  # of the non-200 answers
        self.errors = 0
        self.lost = 0
        self.finished = 0

    def done(self, conn: Connection, latency: float, status: int) -> None:
        self.finished += 1
        if status == 200:
            self.latencies.append(latency)
        else:
            self.errors += 1
            self.error_latencies.append(latency)
        if self.backlog:
            request, scheduled = self.backlog.popleft()
            conn.send(request, scheduled)
        else:
            self.idle.append(conn)

    async def run(self) -> dict:
        loop = asyncio.get_running_loop()
        for _ in range(self.connections):
            _, conn = await loop.create_connection(lambda: Connection(self), HOST, self.port)
            self.idle.append(conn)
        n = len(self.requests)
        start = time.perf_counter() + 0.05
        interval = 1.0 / self.rate
        i = 0
        while i < n:
            now = time.perf_counter()
            while i < n and start + i * interval <= now:
                scheduled = start + i * interval
                if self.idle:
                    self.idle.pop().send(self.requests[i], scheduled)
                else:
                    self.backlog.append((self.requests[i], scheduled))
                i += 1
            await asyncio.sleep(0)
        sent_span = time.perf_counter() - start
        deadline = time.perf_counter() + 10
        while self.finished < n and time.perf_counter() < deadline and self.lost == 0:
            await asyncio.sleep(0.001)
        lat = np.array(self.latencies) * 1000
        pct = (lambda q: round(float(np.percentile(lat, q)), 3)) if len(lat) else (lambda q: None)
        return {
            "sent": n, "ok": len(self.latencies), "errors": self.errors, "unanswered": n - self.finished,
            "target_rate": self.rate, "achieved_rate": round(n / sent_span, 1),
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "p999_ms": pct(99.9),
            "max_ms": round(float(lat.max()), 3) if len(lat) else None,
            "error_p50_ms": round(float(np.percentile(self.error_latencies, 50)) * 1000, 3) if self.error_latencies else None,
            "error_max_ms": round(max(self.error_latencies) * 1000, 3) if self.error_latencies else None,
        }


def build_requests(count: int, method: str, path_template: str, key: str | None, body_template: str | None,
                   max_id: int, batch: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    out = []
    for _ in range(count):
        path = path_template.format(id=rng.randint(1, max_id))
        if body_template is None:
            out.append(f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n{auth}\r\n".encode())
        else:
            ids = json.dumps([str(rng.randint(1, max_id)) for _ in range(batch)])
            body = body_template.replace("IDS", ids).encode()
            head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n{auth}Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            out.append(head.encode() + body)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second (bounded: at most 50,000)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (at most 60)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--path-template", required=True)
    parser.add_argument("--body-template", help='e.g. {"ids": IDS}')
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--max-id", type=int, default=1_000_000)
    parser.add_argument("--key")
    args = parser.parse_args()
    rate = min(args.rate, 50_000)
    count = int(rate * min(args.duration, 60))
    requests = build_requests(count, args.method, args.path_template, args.key, args.body_template, args.max_id, args.batch)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    gc.collect()
    gc.disable()  # a bounded run: no collector pauses inside the measurement
    result = asyncio.run(Generator(requests, rate, args.connections, args.port).run())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
