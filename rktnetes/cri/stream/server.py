"""The streaming server of `rkt cri`: Exec, Attach and PortForward return a URL here
(`http://HOST:PORT/<kind>/<token>`); the client upgrades a request on it to SPDY/3.1 or to a
WebSocket and the session runs. A thread per connection; nothing here outlives the server.

What a session runs comes in with its token (see the *Request types): the CRI service builds
them from the engine, so this module knows protocols, not pods."""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from rktnetes.errors import UsageError

from . import channels, portforward, spdy, wschannel
from .remotecommand import run_exec
from .tokens import TokenCache

log = logging.getLogger("rktnetes.cri.stream")

MAX_HEAD = 16 << 10
HEAD_TIMEOUT = 10.0          # the whole request head must come within this
# kubelet's one deadline (its streamIdleTimeout): nothing read, or nothing taken, for so long
IDLE_TIMEOUT = 4 * 3600
MAX_CONNECTIONS = 512


@dataclass
class ExecRequest:
    wanted: channels.Wanted
    run: Callable[[tuple[int, int, int], int], int]   # (stdio, cancel fd) -> exit code

    @property
    def terminal(self) -> bool:      # a pty for the session
        return self.wanted.tty


@dataclass
class AttachRequest:
    wanted: channels.Wanted
    # (stdio, cancel fd) -> exit code: stdin, stdout, stderr carried until the client or the
    # app is gone
    run: Callable[[tuple[int, int, int], int], int]
    # never a pty: attach carries the app's own output (an app created with tty runs without
    # a terminal here)
    terminal = False


@dataclass
class PortForwardRequest:
    sandbox: str
    dial: portforward.Dial
    ports: list[int]          # the CRI request's: a WebSocket through kubelet's proxy has no
    #                           query, so these are its ports unless the URL names some


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 503: "Service Unavailable"}


def _respond(sock: socket.socket, status: int, message: str) -> None:
    body = (message + "\n").encode()
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode()
    try:
        sock.sendall(head + body)
    except OSError:
        pass


@dataclass
class Head:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, list[str]]      # lowercased names
    raw: bytes                         # the request's bytes, as read
    rest: bytes                        # bytes after it

    def get(self, name: str) -> str:
        v = self.headers.get(name)
        return v[0] if v else ""

    def values(self, name: str) -> list[str]:
        """A header's values, whether repeated or comma-separated."""
        return [p.strip() for v in self.headers.get(name, []) for p in v.split(",")
                if p.strip()]


def read_head(sock: socket.socket, timeout: float = HEAD_TIMEOUT) -> Head:
    """The request line and headers, within `timeout` in all (a client trickling a byte at a
    time holds no connection for longer)."""
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            raise BadRequest(400, "request header too large")
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no request head in time")
        sock.settimeout(left)
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before a request")
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    lines = buf[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, "not an HTTP/1.1 request")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(400, f"malformed header line {line[:40]!r}")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    url = urlsplit(parts[1])
    return Head(parts[0], url.path, parse_qs(url.query), headers, buf[:end], buf[end:])


class StreamServer:
    def __init__(self, address: str = "127.0.0.1:0", advertise: str = ""):
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, int(port or 0)))
        except (OSError, ValueError) as e:
            self.sock.close()
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise UsageError(f"--stream-address={address}: cannot listen there: "
                             f"{reason}") from None
        self.sock.listen(128)
        bound = self.sock.getsockname()
        shown = advertise or (f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0])
        self.base_url = f"http://{shown}:{bound[1]}"
        self.tokens = TokenCache()
        self.live: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True, name="stream-accept")

    def start(self) -> None:
        self.thread.start()

    def url(self, kind: str, request: object) -> str:
        return f"{self.base_url}/{kind}/{self.tokens.put(kind, request)}"

    def stop(self) -> None:
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            live = list(self.live)
        for s in live:        # every session ends: its reader sees the end, its exec is killed
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                if self.stopping:
                    return
                continue
            with self.lock:
                full = len(self.live) >= MAX_CONNECTIONS
                if not full:
                    self.live.add(conn)
            if full:
                _respond(conn, 503, "too many streaming sessions")
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True,
                             name="stream-conn").start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            try:
                head = read_head(conn)
                request = self._route(head)
            except BadRequest as e:
                _respond(conn, e.status, str(e))
                return
            conn.settimeout(None)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                            struct.pack("ll", IDLE_TIMEOUT, 0))
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                            struct.pack("ll", IDLE_TIMEOUT, 0))
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upgrade = head.get("upgrade").lower()
            if upgrade == "websocket":
                self._websocket(conn, head, request)
            elif upgrade.startswith("spdy/3.1"):
                self._spdy(conn, head, request)
            else:
                _respond(conn, 400, "an Upgrade to SPDY/3.1 or websocket is required")
        except (ConnectionError, TimeoutError, OSError):
            pass
        except Exception:     # a bug of ours: this session ends, the server goes on
            log.exception("streaming session failed")
        finally:
            with self.lock:
                self.live.discard(conn)
            try:     # a close alone would not wake a thread blocked reading it
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _route(self, head: Head) -> object:
        parts = head.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] not in ("exec", "attach", "portforward"):
            raise BadRequest(404, f"no such endpoint: {head.path}")
        request = self.tokens.take(parts[0], parts[1])
        if request is None:
            raise BadRequest(404, "unknown, used or expired streaming token")
        return request

    # -- SPDY ----------------------------------------------------------------------------------
    def _spdy(self, conn: socket.socket, head: Head, request: object) -> None:
        offered = head.values("x-stream-protocol-version")
        supported = [portforward.PROTOCOL] if isinstance(request, PortForwardRequest) \
            else channels.SPDY_PROTOCOLS
        chosen = next((p for p in offered if p in supported), None)
        if offered and chosen is None:
            _respond(conn, 403, f"unable to upgrade: unable to negotiate protocol: client "
                                f"supports {offered}, server supports {supported}")
            return
        chosen = chosen or (portforward.PROTOCOL if isinstance(request, PortForwardRequest)
                            else channels.V1)
        conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                      "Upgrade: SPDY/3.1\r\n"
                      f"X-Stream-Protocol-Version: {chosen}\r\n\r\n").encode())
        if isinstance(request, PortForwardRequest):
            fwd = portforward.SpdyForwarder(request.dial, request.sandbox)
            session = spdy.Session(conn, fwd.on_stream, head.rest)
            try:
                session.serve()       # until the client ends it; forwards run meanwhile
            finally:
                fwd.close()
            return
        collector = channels.SpdyStreams(chosen, request.wanted)
        session = spdy.Session(conn, collector.on_stream, head.rest)
        with _Session(conn, session.serve) as cancel:
            if collector.wait(session):
                run_exec(collector.streams(session), request.terminal, request.run, cancel)
            session.close()

    # -- WebSocket -----------------------------------------------------------------------------
    def _websocket(self, conn: socket.socket, head: Head, request: object) -> None:
        pf = isinstance(request, PortForwardRequest)
        ws = wschannel.Connection(conn, head.raw + head.rest,
                                  portforward.WS_PROTOCOLS if pf else channels.WS_PROTOCOLS)
        if not ws.accepted:
            return
        with _Session(conn, ws.serve) as cancel:
            if pf:
                try:
                    ports = [portforward.parse_port(p) for v in head.query.get("port", [])
                             for p in v.split(",")] or request.ports
                    if not ports:
                        raise ValueError('no port to forward: give "port" in the request')
                except ValueError as e:
                    ws.close(1008, str(e)[:120])
                    return
                portforward.ws_forward(ws, ports, request.dial, request.sandbox)
            else:
                run_exec(channels.ws_streams(ws, request.wanted), request.terminal,
                         request.run, cancel)


class _Session:
    """The reader of a connection in a thread of its own, and the cancel fd that turns
    readable when it ends (the client is gone: the command is killed). On leaving, our side
    ends, the reader is woken if it still waits, and the fds close once no thread uses them."""

    def __init__(self, conn: socket.socket, serve: Callable[[], None]):
        self.conn = conn
        self.r, self.w = os.pipe2(os.O_CLOEXEC)

        def reader() -> None:
            try:
                serve()
            finally:
                os.write(self.w, b"x")

        self.thread = threading.Thread(target=reader, daemon=True, name="stream-reader")

    def __enter__(self) -> int:
        self.thread.start()
        return self.r

    def __exit__(self, *exc) -> None:
        try:
            self.conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.thread.join(5)                # the client closes its side in turn
        if self.thread.is_alive():
            try:
                self.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.thread.join()
        os.close(self.r)
        os.close(self.w)

