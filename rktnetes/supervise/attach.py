"""Attach: the monitor's fan-out of its apps' output to attached clients, and their input to
an app's stdin (apps created with `stdin`).

The monitor listens on the abstract unix socket `\\0rktnetes/attach/<pod uuid>` (no path to
outgrow sun_path, gone with the monitor); only root, or the monitor's own user, may connect
(SO_PEERCRED). SOCK_SEQPACKET keeps messages whole. A client sends one JSON line first:
{"app": NAME, "stdin": bool}; the monitor answers b"ok" or b"error: ..." and then sends
b"\\x01"+stdout bytes, b"\\x02"+stderr bytes, b"\\x03"+exit code (text) when the app ends; the
client sends b"\\x00"+stdin bytes and b"\\x01" for the end of its input.

Nothing here ever blocks the monitor: sends are non-blocking, and a client whose socket buffer
is full (slow, or gone without closing) is dropped; stdin bytes an app does not read yet wait
in a bounded buffer, and a client is not read while that buffer is full."""

from __future__ import annotations

import errno
import json
import os
import select
import socket

STDOUT, STDERR, EXIT = 1, 2, 3
IN_DATA, IN_EOF = 0, 1
SNDBUF = 1 << 20
MAX_MESSAGE = 64 << 10
STDIN_BUFFER = 1 << 20


def address(uuid: str) -> bytes:
    return b"\0rktnetes/attach/" + uuid.encode()


class Client:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.app = ""          # "" until its request line came
        self.stdin = False


class AttachHub:
    def __init__(self, poll: select.poll, uuid: str, running):
        self.poll = poll
        self.running = running                     # app name -> whether it runs now
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.listener.bind(address(uuid))
        self.listener.listen(64)
        self.listener.setblocking(False)
        poll.register(self.listener.fileno(), select.POLLIN)
        self.clients: dict[int, Client] = {}
        self.stdin_fds: dict[str, int] = {}        # app -> the write end of its stdin pipe
        self.stdin_once: dict[str, bool] = {}
        self.pending: dict[str, bytearray] = {}    # app -> stdin bytes not yet written
        self.closing: set[str] = set()             # stdin closes once its bytes are written

    # -- the apps' side ------------------------------------------------------------------------
    def app_started(self, app: str, stdin_w: int, once: bool) -> None:
        """The app got a new stdin pipe (a start, or a restart): its write end is ours."""
        self.app_gone_stdin(app)
        if stdin_w < 0:
            return
        os.set_blocking(stdin_w, False)
        self.stdin_fds[app] = stdin_w
        self.stdin_once[app] = once
        self.pending[app] = bytearray()

    def app_gone_stdin(self, app: str) -> None:
        fd = self.stdin_fds.pop(app, -1)
        if fd >= 0:
            self._watch_out(fd, False)
            os.close(fd)
        self.pending.pop(app, None)
        self.closing.discard(app)

    def output(self, app: str, stream: str, data: bytes) -> None:
        """What the log pump read from an app: to every client attached to it."""
        kind = STDOUT if stream == "stdout" else STDERR
        for fd, c in list(self.clients.items()):
            if c.app != app:
                continue
            for i in range(0, len(data), MAX_MESSAGE):
                if not self._send(fd, bytes([kind]) + data[i:i + MAX_MESSAGE]):
                    break

    def app_exited(self, app: str, code: int) -> None:
        """The app ended: its clients get the code and are let go."""
        for fd, c in list(self.clients.items()):
            if c.app == app:
                self._send(fd, bytes([EXIT]) + str(code).encode())
                self._drop(fd)
        self.app_gone_stdin(app)

    # -- the loop's side -----------------------------------------------------------------------
    def owns(self, fd: int) -> bool:
        return fd == self.listener.fileno() or fd in self.clients or \
            fd in self.stdin_fds.values()

    def handle(self, fd: int) -> None:
        if fd == self.listener.fileno():
            self._accept()
        elif fd in self.clients:
            self._read(fd)
        else:
            app = next((a for a, w in self.stdin_fds.items() if w == fd), None)
            if app is not None:
                self._flush_stdin(app)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            uid = int.from_bytes(creds[4:8], "little")
            if uid not in (0, os.geteuid()):
                sock.close()
                continue
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
            except OSError:
                pass
            self.clients[sock.fileno()] = Client(sock)
            self.poll.register(sock.fileno(), select.POLLIN)

    def _read(self, fd: int) -> None:
        c = self.clients[fd]
        try:
            msg = c.sock.recv(MAX_MESSAGE + 1)
        except BlockingIOError:
            return
        except OSError:
            msg = b""
        if not msg:
            self._drop(fd)
            return
        if not c.app:
            self._hello(fd, c, msg)
            return
        if msg[0] == IN_DATA and c.stdin and c.app in self.stdin_fds:
            buf = self.pending[c.app]
            buf += msg[1:]
            self._flush_stdin(c.app)
        elif msg[0] == IN_EOF and c.stdin:
            c.stdin = False
            if self.stdin_once.get(c.app):
                self._close_stdin_when_flushed(c.app)

    def _hello(self, fd: int, c: Client, msg: bytes) -> None:
        try:
            req = json.loads(msg)
            app, want_stdin = str(req["app"]), bool(req.get("stdin"))
        except (ValueError, KeyError, TypeError):
            self._send(fd, b"error: malformed attach request")
            self._drop(fd)
            return
        if not self.running(app):
            self._send(fd, f"error: app {app} is not running".encode())
            self._drop(fd)
            return
        # an app whose stdin is closed (stdin_once, after its first attach): output only
        c.app, c.stdin = app, want_stdin and app in self.stdin_fds
        self._send(fd, b"ok")

    def _send(self, fd: int, msg: bytes) -> bool:
        c = self.clients.get(fd)
        if c is None:
            return False
        try:
            c.sock.send(msg)
            return True
        except (BlockingIOError, OSError):   # slow or gone: let it go, the app goes on
            self._drop(fd)
            return False

    def _drop(self, fd: int) -> None:
        c = self.clients.pop(fd, None)
        if c is None:
            return
        try:
            self.poll.unregister(fd)
        except KeyError:
            pass
        if c.stdin and self.stdin_once.get(c.app):   # the first session's end is stdin's
            self._close_stdin_when_flushed(c.app)
        c.sock.close()

    # -- stdin ---------------------------------------------------------------------------------
    def _flush_stdin(self, app: str) -> None:
        fd = self.stdin_fds.get(app, -1)
        buf = self.pending.get(app)
        if fd < 0 or buf is None:
            return
        try:
            while buf:
                n = os.write(fd, buf)
                del buf[:n]
        except BlockingIOError:
            pass
        except OSError as e:          # the app closed its stdin
            if e.errno in (errno.EPIPE, errno.EBADF):
                buf.clear()
        self._watch_out(fd, bool(buf))
        # while an app lags behind, its clients are not read: TCP holds their input
        for cfd, c in self.clients.items():
            if c.app == app and c.stdin:
                self.poll.modify(cfd, 0 if len(buf) >= STDIN_BUFFER else select.POLLIN)
        if not buf and app in self.closing:
            self.app_gone_stdin(app)

    def _close_stdin_when_flushed(self, app: str) -> None:
        if app in self.stdin_fds:
            self.closing.add(app)
            self._flush_stdin(app)

    def _watch_out(self, fd: int, on: bool) -> None:
        try:
            if on:
                self.poll.register(fd, select.POLLOUT)
            else:
                self.poll.unregister(fd)
        except KeyError:
            pass

    def close(self) -> None:
        for fd in list(self.clients):
            self._drop(fd)
        for app in list(self.stdin_fds):
            self.app_gone_stdin(app)
        try:
            self.poll.unregister(self.listener.fileno())
        except KeyError:
            pass
        self.listener.close()
