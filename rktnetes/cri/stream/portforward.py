"""Port forwarding into a pod's network namespace, as kubelet's portforward protocol defines it.

SPDY (`portforward.k8s.io`): each forwarded connection is a pair of client streams, `error`
and `data`, sharing a `requestID` header and naming the `port`; many pairs on one session.
WebSocket: the ports are the request's `port` query values; port i is channel 2i (data) and
2i+1 (error), each first carrying the port as two little-endian bytes."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable

from . import spdy, wschannel

PROTOCOL = "portforward.k8s.io"
PAIR_TIMEOUT = 30.0       # a request's second stream must come within (kubelet's stream
#                           creation timeout)
LINGER = 1.0              # after the pod's side ends, how long the client's may go on
WS_PROTOCOLS = ["v4.channel.k8s.io", "v4.base64.channel.k8s.io", PROTOCOL, ""]
CHUNK = 32 << 10

Dial = Callable[[int], socket.socket]     # port -> a connection to it inside the pod


def parse_port(text: str) -> int:
    try:
        port = int(text)
    except (TypeError, ValueError):
        raise ValueError(f"invalid port {text!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"invalid port {port}: must be 1-65535")
    return port


def copy_to_socket(read: Callable[[], bytes], conn: socket.socket) -> None:
    """The client's bytes into the pod's connection; at their end, our write side closes."""
    try:
        while True:
            data = read()
            if not data:
                break
            conn.sendall(data)
    except (OSError, TimeoutError):
        pass
    finally:
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def copy_from_socket(conn: socket.socket, write: Callable[[bytes], None]) -> None:
    while True:
        try:
            data = conn.recv(CHUNK)
        except OSError:
            return
        if not data:
            return
        try:
            write(data)
        except (BrokenPipeError, OSError):
            return


def forward_error(port: int, sandbox: str, e: Exception) -> bytes:
    reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    return (f"error forwarding port {port} to pod {sandbox}: failed to connect to "
            f"localhost:{port} inside the pod: {reason}").encode()


# -- SPDY --------------------------------------------------------------------------------------

class SpdyForwarder:
    """Pairs the streams of each request and forwards them, one thread per connection."""

    def __init__(self, dial: Dial, sandbox: str):
        self.dial = dial
        self.sandbox = sandbox
        self.lock = threading.Lock()
        self.pairs: dict[str, dict[str, spdy.Stream]] = {}
        self.conns: set[socket.socket] = set()      # open connections into the pod

    @staticmethod
    def request_id(s: spdy.Stream) -> str:
        rid = s.headers.get("requestid", "")
        if rid:
            return rid
        # an old client without the header: pairs have consecutive ids, error first
        return str(s.id if s.type == "error" else s.id - 2)

    def on_stream(self, s: spdy.Stream) -> None:
        kind = s.type
        try:
            s.reply()
        except BrokenPipeError:
            return
        if kind not in ("error", "data"):
            s.cancel(spdy.REFUSED_STREAM)
            return
        rid = self.request_id(s)
        with self.lock:
            pair = self.pairs.setdefault(rid, {})
            if kind in pair:
                s.cancel(spdy.PROTOCOL_ERROR)
                return
            if kind == "error":
                s.ignore()          # ours to write (kubectl half-closes it at once)
            pair[kind] = s
            if len(pair) < 2:
                self._expire_later(rid)
                return
            del self.pairs[rid]
        threading.Thread(target=self.forward, args=(pair["data"], pair["error"]),
                         daemon=True, name="portforward").start()

    def _expire_later(self, rid: str) -> None:
        t = threading.Timer(PAIR_TIMEOUT, self._expire, (rid,))
        t.daemon = True
        t.start()

    def _expire(self, rid: str) -> None:
        """A request whose other stream never came: say so on its error stream, end it."""
        with self.lock:
            pair = self.pairs.pop(rid, None)
        if not pair:
            return
        for kind, s in pair.items():
            if kind == "error":
                try:
                    s.write(f"timed out waiting for the data stream of request {rid}".encode())
                except BrokenPipeError:
                    pass
                s.close()
            else:
                s.cancel(spdy.CANCEL)

    def forward(self, data: spdy.Stream, error: spdy.Stream) -> None:
        try:
            port = parse_port(data.headers.get("port", ""))
            conn = self.dial(port)
        except Exception as e:   # the message goes to the client's error stream
            port = data.headers.get("port", "?")
            msg = str(e).encode() if isinstance(e, ValueError) else \
                forward_error(port, self.sandbox, e)
            try:
                error.write(msg)
            except BrokenPipeError:
                pass
            error.close()
            data.close()
            return
        with self.lock:
            self.conns.add(conn)
        try:
            up = threading.Thread(target=copy_to_socket, args=(data.read, conn), daemon=True)
            up.start()
            copy_from_socket(conn, data.write)
            data.close()
            # the pod is done: the client's side gets a moment, then the pair ends (a client
            # waits for the error stream's end before it closes its local connection)
            up.join(LINGER)
            if up.is_alive():
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                data.ignore()
                up.join()
        finally:
            with self.lock:
                self.conns.discard(conn)
            conn.close()
            error.close()

    def close(self) -> None:
        """The session is over: every connection into the pod ends (its threads with it)."""
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# -- WebSocket ---------------------------------------------------------------------------------

def ws_forward(conn: wschannel.Connection, ports: list[int], dial: Dial, sandbox: str) -> None:
    """One pod connection per port, for as long as the WebSocket lives."""
    threads = []
    conn.readable = {2 * i for i in range(len(ports))}    # error channels are ours to write
    for i, port in enumerate(ports):
        prefix = struct.pack("<H", port)
        conn.send(2 * i, prefix)
        conn.send(2 * i + 1, prefix)
        try:
            pod = dial(port)
        except Exception as e:
            conn.send(2 * i + 1, forward_error(port, sandbox, e))
            continue
        ch = 2 * i
        up = threading.Thread(target=_up, args=(conn, ch, pod), daemon=True)
        down = threading.Thread(target=_down, args=(pod, conn, ch), daemon=True)
        up.start()
        down.start()
        threads += [up, down]
    # the WebSocket ends when every pod connection has (kubelet's handler does the same);
    # the client's end of it ends them all the other way (_up)
    for t in threads[1::2]:
        t.join()
    conn.close()
    for t in threads[0::2]:
        t.join()


def _up(conn: wschannel.Connection, ch: int, pod: socket.socket) -> None:
    """A channel has no half-close: its input ends with the WebSocket, and so does the pod's
    connection (the reader of it stops too)."""
    copy_to_socket(lambda: conn.read(ch), pod)
    try:
        pod.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _down(pod: socket.socket, conn: wschannel.Connection, ch: int) -> None:
    try:
        copy_from_socket(pod, lambda d: conn.send(ch, d))
    finally:
        pod.close()
