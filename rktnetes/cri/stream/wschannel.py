"""Kubernetes' channel protocols over a WebSocket (RFC 6455): each message carries one
channel's bytes behind a channel number (a leading byte; in the base64 protocols a leading
digit and base64 text). v5 adds a close signal: the message [255, channel] ends that
channel's input (stdin's EOF). The WebSocket itself (handshake, framing, masking, ping and
close) is the `websockets` library's sans-I/O protocol; this module only moves bytes between
it and the socket and speaks the channel layer."""

from __future__ import annotations

import base64
import socket
import threading
from collections import deque

from websockets.exceptions import NegotiationError
from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

CLOSE_CHANNEL = 255          # v5: [255, n] closes channel n
BINARY = {"", "channel.k8s.io", "v4.channel.k8s.io", "v5.channel.k8s.io"}
BASE64 = {"base64.channel.k8s.io", "v4.base64.channel.k8s.io"}
MAX_MESSAGE = 4 << 20
MAX_BUFFER = 4 << 20        # unread input held for a slow consumer; beyond it TCP holds the rest


def choose(offered: list[str], supported: list[str]) -> str | None:
    """The first of the client's protocols we speak (kubelet's wsstream picks in the
    client's order); "" when it offered none and "" is supported; None: refuse."""
    if not offered:
        return "" if "" in supported else None
    for p in offered:
        if p in supported:
            return p
    return None


class Connection:
    """An accepted WebSocket with the channel layer on top. `serve()` reads in the calling
    thread and feeds each channel; writers call `send(channel, data)` from any thread."""

    def __init__(self, sock: socket.socket, head: bytes, supported: list[str]):
        self.sock = sock
        self.lock = threading.Lock()          # the sans-I/O protocol is not thread-safe
        # bytes go out under their own lock, never under the protocol's: a writer blocked on
        # a client that is not reading must not stop us reading (and answering pings)
        self.wlock = threading.Lock()
        self.outq: deque[bytes] = deque()
        self.cv = threading.Condition(threading.Lock())
        self.inbox: dict[int, deque[bytes]] = {}
        self.closed_channels: set[int] = set()
        self.ended = False
        self.protocol_name = ""
        self._fragments: list[bytes] = []
        self._fragment_text = False
        self._buffered = 0
        self.readable: set[int] | None = None    # the channels someone reads; others dropped

        def select(proto, offered):
            chosen = choose(list(offered), supported)
            if chosen is None:
                raise NegotiationError(f"requested protocol(s) are not supported: "
                                       f"{', '.join(offered)}; supports {', '.join(supported)}")
            return chosen or None

        self.ws = ServerProtocol(select_subprotocol=select, max_size=MAX_MESSAGE)
        self.ws.receive_data(head)
        request = next(e for e in self.ws.events_received() if isinstance(e, Request))
        response = self.ws.accept(request)
        self.accepted = response.status_code == 101
        if self.accepted:
            self.protocol_name = response.headers.get("Sec-WebSocket-Protocol", "")
        self.ws.send_response(response)
        self._flush()
        self._write_out()

    @property
    def base64(self) -> bool:
        return self.protocol_name in BASE64

    @property
    def v5(self) -> bool:
        return self.protocol_name.startswith("v5.")

    def _flush(self) -> None:      # under self.lock: queue what the protocol has for the wire
        self.outq.extend(self.ws.data_to_send())

    def _write_out(self, block: bool = True) -> None:
        """Send the queue; without `block`, leave it to a sender already at it."""
        while True:
            if not self.wlock.acquire(blocking=block):
                return
            try:
                while True:
                    with self.lock:
                        if not self.outq:
                            break
                        chunk = self.outq.popleft()
                    if chunk:
                        self.sock.sendall(chunk)
                    else:                    # the protocol's end of our side
                        try:
                            self.sock.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
            finally:
                self.wlock.release()
            with self.lock:
                if not self.outq:     # nothing queued between our last look and the release
                    return

    def send(self, channel: int, data: bytes) -> None:
        """One message on `channel`; BrokenPipeError once the connection is gone."""
        with self.lock:
            if self.ended:
                raise BrokenPipeError("the client is gone")
            try:
                if self.base64:
                    self.ws.send_text((str(channel) + base64.b64encode(data).decode()).encode())
                else:
                    self.ws.send_binary(bytes([channel]) + data)
            except Exception:      # the protocol is closing: nothing more goes out
                raise BrokenPipeError("the connection is closing") from None
            self._flush()
        try:
            self._write_out()
        except OSError:
            self._end()
            raise BrokenPipeError("the client is gone") from None

    def close(self, code: int = 1000, reason: str = "") -> None:
        with self.lock:
            try:
                self.ws.send_close(code, reason)
                self._flush()
            except Exception:
                pass
        try:
            self._write_out()
        except OSError:
            pass

    def read(self, channel: int, timeout: float | None = None) -> bytes:
        """The next message on `channel`; b"" once it (or the connection) is closed."""
        with self.cv:
            q = self.inbox.setdefault(channel, deque())
            if not self.cv.wait_for(lambda: q or self.ended or channel in self.closed_channels,
                                    timeout):
                raise TimeoutError
            if not q:
                return b""
            data = q.popleft()
            self._buffered -= len(data)
            self.cv.notify_all()
            return data

    def _end(self) -> None:
        with self.cv:
            self.ended = True
            self.cv.notify_all()

    def _deliver(self, payload: bytes, text: bool) -> None:
        if not payload:
            return
        if text or self.base64:
            try:
                channel, data = int(chr(payload[0])), base64.b64decode(payload[1:])
            except ValueError:
                return
        else:
            channel, data = payload[0], payload[1:]
        with self.cv:
            if channel == CLOSE_CHANNEL and self.v5:
                if data:
                    self.closed_channels.add(data[0])
            elif data and (self.readable is None or channel in self.readable):
                self.cv.wait_for(lambda: self._buffered < MAX_BUFFER or self.ended)
                self.inbox.setdefault(channel, deque()).append(data)
                self._buffered += len(data)
            self.cv.notify_all()

    def serve(self) -> None:
        try:
            while True:
                data = self.sock.recv(65536)
                with self.lock:
                    if data:
                        self.ws.receive_data(data)
                    else:
                        self.ws.receive_eof()
                    events = self.ws.events_received()
                    self._flush()          # pongs, the answer to a close
                self._write_out(block=False)
                for frame in events:
                    self._on_frame(frame)
                if not data or self.ws.close_code is not None:
                    break
        except OSError:
            pass
        finally:
            self._end()

    def _on_frame(self, frame) -> None:
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            self._fragments = [frame.data]
            self._fragment_text = frame.opcode == Opcode.TEXT
        elif frame.opcode == Opcode.CONT:
            self._fragments.append(frame.data)
        else:
            return
        if frame.fin:
            self._deliver(b"".join(self._fragments), self._fragment_text)
            self._fragments = []
