"""SPDY/3.1, the server's side: the multiplexed streams kubelet's streaming clients (kubectl,
crictl, through Go's moby/spdystream) open after an HTTP/1.1 `Upgrade: SPDY/3.1`.

No maintained SPDY library exists for Python, so the framing is here, in this one module, from
the SPDY/3.1 draft: control frames SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY,
HEADERS, WINDOW_UPDATE; data frames; name/value blocks compressed by one zlib stream per
direction with the SPDY/3 dictionary.

Flow control: we grant the peer windows as our side consumes its data (WINDOW_UPDATE), so a
conforming peer never overruns a stream's buffer. As a sender we honour the peer's windows once
it has shown it keeps them (a WINDOW_UPDATE or an INITIAL_WINDOW_SIZE setting): spdystream
keeps none and never sends one, and waiting for it would stall every transfer at 64 KiB.
"""

from __future__ import annotations

import socket
import struct
import threading
import zlib
from collections import deque

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = \
    1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
# RST_STREAM status codes
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, CANCEL, INTERNAL_ERROR, FLOW_CONTROL_ERROR, \
    STREAM_IN_USE, STREAM_ALREADY_CLOSED, FRAME_TOO_LARGE = 1, 2, 3, 5, 6, 7, 8, 9, 11
SETTINGS_INITIAL_WINDOW_SIZE = 7
DEFAULT_WINDOW = 65536
MAX_DATA = 16384                 # our DATA frames; a frame's length field allows 16 MiB
MAX_FRAME = 1 << 24
MAX_HEADER_BLOCK = 256 << 10     # decompressed: far beyond any header a client sends
MAX_CONTROL = 1 << 20            # a control frame's payload; past it the peer is broken
MAX_STREAMS = 1000               # open at once on one session; more are refused
# how long a sender waits for a peer that has not yet shown whether it keeps windows, before
# it takes it for one that does not (spdystream)
FLOW_PROBE = 0.25


def _dictionary() -> bytes:
    """The SPDY/3 header compression dictionary (the draft's section 2.6.10.1)."""
    words = ("options head post put delete trace accept accept-charset accept-encoding "
             "accept-language accept-ranges age allow authorization cache-control connection "
             "content-base content-encoding content-language content-length content-location "
             "content-md5 content-range content-type date etag expect expires from host "
             "if-match if-modified-since if-none-match if-range if-unmodified-since "
             "last-modified location max-forwards pragma proxy-authenticate "
             "proxy-authorization range referer retry-after server te trailer "
             "transfer-encoding upgrade user-agent vary via warning www-authenticate method get "
             "status").split() + ["200 OK"] + \
            "version HTTP/1.1 url public set-cookie keep-alive origin".split()
    head = b"".join(struct.pack(">I", len(w)) + w.encode() for w in words)
    tail = (b"100101201202205206300302303304305306307402405406407408409410411412413414415416417"
            b"502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
            b"400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server "
            b"Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug "
            b"Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,"
            b"image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
            b"text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset="
            b"iso-8859-1,utf-,*,enq=0.")
    return head + tail


DICTIONARY = _dictionary()
assert len(DICTIONARY) == 1423


class ProtocolError(Exception):
    """The peer broke the protocol: the session ends with GOAWAY PROTOCOL_ERROR."""


# -- name/value header blocks ------------------------------------------------------------------

def encode_headers(headers: dict[str, str]) -> bytes:
    out = [struct.pack(">I", len(headers))]
    for k, v in headers.items():
        kb, vb = k.lower().encode(), v.encode()
        out += [struct.pack(">I", len(kb)), kb, struct.pack(">I", len(vb)), vb]
    return b"".join(out)


def decode_headers(block: bytes) -> dict[str, str]:
    """A decompressed name/value block; several values of one name (NUL-separated) are kept
    as the first, as kubelet reads them (Header.Get)."""
    try:
        (n,), pos = struct.unpack_from(">I", block), 4
        headers: dict[str, str] = {}
        for _ in range(n):
            (ln,) = struct.unpack_from(">I", block, pos)
            name = block[pos + 4:pos + 4 + ln].decode("latin-1").lower()
            pos += 4 + ln
            (lv,) = struct.unpack_from(">I", block, pos)
            value = block[pos + 4:pos + 4 + lv].decode("latin-1")
            pos += 4 + lv
            if pos > len(block):
                raise ProtocolError("truncated header block")
            headers.setdefault(name, value.split("\0")[0])
        return headers
    except struct.error:
        raise ProtocolError("truncated header block") from None


class HeaderCodec:
    """The session's two zlib streams: one compressor for what we send, one decompressor for
    what we receive, both primed with the dictionary."""

    def __init__(self):
        self._c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8,
                                   zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
        self._d = zlib.decompressobj(15, zdict=DICTIONARY)

    def pack(self, headers: dict[str, str]) -> bytes:
        return self._c.compress(encode_headers(headers)) + self._c.flush(zlib.Z_SYNC_FLUSH)

    def unpack(self, data: bytes) -> dict[str, str]:
        try:
            block = self._d.decompress(data, MAX_HEADER_BLOCK)
        except zlib.error as e:
            raise ProtocolError(f"header block: {e}") from None
        if self._d.unconsumed_tail:
            raise ProtocolError("header block too large")
        return decode_headers(block)


def control(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


def data_frame(sid: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">II", sid & 0x7FFFFFFF, (flags << 24) | len(payload)) + payload


# -- streams and the session -------------------------------------------------------------------

class Stream:
    """One stream the peer opened. Reads block until data, the peer's FIN (b"") or the end of
    the session; writes go out at once (the socket's send timeout bounds a peer that stops
    reading)."""

    def __init__(self, session: "Session", sid: int, headers: dict[str, str], fin: bool):
        self.session = session
        self.id = sid
        self.headers = headers
        self._cv = threading.Condition(session.lock)
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._unacked = 0                  # consumed, not yet granted back to the peer
        self.remote_closed = fin           # the peer's FIN (or RST): no more data comes
        self.local_closed = False          # our FIN
        self.reset = False
        self.send_window = session.initial_send_window
        self.reading = True                # False: nobody reads it; what comes is dropped

    @property
    def type(self) -> str:
        return self.headers.get("streamtype", "")

    # reading (data the peer sent)
    def _feed(self, data: bytes, fin: bool) -> None:   # under the session lock
        if data and self.reading:
            self._chunks.append(data)
            self._buffered += len(data)
        if fin:
            self.remote_closed = True
        self._cv.notify_all()

    def read(self, timeout: float | None = None) -> bytes:
        """The next chunk; b"" once the peer has finished (or the session ended)."""
        with self._cv:
            if not self._cv.wait_for(lambda: self._chunks or self.remote_closed
                                     or self.session.ended, timeout):
                raise TimeoutError(f"stream {self.id}: nothing to read in {timeout}s")
            if not self._chunks:
                return b""
            chunk = self._chunks.popleft()
            self._buffered -= len(chunk)
            self._cv.notify_all()          # a frame reader held back by a full buffer
            self._unacked += len(chunk)
            grant = self._unacked if self._unacked >= DEFAULT_WINDOW // 2 else 0
            if grant:
                self._unacked = 0
        self.session.consumed(self.id, len(chunk), grant)
        return chunk

    # writing
    def reply(self, headers: dict[str, str] | None = None) -> None:
        self.session.send_headers(SYN_REPLY, self.id, headers or {}, 0)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = self.session.reserve(self, min(len(view), MAX_DATA))
            if n == 0:
                raise BrokenPipeError(f"stream {self.id} is closed")
            self.session.send(data_frame(self.id, 0, bytes(view[:n])))
            view = view[n:]

    def close(self) -> None:
        """Our half-close (FIN); idempotent."""
        with self.session.lock:
            if self.local_closed or self.reset or self.session.ended:
                return
            self.local_closed = True
            self.session._forget_if_done(self)
        try:
            self.session.send(data_frame(self.id, FLAG_FIN, b""))
        except BrokenPipeError:
            pass

    def cancel(self, status: int = CANCEL) -> None:
        self.session.reset(self.id, status)

    def ignore(self) -> None:
        """Nothing will read this stream (an output stream, or a session that has finished):
        what the peer still sends on it is dropped, never buffered."""
        with self._cv:
            self.reading = False
            self._chunks.clear()
            self._buffered = 0
            self._cv.notify_all()


class Session:
    """A server-side SPDY/3.1 session on an upgraded connection. `serve()` reads frames in the
    calling thread until the connection ends; each stream the peer opens goes to `on_stream`
    (called in that thread: it must not block)."""

    def __init__(self, sock: socket.socket, on_stream, initial: bytes = b"",
                 max_buffer: int = 4 << 20):
        self.sock = sock
        self.on_stream = on_stream
        self.lock = threading.Lock()
        self.wlock = threading.Lock()
        self.codec = HeaderCodec()
        self.streams: dict[int, Stream] = {}
        self.last_peer_id = 0
        self.ended = False
        self.going_away = False
        self._inbuf = bytearray(initial)
        self.max_buffer = max_buffer           # per stream, for a peer that keeps no windows
        self.initial_send_window = DEFAULT_WINDOW
        self.session_send_window = DEFAULT_WINDOW
        self.peer_keeps_windows: bool | None = None
        self._window_cv = threading.Condition(self.lock)
        self._session_unacked = 0

    # -- sending -------------------------------------------------------------------------------
    def send(self, frame: bytes) -> None:
        with self.wlock:
            try:
                self.sock.sendall(frame)
            except OSError:
                self._end()
                raise BrokenPipeError("the client is gone") from None

    def send_headers(self, kind: int, sid: int, headers: dict[str, str], flags: int) -> None:
        # compress and send under one lock: the peer inflates blocks in the order we deflate
        with self.wlock:
            frame = control(kind, flags, struct.pack(">I", sid) + self.codec.pack(headers))
            try:
                self.sock.sendall(frame)
            except OSError:
                self._end()
                raise BrokenPipeError("the client is gone") from None

    def reset(self, sid: int, status: int) -> None:
        with self.lock:
            s = self.streams.pop(sid, None)
            if s is not None:
                s.reset = True
                s.remote_closed = True
                s._cv.notify_all()
        try:
            self.send(control(RST_STREAM, 0, struct.pack(">II", sid, status)))
        except BrokenPipeError:
            pass

    def consumed(self, sid: int, n: int, stream_grant: int) -> None:
        """`n` bytes of stream `sid` were read: WINDOW_UPDATEs for the stream (`stream_grant`,
        when its reader is half a window behind) and for the session, which counts every
        byte of every stream (a few small streams must not use its window up for good)."""
        frames = control(WINDOW_UPDATE, 0, struct.pack(">II", sid, stream_grant)) \
            if stream_grant else b""
        with self.lock:
            self._session_unacked += n
            whole = self._session_unacked
            if whole >= DEFAULT_WINDOW // 2:
                self._session_unacked = 0
                frames += control(WINDOW_UPDATE, 0, struct.pack(">II", 0, whole))
        if frames:
            try:
                self.send(frames)
            except BrokenPipeError:
                pass

    def reserve(self, s: Stream, want: int) -> int:
        """How many bytes of `want` may go out on `s` now (0: the stream or session is over),
        waiting for the peer's windows if it keeps them."""
        with self.lock:
            while True:
                if self.ended or s.reset or s.local_closed:
                    return 0
                if self.peer_keeps_windows is False:
                    return want
                room = min(s.send_window, self.session_send_window)
                if room > 0:
                    n = min(room, want)
                    s.send_window -= n
                    self.session_send_window -= n
                    return n
                if self.peer_keeps_windows is None:
                    if not self._window_cv.wait(FLOW_PROBE) and self.peer_keeps_windows is None:
                        self.peer_keeps_windows = False
                else:
                    self._window_cv.wait(30)

    def close(self, status: int = 0) -> None:
        """GOAWAY, then the end of our side of the connection."""
        with self.lock:
            if self.going_away:
                return
            self.going_away = True
        try:
            self.send(control(GOAWAY, 0, struct.pack(">II", self.last_peer_id, status)))
        except BrokenPipeError:
            pass

    def _end(self) -> None:
        with self.lock:
            if self.ended:
                return
            self.ended = True
            for s in self.streams.values():
                s.remote_closed = True
                s._cv.notify_all()
            self._window_cv.notify_all()

    # -- receiving -----------------------------------------------------------------------------
    def _read(self, n: int) -> bytes:
        while len(self._inbuf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._inbuf)))
            if not chunk:
                raise EOFError
            self._inbuf += chunk
        out = bytes(self._inbuf[:n])
        del self._inbuf[:n]
        return out

    def serve(self) -> None:
        try:
            while True:
                head = self._read(8)
                (first, second) = struct.unpack(">II", head)
                flags, length = second >> 24, second & 0xFFFFFF
                if first & 0x80000000 and length > MAX_CONTROL:
                    raise ProtocolError(f"control frame of {length} bytes")
                payload = self._read(length)
                if first & 0x80000000:
                    version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
                    if version != VERSION:
                        raise ProtocolError(f"SPDY version {version}")
                    self._on_control(kind, flags, payload)
                else:
                    self._on_data(first & 0x7FFFFFFF, flags, payload)
        except (ProtocolError, struct.error, ValueError):   # malformed: short or bad frames
            self.close(1)
        except (EOFError, OSError):
            pass
        finally:
            self._end()

    def _on_data(self, sid: int, flags: int, payload: bytes) -> None:
        with self.lock:
            s = self.streams.get(sid)
            if s is not None and not s.remote_closed:
                # a peer that keeps no windows is held back through TCP instead (as
                # spdystream itself does): this thread waits while the stream's reader is
                # behind by more than max_buffer
                s._cv.wait_for(lambda: s._buffered < self.max_buffer or s.remote_closed
                               or self.ended or not s.reading)
                s._feed(payload, bool(flags & FLAG_FIN))
                if flags & FLAG_FIN:
                    self._forget_if_done(s)
                return
        if s is None:
            self.reset(sid, INVALID_STREAM)
        else:
            self.reset(sid, STREAM_ALREADY_CLOSED)

    def _forget_if_done(self, s: Stream) -> None:   # under the lock
        if s.remote_closed and s.local_closed:
            self.streams.pop(s.id, None)

    def _on_control(self, kind: int, flags: int, p: bytes) -> None:
        if kind == SYN_STREAM:
            if len(p) < 10:
                raise ProtocolError("short SYN_STREAM")
            sid, _assoc = struct.unpack_from(">II", p)
            sid &= 0x7FFFFFFF
            headers = self.codec.unpack(p[10:])
            if sid % 2 == 0 or sid <= self.last_peer_id:
                self.reset(sid, PROTOCOL_ERROR)
                return
            self.last_peer_id = sid
            if self.going_away or len(self.streams) >= MAX_STREAMS:
                self.reset(sid, REFUSED_STREAM)
                return
            s = Stream(self, sid, headers, bool(flags & FLAG_FIN))
            if flags & FLAG_UNIDIRECTIONAL:
                s.local_closed = True
            with self.lock:
                self.streams[sid] = s
            self.on_stream(s)
        elif kind in (SYN_REPLY, HEADERS):
            sid = struct.unpack_from(">I", p)[0] & 0x7FFFFFFF
            extra = self.codec.unpack(p[4:])   # always inflate: the zlib stream must advance
            with self.lock:
                s = self.streams.get(sid)
                if s is not None:
                    s.headers.update(extra)
                    if flags & FLAG_FIN:
                        s._feed(b"", True)
        elif kind == RST_STREAM:
            sid = struct.unpack_from(">I", p)[0] & 0x7FFFFFFF
            with self.lock:
                s = self.streams.pop(sid, None)
                if s is not None:
                    s.reset = True
                    s._feed(b"", True)
                self._window_cv.notify_all()
        elif kind == SETTINGS:
            (n,) = struct.unpack_from(">I", p)
            for i in range(n):
                idflags, value = struct.unpack_from(">II", p, 4 + 8 * i)
                if idflags & 0xFFFFFF == SETTINGS_INITIAL_WINDOW_SIZE:
                    with self.lock:
                        delta = value - self.initial_send_window
                        self.initial_send_window = value
                        for s in self.streams.values():
                            s.send_window += delta
                        self.peer_keeps_windows = True
                        self._window_cv.notify_all()
        elif kind == PING:
            self.send(control(PING, 0, p[:4]))        # the peer's (odd) pings: echo them
        elif kind == GOAWAY:
            with self.lock:
                self.going_away = True
        elif kind == WINDOW_UPDATE:
            sid, delta = struct.unpack_from(">II", p)
            sid &= 0x7FFFFFFF
            delta &= 0x7FFFFFFF
            with self.lock:
                self.peer_keeps_windows = True
                if sid == 0:
                    self.session_send_window += delta
                elif sid in self.streams:
                    self.streams[sid].send_window += delta
                self._window_cv.notify_all()
        # other (unknown, CREDENTIAL) control frames are ignored, as the draft says
