"""A fault-injecting TCP proxy on loopback, between the API and the Bigtable emulator.

The API's Bigtable client speaks gRPC: HTTP/2 over one TCP connection that carries every read
at once, each read a stream. So a fault "per read" cannot be made by delaying TCP chunks: a
chunk holds pieces of many streams, and holding one back holds back every read behind it
(head-of-line blocking: a stalled connection, not a slow read), while letting later chunks
overtake it corrupts the byte stream. ``tc netem`` delays packets, so it has the same limit
(and the development machine's kernel lacks the netem qdisc: ``tc qdisc add dev lo root
netem`` in a new network namespace says "Specified qdisc kind is unknown").

This proxy therefore reads the HTTP/2 frames the client sends (a 9-byte header each: length,
type, flags, stream) and delays or resets *per request*:

- a request is a stream's first DATA frame (the gRPC request message, after its HEADERS);
- to delay a request, that DATA frame and every later frame of the same stream are held for
  the delay, while frames of other streams and of the connection (SETTINGS, PING,
  WINDOW_UPDATE) pass. The server sees the request's headers, then waits for its message:
  that read takes longer and no other does, as when one tablet is slow. HEADERS frames are
  never held or reordered (their HPACK compression depends on the order they are sent in),
  and each stream's own frames keep their order;
- to reset, the proxy aborts both TCP connections (RST) when a chosen request arrives: every
  read in flight on that connection fails, as when a connection to Bigtable is reset.

What it does not model: a slow *network* (it does not delay the server's frames, pings or
window updates; ``latency`` is "the store takes this much longer per read"), packet loss, or
bandwidth. Faults are chosen by a request counter, not at random, so a test is repeatable.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, CONTINUATION = 0x0, 0x1, 0x9
FRAME_HEADER = 9


@dataclass
class Faults:
    """What the proxy does to requests (changed by a test at any time; read per request)."""

    latency: float = 0.0  # seconds added to every request
    slow_every: int = 0  # every Nth request is held a further slow_delay (0: none)
    slow_delay: float = 0.2
    reset_every: int = 0  # every Nth request resets its connection (1: a dead store; 0: none)


@dataclass
class Counts:
    requests: int = 0  # requests that reached the proxy (reset ones included)
    slowed: int = 0
    resets: int = 0
    connections: int = 0


@dataclass(eq=False)  # hashed by identity: the proxy keeps a set of them
class _Connection:
    server: asyncio.StreamWriter
    client: asyncio.StreamWriter
    judged: set[int] = field(default_factory=set)  # streams whose request arrived
    held: dict[int, list[bytes]] = field(default_factory=dict)  # stream -> frames held back, in order


class FaultProxy:
    """``127.0.0.1:port`` forwarding to ``127.0.0.1:upstream``, run in a process of its own (so
    the test's client threads do not delay it by holding the GIL): ``python -m
    tests.support.faultproxy UPSTREAM``, told what to do by JSON lines on its stdin.

    ``with FaultProxy(upstream) as proxy:``, then ``proxy.set(latency=0.05)`` etc.;
    ``proxy.counts()`` says what reached it since the last ``set``.
    """

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> "FaultProxy":
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen([sys.executable, "-m", "tests.support.faultproxy", str(self.upstream)], cwd=root, env=env,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.port = int(self._ask("port"))
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None
        try:
            self._ask("stop")
            self._process.wait(10)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait(10)

    def _ask(self, command: str, argument: object = None) -> Any:
        assert self._process is not None and self._process.stdin and self._process.stdout
        self._process.stdin.write(json.dumps([command, argument]).encode() + b"\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the fault proxy exited (code {self._process.poll()})")
        return json.loads(line)

    def set(self, **faults: float) -> None:
        """Replace the faults (unnamed ones off) and zero the counts."""
        Faults(**faults)  # type: ignore[arg-type]  # a misspelt fault fails here, in the test
        self._ask("set", faults)

    def counts(self) -> Counts:
        return Counts(**self._ask("counts"))

    def reset_all(self) -> None:
        """Reset every open connection now (what a restarted Bigtable frontend does)."""
        self._ask("reset_all")


def main(upstream: int) -> None:
    """The proxy process: the proxy on an event loop in a thread, commands read from stdin here."""
    proxy = _Proxy(upstream)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    port = asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(10)
    for line in sys.stdin:
        command, argument = json.loads(line)
        answer: object = None
        if command == "port":
            answer = port
        elif command == "set":
            proxy.faults, proxy.counts = Faults(**argument), Counts()
        elif command == "counts":
            answer = asdict(proxy.counts)
        elif command == "reset_all":
            loop.call_soon_threadsafe(proxy.reset_all)
        elif command == "stop":
            asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(10)
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
        if command == "stop":
            return


class _Proxy:
    """The proxy itself (in the proxy process, on its event loop)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.faults = Faults()
        self.counts = Counts()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        self.reset_all()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if tasks:  # the connections' tasks end once their sockets are closed
            await asyncio.wait(tasks, timeout=2)

    def reset_all(self) -> None:
        for connection in list(self._connections):
            self._reset(connection)

    # ---- the proxy -------------------------------------------------------------------------
    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            client_writer.transport.abort()
            return
        connection = _Connection(server_writer, client_writer)
        self._connections.add(connection)
        self.counts.connections += 1
        pumps = [asyncio.ensure_future(self._requests(client_reader, connection)),
                 asyncio.ensure_future(self._copy(server_reader, client_writer))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)  # either side closed or was reset
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._reset(connection)

    async def _copy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The server's bytes, to the client as they come."""
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass

    async def _requests(self, reader: asyncio.StreamReader, connection: _Connection) -> None:
        """The client's bytes, frame by frame, each request judged as it arrives."""
        try:
            await self._frames(reader, connection)
        except (OSError, asyncio.IncompleteReadError):
            pass

    async def _frames(self, reader: asyncio.StreamReader, connection: _Connection) -> None:
        server = connection.server
        server.write(await reader.readexactly(len(PREFACE)))
        while True:
            head = await reader.readexactly(FRAME_HEADER)
            length = int.from_bytes(head[:3], "big")
            kind, stream = head[3], struct.unpack(">I", head[5:9])[0] & 0x7FFFFFFF
            frame = head + await reader.readexactly(length)
            held = connection.held.get(stream)
            if held is not None:
                if kind in (HEADERS, CONTINUATION):  # never reorder header blocks: release the stream now
                    self._release(connection, stream)
                    server.write(frame)
                else:
                    held.append(frame)
            elif kind == DATA and stream not in connection.judged:
                connection.judged.add(stream)
                delay = self._judge()
                if delay is None:
                    self._reset(connection)
                    return
                if delay > 0:
                    connection.held[stream] = [frame]
                    asyncio.get_running_loop().call_later(delay, self._release, connection, stream)
                else:
                    server.write(frame)
            else:
                server.write(frame)
            await server.drain()

    def _judge(self) -> float | None:
        """A request arrived: its delay in seconds, or None to reset its connection."""
        faults, counts = self.faults, self.counts
        counts.requests += 1
        if faults.reset_every and counts.requests % faults.reset_every == 0:
            counts.resets += 1
            return None
        delay = faults.latency
        if faults.slow_every and counts.requests % faults.slow_every == 0:
            counts.slowed += 1
            delay += faults.slow_delay
        return delay

    def _release(self, connection: _Connection, stream: int) -> None:
        frames = connection.held.pop(stream, None)
        if frames and connection in self._connections:
            connection.server.write(b"".join(frames))

    def _reset(self, connection: _Connection) -> None:
        """Abort both sides with a TCP RST (SO_LINGER 0), as a reset connection does."""
        if connection not in self._connections:
            return
        self._connections.discard(connection)
        for writer in (connection.client, connection.server):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            writer.transport.abort()


if __name__ == "__main__":
    main(int(sys.argv[1]))
