"""Reading app logs in the CRI format for GetLogs: parse, filter, tail and follow.

Each line of pods/<state>/<uuid>/apps/<name>/log is `<RFC3339Nano> <stream> <F|P> <text>`;
`P` marks a partial line continued by the next entry, `F` the end of one. rktnetes/logs/cri.py
(the writer, another module) had no reader when this was written, so this is a small reader
of our own, read-only: it opens files for reading and follows them by polling their size.
"""

from __future__ import annotations

import calendar
import heapq
import os
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

_TS_RE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)$")


@dataclass(frozen=True)
class LogLine:
    time_ns: int            # when the (first part of the) line was written
    stream: str             # "stdout" | "stderr"
    text: str
    app: str = ""


def parse_timestamp(s: str) -> int | None:
    """RFC 3339 with up to nanoseconds, to nanoseconds since the epoch; None if malformed."""
    m = _TS_RE.match(s)
    if not m:
        return None
    y, mo, d, h, mi, sec, frac, tz = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(sec)))
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        tz = tz[1:].replace(":", "")
        secs -= sign * (int(tz[:2]) * 3600 + int(tz[2:]) * 60)
    return secs * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


class CRIParser:
    """Turns CRI log entries into whole lines, joining partial (`P`) entries.

    Stateful so a follower can feed it entries as they arrive; a partial line waits for
    its final part, per stream (stdout and stderr interleave)."""

    def __init__(self, app: str = ""):
        self.app = app
        self._partial: dict[str, tuple[int, list[str]]] = {}

    def feed(self, entry: str) -> LogLine | None:
        parts = entry.rstrip("\n").split(" ", 3)
        if len(parts) < 3:
            return None                               # torn or foreign line: skip it
        ts = parse_timestamp(parts[0])
        if ts is None or parts[1] not in ("stdout", "stderr") or parts[2] not in ("F", "P"):
            return None
        text = parts[3] if len(parts) == 4 else ""
        start, pieces = self._partial.pop(parts[1], (ts, []))
        pieces.append(text)
        if parts[2] == "P":
            self._partial[parts[1]] = (start, pieces)
            return None
        return LogLine(start, parts[1], "".join(pieces), self.app)


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
