"""A warm start for detached monitors, for a front end that lives long (`rkt cri`).

A detached pod's monitor is a new interpreter that imports the monitor's modules, then forks a
stage1 helper that imports the stage1 ones (supervise.helper): together about half of an
empty sandbox's start here. A long-lived front end instead keeps one launcher process that has
imported both once and forks a monitor per pod on request. The monitor it forks is the same
process, in its own session with the same stdio, lock and arguments, as the one
`control.monitor_argv` starts; finding the stage1 modules loaded, it forks its calls' workers
from itself (helper.LocalHelper) as a foreground monitor does, with no helper between. Its
pages are the launcher's, shared until written: its VmRSS is a little higher than a lone
monitor's, its private memory the same (bench/bench_cri.py prints both). The front end itself
never forks (a gRPC server has threads).

Protocol: one SOCK_SEQPACKET message per request, JSON {"argv": [...], "log": path} with the
pod's lock descriptor (SCM_RIGHTS); the answer is {"pid": N} with a pidfd of the monitor, so
the front end can tell when it exits though it is not its child, or {"error": "one line"}.
The launcher reaps its monitors (SIGCHLD ignored: the kernel does) and exits when the front
end's end of the socket closes, even by `kill -9`: its monitors then belong to init and go on.
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path

import _socket

_MAX_MSG = 1 << 16
_BOOT = ("import sys; sys.path.insert(0, {root!r}); "
         "from rktnetes.supervise.launcher import serve; serve(int(sys.argv[1]))")


class LauncherError(Exception):
    """The launcher could not start a monitor (the caller may start one the plain way)."""


class MonitorProcess:
    """A monitor the launcher forked: what `subprocess.Popen` offers a waiter, by its pidfd
    (it is the launcher's child, not ours, so its exit status is not ours to read)."""

    status_unknown = True

    def __init__(self, pid: int, pidfd: int):
        self.pid, self._pidfd = pid, pidfd
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and self._pidfd >= 0:
            if select.select([self._pidfd], [], [], 0)[0]:
                self.returncode = -1  # exited; its status went to the launcher
                self.close()
        return self.returncode

    def close(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    def __del__(self):
        self.close()


class Launcher:
    """The front end's end: starts the launcher, asks it for monitors, from any thread."""

    def __init__(self):
        self._mu = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._sock = None

    def start(self) -> None:
        """Start the launcher now rather than at the first spawn."""
        with self._mu:
            self._ensure()

    def _ensure(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self.close()
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        ours.setblocking(True)
        root = str(Path(__file__).resolve().parent.parent.parent)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-S", "-c", _BOOT.format(root=root), str(theirs.fileno())],
                stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),), start_new_session=True)
        finally:
            theirs.close()
        self._sock = ours

    def spawn(self, argv: list[str], log_path: str, lock_fd: int) -> MonitorProcess:
        """A monitor with arguments `argv` (control.monitor_args: the monitor's own, but its
        lock descriptor), stdout and stderr appended to `log_path`, holding `lock_fd`."""
        with self._mu:
            for attempt in (1, 2):   # a launcher that died meanwhile is started again, once
                try:
                    self._ensure()
                    msg = json.dumps({"argv": argv, "log": log_path}).encode()
                    self._sock.sendmsg([msg], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                                struct.pack("i", lock_fd))])
                    data, fds = _recv(self._sock)
                except OSError as e:
                    data, fds = b"", []
                    err = f"the monitor launcher is gone ({e.strerror or e})"
                else:
                    err = "the monitor launcher is gone"
                if data:
                    break
                self.close()
            else:
                raise LauncherError(err)
        answer = json.loads(data)
        if "error" in answer:
            for fd in fds:
                os.close(fd)
            raise LauncherError(answer["error"])
        return MonitorProcess(int(answer["pid"]), fds[0])

    def close(self) -> None:
        """Let the launcher go (it exits on end of file); its monitors go on."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


def _recv(sock) -> tuple[bytes, list[int]]:
    data, anc, _, _ = sock.recvmsg(_MAX_MSG, _socket.CMSG_SPACE(4 * 4), _socket.MSG_CMSG_CLOEXEC)
    fds = [fd for level, kind, raw in anc
           if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS
           for fd in struct.unpack(f"{len(raw) // 4}i", raw[:len(raw) // 4 * 4])]
    return data, fds


# -- the launcher process ---------------------------------------------------------------------

def serve(fd: int) -> None:
    """The launcher: import the monitor once, then fork one per request until end of file."""
    from rktnetes.supervise import actions, monitor

    actions.preload()   # the stage1 calls too: its monitors make them in children of their own

    sock = _socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # its monitors are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # the front end's ^C is not ours
    import gc
    gc.freeze()   # what is loaded now stays shared with every monitor forked (no COW by gc)
    while True:
        try:
            data, fds = _recv(sock)
        except OSError:
            return
        if not data:
            return
        try:
            req = json.loads(data)
            if len(fds) != 1:
                raise ValueError("expected one descriptor, the pod's lock")
            pid = os.fork()
            if pid == 0:
                _become_monitor(monitor, sock, req["argv"], req["log"], fds[0])
            pidfd = os.pidfd_open(pid)
        except Exception as e:  # noqa: BLE001 - answered, one line; the launcher goes on
            _answer(sock, {"error": f"monitor launcher: {e}"}, [])
        else:
            _answer(sock, {"pid": pid}, [pidfd])
            os.close(pidfd)
        for f in fds:
            os.close(f)


def _answer(sock, doc: dict, fds: list[int]) -> None:
    anc = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] \
        if fds else []
    try:
        sock.sendmsg([json.dumps(doc).encode()], anc)
    except OSError:
        pass


def _become_monitor(monitor, sock, argv: list[str], log_path: str, lock_fd: int) -> None:
    """In the forked child: what Popen(start_new_session=True, stdin=/dev/null, stdout and
    stderr to the log, pass_fds=(lock,)) would have made, then the monitor. Never returns."""
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the monitor reaps its own apps
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        sock.close()
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        os.closerange(3, lock_fd)
        os.closerange(lock_fd + 1, os.sysconf("SC_OPEN_MAX"))
        argv = [*argv, "--lock-fd", str(lock_fd)]
        sys.argv = ["rkt-monitor", *argv]
        code = monitor.main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - never back into the launcher's loop
        import traceback

        traceback.print_exc()
    finally:
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except (OSError, ValueError, AttributeError):
                pass
        os._exit(code if isinstance(code, int) else 1)
