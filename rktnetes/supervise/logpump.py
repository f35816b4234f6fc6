"""The monitor's log pump: the read ends of the apps' stdout/stderr pipes, each fed line by line
into its app's CRI-format log (rktnetes.logs.cri.LineWriter) and, for a foreground pod, echoed
to the terminal. Never blocks: the pipes are non-blocking, a slow or gone terminal loses the
echo, never the log. Light on purpose: the long-lived monitor imports it."""

from __future__ import annotations

import errno
import os
import select

from rktnetes.logs.cri import LineWriter


def echo(fd: int, data: bytes) -> bool:
    """Write all of `data` to `fd`; False once that fd is gone (EPIPE, EBADF, EIO)."""
    try:
        while data:
            data = data[os.write(fd, data):]
        return True
    except BlockingIOError:
        return True  # a slow terminal: drop rather than stall every app's log
    except OSError as e:
        if e.errno in (errno.EPIPE, errno.EBADF, errno.EIO):
            return False
        raise


# An app that writes without pause keeps its pipe full: a bounded turn per poll, so that the
# monitor still answers signals, requests and attach clients (and the other apps' pipes).
READS_PER_TURN = 4
DRAIN_READS = 256       # what an ended app left (its children may write on: bounded too)


class LogPump:
    """The open output pipes of every app, registered in the monitor's poll object."""

    def __init__(self, poll: select.poll):
        self.poll = poll
        self.streams: dict[int, tuple[LineWriter, int]] = {}   # fd -> (writer, echo fd or -1)
        self.owners: dict[int, str] = {}                        # fd -> app name
        self.kinds: dict[int, str] = {}                         # fd -> "stdout" | "stderr"
        self.tap = None           # (app, stream, bytes) -> None: attached clients' copy

    def add(self, app: str, fd: int, log_fd: int, stream: str, echo_fd: int = -1) -> None:
        """Pump `fd` (a pipe's read end, now ours) into `log_fd` as `stream`."""
        os.set_blocking(fd, False)
        self.streams[fd] = (LineWriter(log_fd, stream), echo_fd)
        self.owners[fd] = app
        self.kinds[fd] = stream
        self.poll.register(fd, select.POLLIN)

    def relog(self, app: str, log_fd: int) -> None:
        """Write the app's streams to `log_fd` from now on (its log was reopened)."""
        for fd in self.fds_of(app):
            self.streams[fd][0].fd = log_fd

    def fds_of(self, app: str) -> list[int]:
        return [fd for fd, owner in self.owners.items() if owner == app]

    def drain(self, app: str | None = None) -> None:
        """Read what the pipes (of `app`, or every app's) hold now: an app is gone, its
        output may not be."""
        self.read(self.fds_of(app) if app else list(self.streams), rounds=DRAIN_READS)

    def read(self, fds: list[int], rounds: int = READS_PER_TURN) -> None:
        """Read each of `fds` (at most `rounds` reads each), then close those
        at their end: an unterminated last line of one stream (written at its close) comes
        after what the others held meanwhile."""
        ended: list[int] = []
        for fd in fds:
            if fd in self.streams:
                self._read_one(fd, ended, rounds)
        for fd in ended:
            if fd in self.streams:
                self.close(fd)

    def _read_one(self, fd: int, ended: list[int], rounds: int) -> None:
        writer, out = self.streams[fd]
        n = 0
        while n < rounds:
            n += 1
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                ended.append(fd)
                return
            writer.feed(data)
            if self.tap is not None:
                self.tap(self.owners[fd], self.kinds[fd], data)
            if out >= 0 and not echo(out, data):
                self.streams[fd] = (writer, -1)
                out = -1

    def close(self, fd: int) -> None:
        writer, _ = self.streams.pop(fd)
        self.owners.pop(fd, None)
        self.kinds.pop(fd, None)
        writer.close()
        self.poll.unregister(fd)
        os.close(fd)

    def close_app(self, app: str) -> None:
        """Forget an app: what its pipes still hold goes to its log first."""
        fds = self.fds_of(app)
        self.read(fds, rounds=DRAIN_READS)
        for fd in fds:
            if fd in self.streams:
                self.close(fd)

    def close_all(self) -> None:
        self.drain()
        for fd in list(self.streams):
            self.close(fd)
