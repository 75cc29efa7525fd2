"""The workers' traffic samples, brought together for the console (several workers only).

Each worker counts only the requests it answers (``traffic.TrafficSampler``). When the server
runs more than one, it gives them a private directory (``ServeConfig.traffic_dir``, removed
when the server stops), and:

- the worker answering ``/v1/console/traffic`` touches ``wanted`` there;
- every worker, once a second while ``wanted`` was touched in the last ``WANTED_FOR``
  seconds, appends the seconds it completed since its last write to its own file,
  ``worker-PID.jsonl``, one line per second (``traffic.encode_second``). The first write after
  a pause replaces the file with the whole window; a file past twice the window is rewritten
  with the window alone. A worker with nothing new touches its file, so a file that stops
  changing for ``STALE_AFTER`` seconds belongs to a worker that stopped (or was replaced);
- the answering worker reads what the other files gained since it last looked (it keeps
  each file's offset and parsed seconds), and merges them with its own samples.

So with a console open, a worker writes a line or two a second and reads a line or two per
other worker per poll; nothing is written or read without one. Another worker's figures lag
by a second or two (its current second is written once complete).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from predserve.serving.traffic import WINDOW_SECONDS, Cell, Key, TrafficSampler, decode_second, encode_second

log = logging.getLogger("predserve.serving")

WANTED_FOR = 10.0  # seconds the workers keep writing after the console last asked
STALE_AFTER = 3.0  # a worker's file unchanged for longer is left out
MAX_READ = 16 << 20  # bytes read from another worker's file at once, at most
View = list[tuple[int, dict[Key, Cell]]]


@dataclass
class FileReader:
    """What has been read of one other worker's file: where it stopped, and the seconds parsed."""

    inode: int
    offset: int = 0
    seconds: deque[tuple[int, dict[Key, Cell]]] = field(default_factory=lambda: deque(maxlen=WINDOW_SECONDS))


class TrafficShare:
    def __init__(self, directory: str, workers: int) -> None:
        self.directory = Path(directory)
        self.workers = workers
        self.own = self.directory / f"worker-{os.getpid()}.jsonl"
        self.wanted = self.directory / "wanted"
        self.written_up_to: int | None = None  # the last second written; None: not writing
        self.lines = 0  # lines in this worker's file
        self.readers: dict[Path, FileReader] = {}
        self._complained = False

    # ---- the answering worker ---------------------------------------------------------------
    def ask(self) -> None:
        """Have every worker write its samples for the next WANTED_FOR seconds."""
        self.wanted.touch()

    def others(self) -> list[tuple[int, View]]:
        """(pid, seconds) of every other worker whose file is fresh; a file that cannot be read is skipped."""
        found = []
        now = time.time()
        for path in self.directory.glob("worker-*.jsonl"):
            if path == self.own:
                continue
            try:
                status = path.stat()
                if now - status.st_mtime > STALE_AFTER:
                    self.readers.pop(path, None)
                    continue
                found.append((int(path.stem.removeprefix("worker-")), self._read(path, status)))
            except (OSError, ValueError, TypeError) as exc:
                self.readers.pop(path, None)
                log.warning("skipping the traffic samples in %s: %s", path, exc)
        return found

    def _read(self, path: Path, status: os.stat_result) -> View:
        reader = self.readers.get(path)
        if reader is None or reader.inode != status.st_ino or status.st_size < reader.offset:
            reader = self.readers[path] = FileReader(status.st_ino)  # new, or rewritten: from the start
        with path.open("rb") as file:
            file.seek(reader.offset)
            data = file.read(min(status.st_size - reader.offset, MAX_READ))
        complete = data[:data.rfind(b"\n") + 1]  # a line being appended is read next time
        reader.offset += len(complete)
        for line in complete.splitlines():
            reader.seconds.append(decode_second(line))
        return list(reader.seconds)

    # ---- every worker ---------------------------------------------------------------------------
    def is_wanted(self) -> bool:
        try:
            return time.time() - self.wanted.stat().st_mtime < WANTED_FOR
        except FileNotFoundError:
            return False

    def write(self, sampler: TrafficSampler) -> None:
        """Append the seconds completed since the last write (all of the window on a first write)."""
        now = int(time.time())
        start = now - WINDOW_SECONDS + 1 if self.written_up_to is None else self.written_up_to + 1
        new = [(second, cells) for second, cells in sampler.since(start) if second < now]
        if self.written_up_to is None or self.lines + len(new) > 2 * WINDOW_SECONDS:
            self._rewrite(sampler, now)
        elif new:
            with self.own.open("ab") as file:
                file.write(b"".join(encode_second(second, cells) for second, cells in new))
            self.lines += len(new)
        else:
            self.own.touch()  # alive, nothing new
        self.written_up_to = now - 1

    def _rewrite(self, sampler: TrafficSampler, now: int) -> None:
        window = [(second, cells) for second, cells in sampler.since(now - WINDOW_SECONDS + 1) if second < now]
        temporary = self.own.with_suffix(".tmp")
        temporary.write_bytes(b"".join(encode_second(second, cells) for second, cells in window))
        os.replace(temporary, self.own)
        self.lines = len(window)

    def write_if_wanted(self, sampler: TrafficSampler) -> None:
        try:
            if self.is_wanted():
                self.write(sampler)
            else:
                self.written_up_to = None  # the next console gets the whole window first
        except OSError as exc:  # the console misses this worker's figures; serving goes on
            self.written_up_to = None
            if not self._complained:
                self._complained = True
                log.warning("cannot share this worker's traffic samples in %s: %s", self.directory, exc)


async def keep_sharing(share: TrafficShare, sampler: TrafficSampler) -> None:
    """A worker's background task: once a second, write its samples while a console wants them."""
    while True:
        await asyncio.sleep(1.0)
        share.write_if_wanted(sampler)
