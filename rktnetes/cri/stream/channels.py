"""The remotecommand streams of an exec or attach, from either transport: SPDY streams named
by their `streamType` header, or WebSocket channels 0-4 (stdin, stdout, stderr, error,
resize). Both end in a remotecommand.Streams."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

from . import spdy, wschannel
from .remotecommand import Streams

STREAM_CREATION_TIMEOUT = 30.0       # kubelet's default
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
V1, V2, V3, V4, V5 = "channel.k8s.io", "v2.channel.k8s.io", "v3.channel.k8s.io", \
    "v4.channel.k8s.io", "v5.channel.k8s.io"
SPDY_PROTOCOLS = [V4, V3, V2, V1]
WS_PROTOCOLS = [V5, V4, "v4.base64.channel.k8s.io", V1, "base64.channel.k8s.io", ""]


@dataclass
class Wanted:
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


def protocol_version(name: str) -> int:
    return int(name[1]) if name[:1] == "v" and name[1:2].isdigit() else 1


class ResizeDecoder:
    """The resize stream: JSON objects {"Width": w, "Height": h} one after another (kubelet
    decodes them with a json.Decoder, so no separator is needed)."""

    def __init__(self):
        self.buf = ""
        self.dec = json.JSONDecoder()

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        self.buf += data.decode(errors="replace")
        out = []
        while True:
            self.buf = self.buf.lstrip()
            if not self.buf:
                return out
            try:
                obj, end = self.dec.raw_decode(self.buf)
            except ValueError:
                if len(self.buf) > 4096:     # no object will come of this
                    self.buf = ""
                return out
            self.buf = self.buf[end:]
            if isinstance(obj, dict):
                try:
                    out.append((int(obj.get("Width", 0)), int(obj.get("Height", 0))))
                except (TypeError, ValueError):
                    pass


def _resize_reader(read) -> callable:
    dec = ResizeDecoder()
    pending: list[tuple[int, int]] = []

    def nxt():
        while not pending:
            data = read()
            if not data:
                return None
            pending.extend(dec.feed(data))
        return pending.pop(0)
    return nxt


# -- SPDY --------------------------------------------------------------------------------------

class SpdyStreams:
    """Collects the streams a remotecommand client opens on a SPDY session; `on_stream` is the
    session's callback (it replies at once, as kubelet's does)."""

    def __init__(self, protocol: str, wanted: Wanted):
        self.version = protocol_version(protocol)
        self.wanted = wanted
        self.cv = threading.Condition()
        self.by_type: dict[str, spdy.Stream] = {}

    def expected(self) -> set[str]:
        w = self.wanted
        out = {"error"}
        if w.stdin:
            out.add("stdin")
        if w.stdout:
            out.add("stdout")
        if w.stderr and not w.tty:
            out.add("stderr")
        if w.tty and self.version >= 3:
            out.add("resize")
        return out

    def on_stream(self, s: spdy.Stream) -> None:
        kind = s.type
        known = {"stdin", "stdout", "stderr", "error", "resize"}
        try:
            s.reply()
        except BrokenPipeError:
            return
        if kind not in known:
            s.cancel(spdy.REFUSED_STREAM)
            return
        with self.cv:
            if kind in self.by_type:          # kubelet refuses a second one too
                s.cancel(spdy.PROTOCOL_ERROR)
                return
            if kind in ("stdout", "stderr", "error") or (kind == "stdin" and not self.wanted.stdin) \
                    or (kind == "resize" and not self.wanted.tty):
                s.ignore()                    # nothing of the client's is read on these
            self.by_type[kind] = s
            self.cv.notify_all()

    def wait(self, session: spdy.Session, timeout: float = STREAM_CREATION_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        with self.cv:
            while not self.expected() <= set(self.by_type):
                left = deadline - time.monotonic()
                if left <= 0 or session.ended:
                    return False
                self.cv.wait(min(left, 0.5))
        return True

    def streams(self, session: spdy.Session) -> Streams:
        b = self.by_type
        w = self.wanted

        def finish(status: bytes) -> None:
            for k in ("stdout", "stderr"):
                if k in b:
                    b[k].close()
            err = b.get("error")
            if err is not None:
                try:
                    if status:
                        err.write(status)
                finally:
                    err.close()
            for k in ("stdin", "resize"):   # nothing more is read from these
                if k in b:
                    b[k].ignore()
                    b[k].close()

        stdout = b["stdout"].write if "stdout" in b else None
        return Streams(
            stdin=b["stdin"].read if w.stdin and "stdin" in b else None,
            stdout=stdout,
            # with a terminal there is no stderr stream: an attached app's stderr (it has no
            # terminal here) goes with its stdout, as a terminal would show it
            stderr=b["stderr"].write if "stderr" in b else stdout if w.tty else None,
            resizes=_resize_reader(b["resize"].read) if "resize" in b else None,
            finish=finish, json_status=self.version >= 4)


# -- WebSocket ---------------------------------------------------------------------------------

def ws_streams(conn: wschannel.Connection, wanted: Wanted) -> Streams:
    version = protocol_version(conn.protocol_name.replace("base64.", ""))

    def stdin() -> bytes:
        return conn.read(STDIN)

    def finish(status: bytes) -> None:
        if status:
            conn.send(ERROR, status)
        conn.close()

    # tell the client the connection is up: an empty message on the lowest channel we write
    # (as kubelet does; clients wait for it)
    first = STDOUT if wanted.stdout else STDERR if wanted.stderr and not wanted.tty else ERROR
    conn.readable = {c for c, on in ((STDIN, wanted.stdin), (RESIZE, wanted.tty)) if on}
    conn.send(first, b"")
    stdout = (lambda d: conn.send(STDOUT, d)) if wanted.stdout else None
    return Streams(
        stdin=stdin if wanted.stdin else None,
        stdout=stdout,
        stderr=(lambda d: conn.send(STDERR, d)) if wanted.stderr and not wanted.tty
        else stdout if wanted.tty else None,
        resizes=_resize_reader(lambda: conn.read(RESIZE)) if wanted.tty else None,
        finish=finish, json_status=version >= 4)
