"""The monitor's stage1 helper: a child of the monitor that imports the stage1 modules once and
forks one short-lived worker per call (rktnetes.supervise.actions: setup, start, signal, exited,
teardown).

Those modules (pod and image models, OCI specs, networking) take tens of milliseconds and
megabytes to load. A pod's calls come in bursts (setup and start; exited and teardown), so the
helper loads them once per burst, and the monitor, which lives as long as the pod, never does:
it closes the helper's socket after IDLE seconds without a call, and the helper exits.

A call is one SOCK_SEQPACKET message: JSON {"name", "args", "state"}, plus the app's stdio
descriptors (SCM_RIGHTS) for `start`, appended to the args. The worker answers {"ok": result}
or {"error": "one line"} on the same socket and exits; for a worker that died the helper answers.
A worker exits right after its call, so what it started (the infra process, a container's init
once `runc run --detach` returns, an interactive runc) is reparented to the monitor, the child
subreaper, which reaps it. Each call carries the pod's lock descriptor, which the worker holds
for the call, as the monitor's forked children always did: a pod whose monitor was killed stays
locked until a call in flight ends, so cleanup never races it. An idle helper holds nothing.

A foreground `rkt run` is its pod's monitor and has loaded most of those modules anyway: its
calls run in children forked from it directly (LocalHelper), with the same guarantees as a
worker's, and no helper in between.

Light on purpose: the monitor imports this module (`_socket`, not `socket`, saves it ~0.5 MB).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import struct

import _socket

IDLE = 1.0              # seconds without a call before the monitor lets the helper go
_MAX_MSG = 1 << 20
_MAX_FDS = 8


class HelperError(Exception):
    """The call failed; the message is one line for the user."""


class HelperGone(Exception):
    """The helper had exited before the call was sent."""


class HelperAborted(HelperError):
    """The caller gave up waiting (a stop is due): the call's worker was killed."""


def _aborted(name: str) -> HelperAborted:
    return HelperAborted(f"stage1 {name}: abandoned, the pod is being stopped")


class Helper:
    """The monitor's end: forks the helper, makes calls, lets it go."""

    def __init__(self, pid: int, sock, lock_fd: int):
        self.pid, self.sock, self.lock_fd = pid, sock, lock_fd
        self.reaped = False  # set by the monitor when its reaping loop collected the helper

    @classmethod
    def start(cls, data_dir: str, config_dir: str, uuid: str, lock_fd: int) -> "Helper":
        """Fork the helper for the pod locked by `lock_fd` (which it does not keep)."""
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # never returns
            ours.close()
            _serve(theirs, data_dir, config_dir, uuid)
        theirs.close()
        return cls(pid, ours, lock_fd)

    def call(self, name: str, state: dict, args: list, fds: tuple[int, ...] = (), wait=None):
        """Run actions.<name>(data, config, uuid, state, *args, *fds) in a worker. Raises
        HelperGone if the helper was gone before the call was sent (nothing ran: the caller
        may start another helper), HelperError if the call failed. `wait(fd)`, if given, is
        called to wait for the answer on `fd`; if it returns False the call is abandoned:
        the helper is killed (its worker dies with it) and HelperAborted raised."""
        msg = json.dumps({"name": name, "args": args, "state": state}).encode()
        fds = (self.lock_fd, *fds)
        anc = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
        try:
            self.sock.sendmsg([msg], anc)
        except OSError as e:
            raise HelperGone(str(e)) from None
        if wait is not None and not wait(self.sock.fileno()):
            self.kill()
            raise _aborted(name)
        return _result(self.sock, name, "the helper died")

    def kill(self) -> None:
        """Kill the helper, its worker and whatever the worker runs, now; reap the helper."""
        if not self.reaped:
            from rktnetes.host.procs import kill_tree

            kill_tree(self.pid)
        self.close()

    def close(self) -> None:
        """Let the helper go (it exits on end of file) and reap it."""
        self.sock.close()
        if not self.reaped:
            os.waitpid(self.pid, 0)


def _serve(sock, data_dir: str, config_dir: str, uuid: str) -> None:
    code = 0
    try:
        _detach_from_monitor({sock.fileno()})
        try:
            from rktnetes.supervise import actions

            actions.preload()
            broken = ""
        except BaseException as e:  # noqa: BLE001 - answered to every call instead
            broken = f"stage1 helper: {e.__class__.__name__}: {e}"
        while True:
            try:
                data, anc, _, _ = sock.recvmsg(_MAX_MSG, _socket.CMSG_SPACE(_MAX_FDS * 4),
                                               _socket.MSG_CMSG_CLOEXEC)
            except OSError:
                break
            if not data:
                break  # the monitor let us go, or died
            fds = [fd for level, kind, raw in anc
                   if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS
                   for fd in struct.unpack(f"{len(raw) // 4}i", raw[:len(raw) // 4 * 4])]
            req = json.loads(data)
            if broken:
                _answer(sock, {"error": broken})
            else:
                pid = _spawn_worker(sock, req, fds, data_dir, config_dir, uuid)
                _, status = os.waitpid(pid, 0)
                if status != 0:
                    _answer(sock, {"error": f"stage1 {req['name']}: its worker died"})
            for fd in fds:
                os.close(fd)
    except BaseException:  # noqa: BLE001
        code = 1
    finally:
        os._exit(code)


def _result(sock, name: str, died: str):
    """The answer to a call on `sock`: its result, or HelperError."""
    try:
        data = sock.recv(_MAX_MSG)
    except OSError:
        data = b""  # it died during the call: reported below, never retried
    try:
        res = json.loads(data or b"{}")
    except ValueError:
        res = {}
    if "ok" not in res:
        raise HelperError(res.get("error") or f"stage1 {name}: {died}")
    return res["ok"]


def _spawn_worker(sock, req: dict, fds: list[int], data_dir: str, config_dir: str,
                  uuid: str) -> int:
    """Fork a child that runs one call, answers on `sock` and exits; returns its pid.
    fds[0] is the pod's lock, which the child holds until it exits."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            gc.disable()  # a collection would touch, and so copy, every page of the parent's
            _detach_from_monitor({sock.fileno(), *fds})
            _answer(sock, run_action(req["name"], req["state"], [*req["args"], *fds[1:]],
                                     data_dir, config_dir, uuid))
            code = 0
        finally:
            os._exit(code)
    return pid


def run_action(name: str, state: dict, args: list, data_dir: str, config_dir: str,
               uuid: str) -> dict:
    """Run rktnetes.supervise.actions.<name>: {"ok": result} or {"error": "one line"}."""
    try:
        from rktnetes.errors import RktError
        from rktnetes.supervise import actions

        try:
            return {"ok": actions.dispatch(name, data_dir, config_dir, uuid, state, args)}
        except RktError as e:
            return {"error": str(e)}
    except BaseException as e:  # noqa: BLE001 - reported, never raised past a fork
        return {"error": f"{e.__class__.__name__}: {e}"}


def _detach_from_monitor(keep: set[int]) -> None:
    """In a forked child of the monitor: its signals are the monitor's to handle (^C at the
    terminal reaches the whole process group); caught, not ignored, so that exec resets them
    for what the child starts. Of its descriptors, only stdio and `keep` stay open: no pipe
    ends or locks of the monitor's, nothing the user's shell left open for `rkt`."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _noop)
    low = 3
    for fd in sorted(fd for fd in keep if fd >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


class LocalHelper:
    """The calls of a monitor that is a foreground `rkt run`, each in a child forked from it.

    The child is a worker as the helper's are: it holds the pod's lock (its copy of our
    descriptor) for the whole call, so a `kill -9` of `rkt run` never frees the pod while a
    CNI plugin or runc it started is still at work; it keeps only stdio and the call's
    descriptors; it exits right after the call, so what it started is reparented to the
    monitor, the subreaper. The modules the calls need are loaded here, once, before the first
    fork, so no child imports them again."""

    pid = -1        # never a child the monitor's reaping loop collects
    reaped = False

    def __init__(self, data_dir: str, config_dir: str, uuid: str, lock_fd: int, flavor: str,
                 cni: bool):
        self.data_dir, self.config_dir, self.uuid = data_dir, config_dir, uuid
        self.lock_fd, self.flavor, self.cni = lock_fd, flavor, cni
        self.loaded = False

    def call(self, name: str, state: dict, args: list, fds: tuple[int, ...] = (), wait=None):
        if not self.loaded:
            try:
                from rktnetes.supervise import actions

                actions.preload(self.flavor, self.cni)
            except Exception as e:  # noqa: BLE001 - the call fails with it, in one line
                raise HelperError(f"stage1 {name}: {e}") from None
            self.loaded = True
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        try:
            try:
                pid = _spawn_worker(theirs, {"name": name, "state": state, "args": args},
                                    [self.lock_fd, *fds], self.data_dir, self.config_dir,
                                    self.uuid)
            finally:
                theirs.close()
            try:
                if wait is not None and not wait(ours.fileno()):
                    from rktnetes.host.procs import kill_tree

                    kill_tree(pid)
                    raise _aborted(name)
                return _result(ours, name, "its worker died")
            finally:
                os.waitpid(pid, 0)
        finally:
            ours.close()

    def close(self) -> None:
        pass


def _noop(signum, frame) -> None:
    pass


def _answer(sock, res: dict) -> None:
    sock.send(json.dumps(res).encode())
