"""A SPDY/3.1 client for the tests, written from the protocol draft ("SPDY Protocol - Draft 3.1",
draft-mbelshe-httpbis-spdy) and from the way Kubernetes clients use it, independently of the
server in rktnetes/cri/stream/: nothing of rktnetes is imported.

The use is the one of kubectl/crictl (moby/spdystream, k8s.io/apimachinery httpstream/spdy):
`POST` with `Upgrade: SPDY/3.1` and one `X-Stream-Protocol-Version` per protocol offered; after
the `101 Switching Protocols` the client opens streams (odd ids) whose headers say what each is
(`streamType: stdout`, ...), the server answers each with a SYN_REPLY, and data flows both ways.

Unlike spdystream this client keeps SPDY/3.1 flow control strictly as a sender: it never sends
more DATA than the server's stream and session windows allow, so a server that forgets to send
WINDOW_UPDATE stalls a writer here. As a receiver it grants stream windows as the application
reads, and the session window as frames arrive (the data is then buffered here, so an unread
stream cannot starve the others); a server that overruns the windows is tolerated and noted in
`SpdyClient.violations`, as is anything else it does against the draft that a client can
survive.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import zlib
from typing import NamedTuple
from urllib.parse import urlsplit

__all__ = ["HandshakeError", "SpdyClient", "Stream", "DICTIONARY"]

VERSION = 3

# control frame types
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS = 1, 2, 3, 4
PING, GOAWAY, HEADERS, WINDOW_UPDATE = 6, 7, 8, 9

# flags
FLAG_FIN = 0x01                 # DATA, SYN_STREAM, SYN_REPLY, HEADERS
FLAG_UNIDIRECTIONAL = 0x02      # SYN_STREAM
FLAG_SETTINGS_CLEAR = 0x01      # SETTINGS

# RST_STREAM status codes
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, UNSUPPORTED_VERSION = 1, 2, 3, 4
CANCEL, INTERNAL_ERROR, FLOW_CONTROL_ERROR, STREAM_IN_USE = 5, 6, 7, 8
STREAM_ALREADY_CLOSED, FRAME_TOO_LARGE = 9, 11

# GOAWAY status codes
GOAWAY_OK, GOAWAY_PROTOCOL_ERROR, GOAWAY_INTERNAL_ERROR = 0, 1, 2

# SETTINGS ids
SETTINGS_MAX_CONCURRENT_STREAMS = 4
SETTINGS_INITIAL_WINDOW_SIZE = 7

DEFAULT_WINDOW = 65536          # initial stream and session windows (SPDY/3.1)
MAX_WINDOW = 0x7FFFFFFF
MAX_DATA_FRAME = 16384          # what this client puts in one DATA frame
_GRANT_AT = DEFAULT_WINDOW // 2  # send a WINDOW_UPDATE once this much is consumed


# The zlib dictionary of SPDY/3 header compression (section 2.6.10.1 of the draft): 65 words,
# each preceded by its length as a 32-bit big-endian integer, then a run of plain text.
_DICT_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type",
    "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
    "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
    "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
    "vary", "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
    "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin")
_DICT_TEXT = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information" "204 No Content" "301 Moved Permanently"
    "400 Bad Request" "401 Unauthorized" "403 Forbidden" "404 Not Found"
    "500 Internal Server Error" "501 Not Implemented" "503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,"
    "text/plain,text/javascript,public" "private" "max-age=" "gzip,deflate,sdch"
    "charset=utf-8" "charset=iso-8859-1,utf-,*,enq=0.")
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode("ascii")
                      for w in _DICT_WORDS) + _DICT_TEXT.encode("ascii")
assert len(DICTIONARY) == 1423 and zlib.adler32(DICTIONARY) == 0xE3C6A7C2  # zlib DICTID


class HandshakeError(Exception):
    """The server answered the upgrade request with something other than 101."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None):
        super().__init__(f"SPDY upgrade refused: HTTP {status}: {body[:300]!r}")
        self.status = status
        self.body = body
        self.headers = headers or {}


class ProtocolError(Exception):
    """The peer broke the framing so that the session cannot go on."""


# -- framing ---------------------------------------------------------------------------------

class Frame(NamedTuple):
    control: bool
    kind: int           # the type of a control frame, the stream id of a data frame
    flags: int
    payload: bytes
    version: int = VERSION


def pack_control(ftype: int, flags: int, payload: bytes = b"") -> bytes:
    if len(payload) > 0xFFFFFF:
        raise ValueError("control frame payload over 2^24-1 bytes")
    return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(payload)) + payload


def pack_data(stream_id: int, flags: int, data: bytes = b"") -> bytes:
    if len(data) > 0xFFFFFF:
        raise ValueError("data frame payload over 2^24-1 bytes")
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(data)) + bytes(data)


def pack_rst_stream(stream_id: int, status: int) -> bytes:
    return pack_control(RST_STREAM, 0, struct.pack(">II", stream_id & 0x7FFFFFFF, status))


def pack_window_update(stream_id: int, delta: int) -> bytes:
    return pack_control(WINDOW_UPDATE, 0,
                        struct.pack(">II", stream_id & 0x7FFFFFFF, delta & 0x7FFFFFFF))


def pack_ping(ping_id: int) -> bytes:
    return pack_control(PING, 0, struct.pack(">I", ping_id))


def pack_goaway(last_good: int, status: int = GOAWAY_OK) -> bytes:
    return pack_control(GOAWAY, 0, struct.pack(">II", last_good & 0x7FFFFFFF, status))


def pack_settings(values: dict[int, int], flags: int = 0) -> bytes:
    body = struct.pack(">I", len(values)) + b"".join(
        struct.pack(">II", sid & 0xFFFFFF, v) for sid, v in values.items())
    return pack_control(SETTINGS, flags, body)


def _text(v) -> str:
    if isinstance(v, (list, tuple)):
        return "\0".join(str(x) for x in v)
    return v if isinstance(v, str) else str(v)


def encode_header_block(headers) -> bytes:
    """The uncompressed name/value block; `headers` is a dict or a list of pairs. Names are
    lowercased; a list value becomes NUL-separated values."""
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
    out = [struct.pack(">I", len(pairs))]
    for name, value in pairs:
        n = _text(name).lower().encode("utf-8")
        v = _text(value).encode("utf-8")
        if not n:
            raise ValueError("empty header name")
        out += [struct.pack(">I", len(n)), n, struct.pack(">I", len(v)), v]
    return b"".join(out)


def decode_header_block(raw: bytes) -> list[tuple[str, str]]:
    def take(pos: int, n: int) -> tuple[bytes, int]:
        if pos + n > len(raw):
            raise ProtocolError("header block truncated")
        return raw[pos:pos + n], pos + n

    count_b, pos = take(0, 4)
    (count,) = struct.unpack(">I", count_b)
    pairs = []
    for _ in range(count):
        b, pos = take(pos, 4)
        name, pos = take(pos, struct.unpack(">I", b)[0])
        b, pos = take(pos, 4)
        value, pos = take(pos, struct.unpack(">I", b)[0])
        pairs.append((name.decode("utf-8", "replace"), value.decode("utf-8", "replace")))
    if pos != len(raw):
        raise ProtocolError(f"{len(raw) - pos} bytes after the header block")
    return pairs


class HeaderCompressor:
    """One deflate stream for all the header blocks one side sends in a session."""

    def __init__(self):
        self._z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8,
                                   zlib.Z_DEFAULT_STRATEGY, DICTIONARY)

    def compress(self, headers) -> bytes:
        return self._z.compress(encode_header_block(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """One inflate stream for all the header blocks one side receives in a session."""

    def __init__(self):
        self._z = zlib.decompressobj(zdict=DICTIONARY)

    def decompress(self, data: bytes) -> list[tuple[str, str]]:
        try:
            raw = self._z.decompress(data)
        except zlib.error as e:
            raise ProtocolError(f"header block does not inflate: {e}") from None
        return decode_header_block(raw)


class FrameReader:
    """Frames from a socket, starting with bytes already read past the HTTP response."""

    def __init__(self, sock: socket.socket, initial: bytes = b""):
        self._sock = sock
        self._buf = bytearray(initial)

    def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            chunk = self._sock.recv(max(262144, n - len(self._buf)))
            if not chunk:
                return False
            self._buf += chunk
        return True

    def next_frame(self) -> Frame | None:
        """The next frame, None at a clean end of the connection."""
        if not self._fill(8):
            if self._buf:
                raise ProtocolError(f"connection ended inside a frame header ({len(self._buf)} B)")
            return None
        w1, w2 = struct.unpack_from(">II", self._buf)
        length = w2 & 0xFFFFFF
        if not self._fill(8 + length):
            raise ProtocolError("connection ended inside a frame")
        payload = bytes(self._buf[8:8 + length])
        del self._buf[:8 + length]
        if w1 & 0x80000000:
            return Frame(True, w1 & 0xFFFF, w2 >> 24, payload, (w1 >> 16) & 0x7FFF)
        return Frame(False, w1 & 0x7FFFFFFF, w2 >> 24, payload)


def _parse_http_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ConnectionError(f"not an HTTP response: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" not in line:
            continue
        name, value = line.split(":", 1)
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return int(parts[1]), headers


def _dechunk(body: bytes) -> bytes:
    out, pos = bytearray(), 0
    try:
        while True:
            eol = body.index(b"\r\n", pos)
            size = int(body[pos:eol].split(b";")[0], 16)
            if size == 0:
                return bytes(out)
            out += body[eol + 2:eol + 2 + size]
            pos = eol + 2 + size + 2
    except ValueError:
        return bytes(out) if out else body


# -- the session -----------------------------------------------------------------------------

class SpdyClient:
    """One SPDY/3.1 session over an upgraded HTTP/1.1 connection."""

    def __init__(self, url: str, protocols: list[str], timeout: float = 10.0):
        parts = urlsplit(url)
        if parts.scheme not in ("http", ""):
            raise ValueError(f"only http:// URLs are supported, not {url!r}")
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = parts.netloc.rsplit("@", 1)[-1]

        self.url = url
        self.timeout = timeout
        self.protocol = ""
        self.response_headers: dict[str, str] = {}
        self.violations: list[str] = []        # what the server did against the draft
        self.goaway: tuple[int, int] | None = None   # (last good stream id, status) received
        self.peer_settings: dict[int, int] = {}
        self.refused: list[int] = []           # server-opened streams refused

        self._cv = threading.Condition()       # stream state, windows, pings
        self._wlock = threading.Lock()         # the socket's write side, the compressor
        self._plock = threading.Lock()         # _pending
        self._pending: list[bytes] = []        # control frames waiting for the write side
        self._streams: dict[int, Stream] = {}
        self._done_ids: set[int] = set()       # streams that ended here; late frames are fine
        self._next_id = 1
        self._next_ping = 1
        self._pings: dict[int, float | None] = {}
        self._initial_send_window = DEFAULT_WINDOW
        self._send_window = DEFAULT_WINDOW     # the server's session window for our DATA
        self._recv_window = DEFAULT_WINDOW     # our session window as the server sees it
        self._recv_unacked = 0
        self._dead = False                     # no more frames either way
        self._local_close = False
        self._sock_lock = threading.Lock()
        self._sock_shut = False
        self._eof = threading.Event()
        self._compressor = HeaderCompressor()
        self._decompressor = HeaderDecompressor()

        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            leftover = self._handshake(sock, host_header, target, protocols, timeout)
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._reader = FrameReader(sock, leftover)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"spdyclient-reader:{host}:{port}")
        self._thread.start()

    # -- the upgrade

    def _handshake(self, sock, host_header, target, protocols, timeout) -> bytes:
        lines = [f"POST {target} HTTP/1.1", f"Host: {host_header}", "Connection: Upgrade",
                 "Upgrade: SPDY/3.1"]
        lines += [f"X-Stream-Protocol-Version: {p}" for p in protocols]
        lines += ["Content-Length: 0", "", ""]
        sock.sendall("\r\n".join(lines).encode("latin-1"))
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            if len(buf) > 1 << 20:
                raise ConnectionError("upgrade response header over 1 MiB")
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed during the upgrade ({bytes(buf)!r})")
            buf += chunk
        head, rest = bytes(buf).split(b"\r\n\r\n", 1)
        status, headers = _parse_http_head(head)
        if status != 101:
            raise HandshakeError(status, self._read_body(sock, headers, rest, timeout), headers)
        self.response_headers = headers
        self.protocol = headers.get("x-stream-protocol-version", "")
        return rest

    @staticmethod
    def _read_body(sock, headers, rest: bytes, timeout: float) -> bytes:
        body = bytearray(rest)
        try:
            if "content-length" in headers:
                n = int(headers["content-length"])
                sock.settimeout(timeout)
                while len(body) < n:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                return bytes(body[:n])
            sock.settimeout(min(timeout, 2.0))
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
        except (OSError, ValueError):
            pass
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return _dechunk(bytes(body))
        return bytes(body)

    # -- public

    @property
    def closed(self) -> bool:
        return self._eof.is_set() or self._local_close

    def wait_closed(self, timeout: float) -> bool:
        """True once the connection is gone: the server closed it (or we did)."""
        return self._eof.wait(timeout)

    def open_stream(self, headers: dict[str, str], fin: bool = False) -> Stream:
        flags = FLAG_FIN if fin else 0
        with self._wlock:
            with self._cv:
                if self._dead or self._local_close:
                    raise BrokenPipeError("the SPDY connection is closed")
                if self.goaway is not None:
                    raise ConnectionError(f"the server sent GOAWAY {self.goaway}")
                sid = self._next_id
                if sid > MAX_WINDOW:
                    raise ConnectionError("stream ids exhausted")
                self._next_id += 2
                stream = Stream(self, sid, dict(headers), fin)
                self._streams[sid] = stream
            # priority 0 (top 3 bits), no associated stream, slot 0
            payload = struct.pack(">IIBB", sid, 0, 0, 0) + self._compressor.compress(headers)
            self._flush_pending_locked()
            self._sock.sendall(pack_control(SYN_STREAM, flags, payload))
        self._drain_pending()
        return stream

    def ping(self, timeout: float = 10.0) -> float:
        """Send a PING; the round trip time in seconds once the server echoes it."""
        with self._cv:
            pid = self._next_ping
            self._next_ping += 2
            self._pings[pid] = None
        start = time.monotonic()
        self._send_control(pack_ping(pid))
        deadline = start + timeout
        with self._cv:
            while self._pings.get(pid) is None:
                if self._dead:
                    raise ConnectionError("connection closed before the PING came back")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no answer to PING {pid} in {timeout}s")
                self._cv.wait(left)
            return self._pings.pop(pid) - start

    def close(self) -> None:
        """GOAWAY (OK), then close the socket. Idempotent."""
        with self._cv:
            if self._local_close:
                return
            self._local_close = True
            send_goaway = not self._dead
        if send_goaway and self._wlock.acquire(timeout=2.0):
            try:
                self._flush_pending_locked()
                self._sock.sendall(pack_goaway(0, GOAWAY_OK))
            except OSError:
                pass
            finally:
                self._wlock.release()
        self._end_session()
        self._shut_socket()
        if threading.current_thread() is not self._thread:
            self._thread.join(2.0)

    def abort(self) -> None:
        """Close the socket at once, no GOAWAY: a client that vanishes."""
        with self._cv:
            self._local_close = True
        self._end_session()
        self._shut_socket()
        if threading.current_thread() is not self._thread:
            self._thread.join(2.0)

    def __enter__(self) -> SpdyClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SpdyClient {self.url} protocol={self.protocol!r} closed={self.closed}>"

    # -- writing

    def _flush_pending_locked(self) -> None:
        """With _wlock held: send the queued control frames."""
        with self._plock:
            frames, self._pending = self._pending, []
        if frames and not self._sock_shut:
            self._sock.sendall(b"".join(frames))

    def _drain_pending(self) -> None:
        """After releasing _wlock: whoever finds frames queued and the lock free sends them,
        so that a thread blocked in sendall never holds up the reader's PING answers."""
        while True:
            with self._plock:
                if not self._pending:
                    return
            if not self._wlock.acquire(blocking=False):
                return           # the holder drains after its own release
            try:
                self._flush_pending_locked()
            except OSError:
                pass
            finally:
                self._wlock.release()

    def _send_control(self, *frames: bytes) -> None:
        """Queue control frames and send them if the write side is free; never blocks on a
        writer that is stuck in sendall."""
        if not frames:
            return
        with self._plock:
            if self._sock_shut:
                return
            self._pending.extend(frames)
        self._drain_pending()

    def _send_blocking(self, frame: bytes) -> None:
        self._wlock.acquire()
        try:
            if self._sock_shut:
                raise BrokenPipeError("the SPDY connection is closed")
            self._flush_pending_locked()
            self._sock.sendall(frame)
        finally:
            self._wlock.release()
        self._drain_pending()

    def _shut_socket(self) -> None:
        with self._sock_lock:
            if self._sock_shut:
                return
            self._sock_shut = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    def _end_session(self) -> None:
        with self._cv:
            self._dead = True
            self._cv.notify_all()

    # -- reading

    def _violation(self, msg: str) -> None:
        self.violations.append(msg)

    def _run(self) -> None:
        try:
            while True:
                frame = self._reader.next_frame()
                if frame is None:
                    break
                if frame.control:
                    self._on_control(frame)
                else:
                    self._on_data(frame)
        except OSError:
            pass
        except ProtocolError as e:
            if not self._local_close:
                self._violation(f"fatal: {e}")
                self._send_control(pack_goaway(0, GOAWAY_PROTOCOL_ERROR))
        except Exception as e:  # a bug here: end the session rather than hang the tests
            self._violation(f"client error: {e!r}")
        finally:
            self._end_session()
            self._shut_socket()
            self._eof.set()

    def _stream_for(self, sid: int, what: str) -> Stream | None:
        s = self._streams.get(sid)
        if s is None and sid not in self._done_ids:
            self._violation(f"{what} for stream {sid}, which is not open")
        return s

    def _retire(self, s: Stream, quiet: bool = False) -> None:
        """With _cv held: the stream is over. `quiet`: the server may not know it yet, so
        frames still on their way for it are no fault."""
        self._streams.pop(s.id, None)
        if quiet:
            self._done_ids.add(s.id)

    def _on_control(self, f: Frame) -> None:
        if f.version != VERSION:
            raise ProtocolError(f"control frame of version {f.version}")
        p = f.payload
        if f.kind in (SYN_STREAM, SYN_REPLY, HEADERS, RST_STREAM, WINDOW_UPDATE, GOAWAY) \
                and len(p) < {SYN_STREAM: 10, RST_STREAM: 8, WINDOW_UPDATE: 8,
                              GOAWAY: 8}.get(f.kind, 4):
            raise ProtocolError(f"control frame type {f.kind} of {len(p)} bytes is too short")
        if f.kind == SYN_STREAM:
            sid = struct.unpack_from(">I", p)[0] & 0x7FFFFFFF
            self._decompressor.decompress(p[10:])     # keeps the inflate stream in step
            self.refused.append(sid)
            if sid % 2:
                self._violation(f"server opened stream {sid}, an odd (client) id")
            self._send_control(pack_rst_stream(sid, REFUSED_STREAM))
        elif f.kind in (SYN_REPLY, HEADERS):
            sid = struct.unpack_from(">I", p)[0] & 0x7FFFFFFF
            pairs = self._decompressor.decompress(p[4:])
            self._on_headers(f.kind, sid, f.flags, pairs)
        elif f.kind == RST_STREAM:
            sid, status = struct.unpack_from(">II", p)
            sid &= 0x7FFFFFFF
            with self._cv:
                s = self._streams.get(sid)
                if s is not None:
                    s.reset = status
                    self._retire(s)
                    self._cv.notify_all()
        elif f.kind == SETTINGS:
            self._on_settings(f.flags, p)
        elif f.kind == PING:
            if len(p) != 4:
                raise ProtocolError(f"PING of {len(p)} bytes")
            (pid,) = struct.unpack(">I", p)
            if pid % 2 == 0:
                self._send_control(pack_ping(pid))
            else:
                with self._cv:
                    if pid in self._pings:
                        self._pings[pid] = time.monotonic()
                        self._cv.notify_all()
                    else:
                        self._violation(f"PING {pid} (odd) that this client never sent")
        elif f.kind == GOAWAY:
            last, status = struct.unpack_from(">II", p)
            last &= 0x7FFFFFFF
            with self._cv:
                self.goaway = (last, status)
                for s in list(self._streams.values()):
                    if s.id > last:        # never processed by the server
                        s._refused = True
                        self._retire(s, quiet=True)
                self._cv.notify_all()
        elif f.kind == WINDOW_UPDATE:
            sid, delta = struct.unpack_from(">II", p)
            sid &= 0x7FFFFFFF
            delta &= 0x7FFFFFFF
            if delta == 0:
                self._violation(f"WINDOW_UPDATE of 0 for stream {sid}")
            with self._cv:
                if sid == 0:
                    self._send_window += delta
                    if self._send_window > MAX_WINDOW:
                        self._violation(f"session send window over 2^31-1 ({self._send_window})")
                else:
                    s = self._streams.get(sid)
                    if s is not None:
                        s._send_window += delta
                        if s._send_window > MAX_WINDOW:
                            self._violation(f"stream {sid} send window over 2^31-1")
                self._cv.notify_all()
        # other types (NOOP of SPDY/2, CREDENTIAL, unknown): ignored, as the draft says

    def _on_headers(self, kind: int, sid: int, flags: int, pairs) -> None:
        name = "SYN_REPLY" if kind == SYN_REPLY else "HEADERS"
        got: dict[str, str] = {}
        for k, v in pairs:
            if k != k.lower():
                self._violation(f"{name} on stream {sid}: header name {k!r} not lowercase")
            if k in got:
                self._violation(f"{name} on stream {sid}: header {k!r} twice")
                got[k] += "\0" + v
            else:
                got[k] = v
        with self._cv:
            s = self._stream_for(sid, name)
            if s is None:
                return
            if kind == SYN_REPLY:
                if s.reply is not None:
                    self._violation(f"a second SYN_REPLY on stream {sid}")
                s.reply = got
            elif s.reply is None:
                self._violation(f"HEADERS before SYN_REPLY on stream {sid}")
            s.headers.update(got)
            if flags & FLAG_FIN:
                if s.remote_closed:
                    self._violation(f"{name} with FIN on stream {sid} after its FIN")
                s.remote_closed = True
                if s.local_closed:
                    self._retire(s)
            self._cv.notify_all()

    def _on_settings(self, flags: int, p: bytes) -> None:
        if len(p) < 4:
            raise ProtocolError("SETTINGS too short")
        (n,) = struct.unpack_from(">I", p)
        if len(p) != 4 + 8 * n:
            raise ProtocolError(f"SETTINGS of {n} entries in {len(p)} bytes")
        with self._cv:
            for i in range(n):
                word, value = struct.unpack_from(">II", p, 4 + 8 * i)
                sid = word & 0xFFFFFF
                self.peer_settings[sid] = value
                if sid == SETTINGS_INITIAL_WINDOW_SIZE:
                    if value > MAX_WINDOW:
                        self._violation(f"INITIAL_WINDOW_SIZE {value} over 2^31-1")
                        continue
                    delta = value - self._initial_send_window
                    self._initial_send_window = value
                    for s in self._streams.values():
                        s._send_window += delta
            self._cv.notify_all()

    def _on_data(self, f: Frame) -> None:
        sid, n = f.kind, len(f.payload)
        grants = []
        with self._cv:
            self._recv_window -= n
            if self._recv_window < 0:
                self._violation(f"session receive window overrun by {-self._recv_window} B")
                self._recv_window = 0
            self._recv_unacked += n
            if self._recv_unacked >= _GRANT_AT and not self._dead:
                grants.append(pack_window_update(0, self._recv_unacked))
                self._recv_window += self._recv_unacked
                self._recv_unacked = 0
            s = self._stream_for(sid, "DATA")
            if s is not None:
                if s.remote_closed:
                    self._violation(f"DATA on stream {sid} after its FIN")
                else:
                    s._recv_window -= n
                    if s._recv_window < 0 and not s._overrun:
                        s._overrun = True
                        self._violation(f"stream {sid} receive window overrun")
                    if f.payload:
                        s._buf += f.payload
                    if f.flags & FLAG_FIN:
                        s.remote_closed = True
                        if s.local_closed:
                            self._retire(s)
                    self._cv.notify_all()
        if grants:
            self._send_control(*grants)


class Stream:
    """One stream this client opened."""

    def __init__(self, client: SpdyClient, sid: int, headers: dict[str, str], fin: bool):
        self.id = sid
        self.request_headers = headers
        self.reply: dict[str, str] | None = None   # the SYN_REPLY's headers
        self.headers: dict[str, str] = {}          # SYN_REPLY merged with later HEADERS
        self.reset: int | None = None              # RST_STREAM status received
        self.remote_closed = False                 # the server's FIN seen
        self.local_closed = fin                    # our FIN sent
        self._client = client
        self._buf = bytearray()
        self._send_window = client._initial_send_window
        self._recv_window = DEFAULT_WINDOW
        self._unacked = 0
        self._overrun = False
        self._cancelled = False                    # we sent RST_STREAM
        self._refused = False                      # above the server's GOAWAY last-good id

    def __repr__(self) -> str:
        return (f"<Stream {self.id} reset={self.reset} remote_closed={self.remote_closed} "
                f"local_closed={self.local_closed}>")

    def _ended(self) -> bool:
        """With _cv held: no more data will come."""
        return (self.remote_closed or self.reset is not None or self._cancelled
                or self._refused or self._client._dead)

    def wait_reply(self, timeout: float = 10.0) -> dict[str, str]:
        c = self._client
        deadline = time.monotonic() + timeout
        with c._cv:
            while self.reply is None:
                if self.reset is not None:
                    raise ConnectionResetError(f"stream {self.id} reset ({self.reset}) "
                                               "before its SYN_REPLY")
                if self._cancelled or self._refused or c._dead:
                    raise ConnectionError(f"stream {self.id} ended before its SYN_REPLY")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no SYN_REPLY on stream {self.id} in {timeout}s")
                c._cv.wait(left)
            return dict(self.headers)

    def write(self, data: bytes) -> None:
        c = self._client
        view = memoryview(data).cast("B")
        off = 0
        while off < len(view):
            with c._cv:
                while True:
                    if self.local_closed:
                        raise BrokenPipeError(f"stream {self.id}: write after close_write")
                    if self.reset is not None or self._cancelled:
                        raise ConnectionResetError(f"stream {self.id} reset ({self.reset})")
                    if c._dead or c._local_close or self._refused:
                        raise BrokenPipeError("the SPDY connection is closed")
                    room = min(self._send_window, c._send_window)
                    if room > 0:
                        break
                    c._cv.wait()
                n = min(room, MAX_DATA_FRAME, len(view) - off)
                self._send_window -= n
                c._send_window -= n
            c._send_blocking(pack_data(self.id, 0, view[off:off + n]))
            off += n

    def close_write(self) -> None:
        """Half-close: an empty DATA frame with FIN. Nothing to do on a stream that is over."""
        c = self._client
        with c._cv:
            if self.local_closed or self.reset is not None or self._cancelled or c._dead:
                return
            self.local_closed = True
            if self.remote_closed:
                c._retire(self)
        try:
            c._send_blocking(pack_data(self.id, FLAG_FIN))
        except OSError:
            pass

    def reset_stream(self, status: int = CANCEL) -> None:
        c = self._client
        with c._cv:
            if self._cancelled or self.reset is not None or c._dead:
                return
            self._cancelled = True
            c._retire(self, quiet=True)
            c._cv.notify_all()
        c._send_control(pack_rst_stream(self.id, status))

    def _take(self, limit: int | None, deadline: float) -> bytes:
        c = self._client
        grant = None
        with c._cv:
            while not self._buf:
                if self._ended():
                    return b""
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"nothing on stream {self.id} in time")
                c._cv.wait(left)
            if limit is None or limit >= len(self._buf):
                out = bytes(self._buf)
                self._buf.clear()
            else:
                out = bytes(self._buf[:limit])
                del self._buf[:limit]
            self._unacked += len(out)
            if self._unacked >= _GRANT_AT and not self._ended() and not self._cancelled:
                grant = pack_window_update(self.id, self._unacked)
                self._recv_window += self._unacked
                self._unacked = 0
        if grant is not None:
            c._send_control(grant)
        return out

    def read(self, timeout: float = 10.0) -> bytes:
        """What has arrived (waiting for something); b"" once the stream is over."""
        return self._take(None, time.monotonic() + timeout)

    def read_all(self, timeout: float = 30.0) -> bytes:
        deadline = time.monotonic() + timeout
        out = bytearray()
        while True:
            chunk = self._take(None, deadline)
            if not chunk:
                return bytes(out)
            out += chunk

    def read_exactly(self, n: int, timeout: float = 30.0) -> bytes:
        deadline = time.monotonic() + timeout
        out = bytearray()
        while len(out) < n:
            chunk = self._take(n - len(out), deadline)
            if not chunk:
                raise EOFError(f"stream {self.id} ended after {len(out)} of {n} bytes")
            out += chunk
        return bytes(out)
