"""The Kubernetes CRI log format: `<RFC3339Nano UTC> <stdout|stderr> <F|P> <content>\\n`.

`LineWriter` turns a stream's bytes into log lines (P for pieces of a line longer than
MAX_LINE, and for a last line with no newline); the reader parses them back, joins P pieces,
and offers `tail`, `since` and a polling `follow` that stops once the pod has exited.
Imports only the standard library's lightest modules: the per-pod monitor uses the writer.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is heavy for the monitor, which imports the writer
    from collections.abc import Callable, Iterator

MAX_LINE = 16 * 1024
FULL, PARTIAL = b"F", b"P"


def rfc3339nano(ns: int) -> str:
    t = time.gmtime(ns // 1_000_000_000)
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:"
            f"{t.tm_sec:02d}.{ns % 1_000_000_000:09d}Z")


def parse_time(s: str) -> int:
    """RFC 3339 (any fraction, Z or +hh:mm) to nanoseconds since the epoch."""
    import calendar

    s = s.strip()
    if len(s) < 19 or s[10] not in "Tt ":
        raise ValueError(f"not an RFC 3339 time: {s!r}")
    base = calendar.timegm(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S" if s[10] in "Tt"
                                         else "%Y-%m-%d %H:%M:%S"))
    rest, frac = s[19:], 0
    if rest.startswith("."):
        digits = ""
        rest = rest[1:]
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        frac = int((digits + "000000000")[:9])
    offset = 0
    if rest in ("Z", "z", ""):
        pass
    elif rest[0] in "+-" and len(rest) == 6 and rest[3] == ":":
        offset = (int(rest[1:3]) * 3600 + int(rest[4:6]) * 60) * (1 if rest[0] == "+" else -1)
    else:
        raise ValueError(f"bad time zone in {s!r}")
    return (base - offset) * 1_000_000_000 + frac


def format_line(ns: int, stream: str, tag: bytes, content: bytes) -> bytes:
    return b"%s %s %s %s\n" % (rfc3339nano(ns).encode(), stream.encode(), tag, content)


class LineWriter:
    """Buffers one stream's output and writes whole CRI log lines to `fd`."""

    def __init__(self, fd: int, stream: str, clock: Callable[[], int] = time.time_ns):
        self.fd, self.stream, self.clock = fd, stream, clock
        self.buf = b""

    def feed(self, data: bytes) -> None:
        buf = self.buf + data
        if len(buf) <= MAX_LINE and b"\n" not in buf:
            self.buf = buf
            return
        # one split and one time stamp per read: a per-line slice of what is left was
        # quadratic (64 KiB of `yes` took a third of a second)
        head = b"%s %s " % (rfc3339nano(self.clock()).encode(), self.stream.encode())
        full, partial = head + FULL + b" ", head + PARTIAL + b" "
        out = []
        lines = buf.split(b"\n")
        rest = lines.pop()            # after the last newline: not a line yet
        for line in lines:
            while len(line) > MAX_LINE:
                out.append(partial + line[:MAX_LINE] + b"\n")
                line = line[MAX_LINE:]
            out.append(full + line + b"\n")
        while len(rest) > MAX_LINE:
            out.append(partial + rest[:MAX_LINE] + b"\n")
            rest = rest[MAX_LINE:]
        self.buf = rest
        if out:
            _write_all(self.fd, b"".join(out))

    def close(self) -> None:
        """End of stream: an unterminated last line is written as a partial one."""
        if self.buf:
            _write_all(self.fd, format_line(self.clock(), self.stream, PARTIAL, self.buf))
            self.buf = b""


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


class Entry:
    """One log line: time, stream ("stdout" | "stderr"), partial flag, content."""

    __slots__ = ("time_ns", "stream", "partial", "content")

    def __init__(self, time_ns: int, stream: str, partial: bool, content: bytes):
        self.time_ns, self.stream, self.partial, self.content = time_ns, stream, partial, content

    def __eq__(self, other) -> bool:
        return isinstance(other, Entry) and self._key() == other._key()

    def __lt__(self, other: "Entry") -> bool:
        return self._key() < other._key()

    def __repr__(self) -> str:
        return f"Entry({self.timestamp}, {self.stream}, {'P' if self.partial else 'F'}, " \
               f"{self.content!r})"

    def _key(self) -> tuple:
        return (self.time_ns, self.stream, self.partial, self.content)

    @property
    def timestamp(self) -> str:
        return rfc3339nano(self.time_ns)


def parse_line(line: bytes) -> Entry:
    """One log line (without its newline). Raises ValueError if malformed."""
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr") or parts[2] not in (FULL, PARTIAL):
        raise ValueError(f"not a CRI log line: {line[:80]!r}")
    return Entry(parse_time(parts[0].decode()), parts[1].decode(), parts[2] == PARTIAL,
                 parts[3] if len(parts) > 3 else b"")


class Joiner:
    """Joins P pieces into whole lines, per stream (stdout and stderr interleave)."""

    def __init__(self):
        self.pending: dict[str, Entry] = {}

    def add(self, e: Entry) -> Entry | None:
        prev = self.pending.pop(e.stream, None)
        if prev is not None:
            e = Entry(prev.time_ns, e.stream, e.partial, prev.content + e.content)
        if e.partial:
            self.pending[e.stream] = e
            return None
        return e

    def flush(self) -> list[Entry]:
        out = sorted(self.pending.values())
        self.pending.clear()
        return [Entry(e.time_ns, e.stream, False, e.content) for e in out]


def _lines(data: bytes) -> Iterator[bytes]:
    for raw in data.split(b"\n"):
        if raw:
            yield raw


def _whole(j: Joiner, data: bytes) -> Iterator[Entry]:
    """The whole lines `data` completes, through the joiner; malformed lines are skipped."""
    for raw in _lines(data):
        try:
            e = j.add(parse_line(raw))
        except ValueError:
            continue
        if e is not None:
            yield e


def read_entries(path: str | os.PathLike, since_ns: int = 0, tail: int = -1,
                 streams: tuple[str, ...] = ("stdout", "stderr")) -> list[Entry]:
    """Whole lines of the log (P pieces joined), oldest first; `tail` >= 0 keeps the last N,
    `since_ns` drops lines older than that. Malformed lines are skipped."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    j = Joiner()
    out = list(_whole(j, data))
    out += j.flush()
    # time order, both streams merged (a line's pieces, joined, take its first piece's time);
    # stable: lines of the same instant keep the order they were written in
    out.sort(key=lambda e: e.time_ns)
    out = [e for e in out if e.stream in streams and e.time_ns >= since_ns]
    if tail >= 0:
        out = out[-tail:] if tail else []
    return out


def follow(path: str | os.PathLike, done: Callable[[], bool], since_ns: int = 0,
           tail: int = -1, interval: float = 0.2,
           streams: tuple[str, ...] = ("stdout", "stderr")) -> Iterator[Entry]:
    """`tail -f` by polling: yields what is there (tail/since applied), then new whole lines
    as they are written, until `done()` (the pod exited) and the file has been read to its end."""
    offset = 0
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        data = b""
    complete = data[:data.rfind(b"\n") + 1]
    offset = len(complete)
    j = Joiner()
    first = [e for e in _whole(j, complete) if e.stream in streams and e.time_ns >= since_ns]
    if tail >= 0:
        first = first[-tail:] if tail else []
    yield from first
    while True:
        finished = done()  # checked before reading: lines written before the end are not lost
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        complete = data[:data.rfind(b"\n") + 1]
        offset += len(complete)
        for e in _whole(j, complete):
            if e.stream in streams and e.time_ns >= since_ns:
                yield e
        if finished:
            for e in j.flush():
                if e.stream in streams:
                    yield e
            return
        time.sleep(interval)
