"""Exec and attach, whatever carries them (SPDY streams or WebSocket channels): the bytes of
stdin, stdout and stderr, terminal resizes, and the status at the end, as kubelet's
remotecommand protocols define them (v4 and later: a JSON metav1.Status on the error stream,
with the exit code; before v4: the error's text)."""

from __future__ import annotations

import fcntl
import json
import os
import struct
import termios
import threading
from collections.abc import Callable
from dataclasses import dataclass

PUMP_CHUNK = 32 << 10
# once the command has ended, its output is carried until its end; a pipe a child of it keeps
# open is given up after this long without a byte (never while bytes flow)
DRAIN_IDLE = 2.0


@dataclass
class Streams:
    """The client's side, as callables. stdin: the next chunk (b"" at its end); stdout,
    stderr: send a chunk; resizes: the next (width, height), None when there are no more;
    finish: the status (bytes for the error stream, maybe empty), then close everything."""
    stdin: Callable[[], bytes] | None
    stdout: Callable[[bytes], None] | None
    stderr: Callable[[bytes], None] | None
    resizes: Callable[[], tuple[int, int] | None] | None
    finish: Callable[[bytes], None]
    json_status: bool            # v4 and later


def status(code: int | None, error: str, as_json: bool) -> bytes:
    """What the error stream carries at the end: nothing (before v4) or Success for exit 0;
    the exit code (v4: reason NonZeroExitCode with an ExitCode cause); or an error's text."""
    if not as_json:
        if error:
            return error.encode()
        return f"command terminated with non-zero exit code: exit status {code}".encode() \
            if code else b""
    if error:
        doc = {"metadata": {}, "status": "Failure", "message": error,
               "reason": "InternalError", "code": 500,
               "details": {"causes": [{"message": error}]}}
    elif code:
        doc = {"metadata": {}, "status": "Failure",
               "message": f"command terminated with non-zero exit code: exit status {code}",
               "reason": "NonZeroExitCode",
               "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
    else:
        doc = {"metadata": {}, "status": "Success"}
    return json.dumps(doc).encode()


def set_window(fd: int, width: int, height: int) -> None:
    """The terminal's size (TIOCSWINSZ on the master: the kernel signals its foreground
    process group)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", max(0, min(height, 65535)),
                                                   max(0, min(width, 65535)), 0, 0))


def _thread(target, *args) -> threading.Thread:
    t = threading.Thread(target=target, args=args, daemon=True, name="stream-pump")
    t.start()
    return t


def pump_out(fd: int, send: Callable[[bytes], None] | None, done: threading.Event) -> None:
    """fd's bytes to the client until EOF, or until `done` (the command ended) and then
    DRAIN_IDLE without a byte. A gone client: the rest is read and dropped, so the command
    never blocks on a full pipe. The fd is this thread's: it closes it."""
    import select

    p = select.poll()
    p.register(fd, select.POLLIN)
    try:
        while True:
            if not p.poll(DRAIN_IDLE * 1000):
                if done.is_set():
                    return
                continue
            try:
                data = os.read(fd, PUMP_CHUNK)
            except OSError:      # EIO: a pty whose every slave is closed
                return
            if not data:
                return
            if send is not None:
                try:
                    send(data)
                except (BrokenPipeError, OSError):
                    send = None
    finally:
        os.close(fd)


def pump_in(recv: Callable[[], bytes], fd: int, close: bool = True) -> None:
    """The client's stdin into fd until its end (then fd is closed: the command sees EOF)."""
    try:
        while True:
            data = recv()
            if not data:
                return
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
    except (OSError, TimeoutError):
        pass
    finally:
        if close:
            try:
                os.close(fd)
            except OSError:
                pass


def pump_resizes(resizes: Callable[[], tuple[int, int] | None], fd: int) -> None:
    """Each size the client sends, to the terminal at `fd` (this thread's: it closes it)."""
    try:
        while True:
            size = resizes()
            if size is None:
                return
            set_window(fd, *size)
    except (OSError, TimeoutError):
        pass
    finally:
        os.close(fd)


def run_exec(streams: Streams, tty: bool, execute: Callable[[tuple[int, int, int], int], int],
             cancel: int) -> None:
    """Run a command through `execute(stdio, cancel)` (its exit code) with the client's
    streams wired to its stdio: a pty when `tty` (stdout and stderr are the terminal), pipes
    otherwise. Ends with the status on the error stream."""
    ours: list[int] = []         # fds we close once the command has them
    pumps: list[threading.Thread] = []
    done = threading.Event()
    code, error = None, ""
    try:
        # each pump thread owns the fd it uses and closes it itself: an fd closed under a
        # thread still using it would be some other session's by the time it is used
        if tty:
            master, slave = os.openpty()
            ours.append(slave)
            os.set_inheritable(master, False)
            stdio = (slave, slave, slave)
            if streams.stdin is not None:
                _thread(pump_in, streams.stdin, os.dup(master))
            if streams.resizes is not None:
                _thread(pump_resizes, streams.resizes, os.dup(master))
            pumps.append(_thread(pump_out, master, streams.stdout, done))
        else:
            fds = []
            for send in (streams.stdout, streams.stderr):
                r, w = os.pipe2(os.O_CLOEXEC)
                ours.append(w)
                fds.append(w)
                pumps.append(_thread(pump_out, r, send, done))
            if streams.stdin is not None:
                r, w = os.pipe2(os.O_CLOEXEC)
                ours.append(r)
                _thread(pump_in, streams.stdin, w)
                stdin_fd = r
            else:
                stdin_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                ours.append(stdin_fd)
            stdio = (stdin_fd, fds[0], fds[1])
        try:
            code = execute(stdio, cancel)
        except Exception as e:   # the engine's refusal, sent to the client as its status
            error = str(e) or type(e).__name__
        finally:
            for fd in ours:
                os.close(fd)
            ours = []
            done.set()
        for t in pumps:
            t.join()
    finally:
        for fd in ours:
            os.close(fd)
    try:
        streams.finish(status(code, error, streams.json_status))
    except (BrokenPipeError, OSError):
        pass
