"""Reading app logs in the CRI format for GetLogs: filter, tail, merge and follow.

Lines are parsed and partial (`P`) entries joined by rktnetes/logs/cri.py, the same module the
monitor writes them with; this module adds what a long-lived, read-only follower needs:
files kept open across pod moves, polling by size, and time windows over several apps.
"""

from __future__ import annotations

import heapq
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from rktnetes.logs import cri


@dataclass(frozen=True)
class LogLine:
    time_ns: int            # when the (first part of the) line was written
    stream: str             # "stdout" | "stderr"
    text: str
    app: str = ""


def parse_timestamp(s: str) -> int | None:
    """RFC 3339 with up to nanoseconds, to nanoseconds since the epoch; None if malformed."""
    try:
        return cri.parse_time(s)
    except ValueError:
        return None


class CRIParser:
    """Feeds CRI log entries one at a time (as a follower reads them) into whole lines."""

    def __init__(self, app: str = ""):
        self.app = app
        self._joiner = cri.Joiner()

    def feed(self, entry: str) -> LogLine | None:
        try:
            e = cri.parse_line(entry.rstrip("\n").encode())
        except ValueError:
            return None                               # torn or foreign line: skip it
        whole = self._joiner.add(e)
        if whole is None:
            return None
        return LogLine(whole.time_ns, whole.stream, whole.content.decode("utf-8", "replace"),
                       self.app)


class LogFile:
    """One app's log file, read from the start and then followed as it grows.

    The file stays open, so it can still be read to the end after the pod moves to another
    state directory or is removed. Until it exists (an app not started yet), `locate` is asked
    for its path at each read, since the pod may have moved meanwhile. A file that shrinks was
    truncated: read it again."""

    def __init__(self, locate: Callable[[], Path | None], app: str):
        self.locate = locate
        self.parser = CRIParser(app)
        self._f = None
        self._buf = b""

    def _open(self) -> bool:
        if self._f is None:
            path = self.locate()
            if path is None:
                return False
            try:
                self._f = open(path, "rb")
            except (FileNotFoundError, NotADirectoryError):
                return False
        return True

    def read_new(self) -> list[LogLine]:
        """Whole lines written since the last call (an unterminated last line waits)."""
        if not self._open():
            return []
        try:
            if os.fstat(self._f.fileno()).st_size < self._f.tell():
                self._f.seek(0)
                self._buf = b""
            data = self._f.read()
        except OSError:
            return []
        if not data:
            return []
        data = self._buf + data
        cut = data.rfind(b"\n") + 1
        self._buf = data[cut:]
        out = []
        for raw in data[:cut].splitlines():
            line = self.parser.feed(raw.decode("utf-8", "replace"))
            if line is not None:
                out.append(line)
        return out

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


@dataclass(frozen=True)
class Window:
    """GetLogs' selection: seconds since the epoch (0 = unbounded), and a tail length."""

    since: int = 0
    until: int = 0
    tail: int = 0

    def admits(self, line: LogLine) -> bool:
        """Bounds are whole seconds and inclusive, like journalctl's --since/--until."""
        sec = line.time_ns // 1_000_000_000
        if self.since and sec < self.since:
            return False
        if self.until and sec > self.until:
            return False
        return True

    def select(self, lines: Iterable[LogLine]) -> list[LogLine]:
        kept = (x for x in lines if self.admits(x))
        if self.tail > 0:
            return list(deque(kept, maxlen=self.tail))
        return list(kept)


def merge(per_app: list[list[LogLine]]) -> Iterator[LogLine]:
    """Several apps' lines in time order (each list already is)."""
    return heapq.merge(*per_app, key=lambda x: x.time_ns)
