"""Processes: starting them without `subprocess` (the monitor must stay small), naming them by
pid and start time (so a recorded pid never names a newer process that reuses it), killing
them and their descendants.

`run` is posix_spawn + waitpid for tools (runc, nsenter); `fork_exec` forks a child that
prepares itself (namespaces, mounts, chroot, ids) and waits for the parent's go-ahead, so
the parent can journal the child's pid before the child does anything.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and dataclasses are heavy for the monitor, which imports this
    from collections.abc import Callable

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def prctl(option: int, arg: int) -> None:
    import ctypes

    from .libc import check, libc

    check(libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), "prctl")


def set_child_subreaper() -> None:
    """Orphaned descendants (a container's init once `runc run --detach` exits) become our
    children, so the monitor can waitpid them for their exit status."""
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def boot_id() -> str:
    """This boot's id: a pid and start time recorded in an earlier boot name nothing now."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def starttime(pid: int) -> int:
    """Field 22 of /proc/PID/stat (clock ticks since boot): with the pid, names one process
    even after the pid is reused. 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    # comm (field 2) may hold spaces and parens: split after the last ')'
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def alive(pid: int, started: int, boot: str = "") -> bool:
    """The process recorded as (pid, start time[, boot id]) still runs (a zombie counts as
    gone; one recorded in another boot too)."""
    if pid <= 0 or not started or (boot and boot != boot_id()):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    fields = stat[stat.rindex(b")") + 2:].split()
    return int(fields[19]) == started and fields[0] not in (b"Z", b"X")


def _children() -> dict[int, list[int]]:
    """Parent pid -> its children's pids, from /proc."""
    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        out.setdefault(ppid, []).append(int(name))
    return out


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and every process descended from it (a call's worker and what it ran: a
    CNI plugin, a runtime). `pid` must be our child (so it cannot be a reused pid). Every
    process of the tree is stopped first, the tree looked at again until it holds no new
    one, and only then is each killed: none can start another, nor be reparented and go on."""
    import signal

    stopped: set[int] = set()
    todo = [pid]
    while todo:
        for p in todo:
            try:
                os.kill(p, signal.SIGSTOP)
                stopped.add(p)
            except ProcessLookupError:
                pass
        if not stopped:
            return
        kids = _children()
        tree, walk = set(), [pid]
        while walk:
            p = walk.pop()
            tree.add(p)
            walk += kids.get(p, [])
        todo = sorted(tree - stopped)   # started before its parent was stopped
    for p in stopped:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_process(pid: int, started: int, timeout: float = 5.0, boot: str = "") -> None:
    """SIGKILL `pid` if it is still the process recorded as started at `started` (in boot
    `boot`, when given); wait until it is gone."""
    if not pid or (boot and boot != boot_id()):
        return
    try:  # a pidfd pins the process: no pid reuse between the check and the kill
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:
        pidfd = -1  # no pidfds (Linux < 5.3): signal by pid and poll below
    try:
        if starttime(pid) != started:
            return
        if pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            # readable once it has exited: no sleeping in steps
            select.select([pidfd], [], [], timeout)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # our own child (the monitor's infra): reaped
            return
    finally:
        if pidfd >= 0:
            os.close(pidfd)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while starttime(pid) == started and time.monotonic() < deadline:
        try:  # our own child (the monitor's infra): reap it, or it stays a zombie
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        if _is_zombie(pid):
            return  # dead; its parent will reap it
        time.sleep(0.01)


def signal_process(pid: int, started: int, sig: int, boot: str = "") -> bool:
    """Send `sig` to the process recorded as (pid, start time[, boot]) if it is still that
    process; a pidfd pins it, so a reused pid is never signalled. False if it is gone."""
    if not alive(pid, started, boot):
        return False
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if starttime(pid) != started:
            return False
        signal.pidfd_send_signal(pidfd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] in (b"Z", b"X")
    except (FileNotFoundError, ValueError):
        return True


# What a program expects to find at their defaults; Python itself ignores SIGPIPE and SIGXFSZ,
# and an exec keeps an ignored disposition.
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD, signal.SIGTERM,
                    signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


class Completed:
    __slots__ = ("returncode", "stdout", "stderr")

    def __init__(self, returncode: int, stdout: bytes, stderr: bytes):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

    @property
    def err_line(self) -> str:
        """The tool's last stderr line, for one-line error messages."""
        lines = [x for x in self.stderr.decode(errors="replace").splitlines() if x.strip()]
        return lines[-1].strip() if lines else f"exit status {self.returncode}"


def exit_code(status: int) -> int:
    """A wait status as a shell would report it: the exit code, or 128+signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


SETSID = "/usr/bin/setsid"


def spawn(argv: list[str], fds: dict[int, int] | None = None, env: dict[str, str] | None = None,
          setsid: bool = False, ctty: bool = False) -> int:
    """posix_spawn `argv` with `fds` (target fd -> our fd) dup'ed in; returns the pid.
    ctty: its fd 0 (a pty's slave) becomes the controlling terminal of a new session, so
    that a window size set on the master reaches it as SIGWINCH (setsid(1) --ctty does it
    between fork and exec, where Python cannot)."""
    if ctty:
        argv = [SETSID, "--ctty", *argv]
    actions = []
    for target, ours in (fds or {}).items():
        actions.append((os.POSIX_SPAWN_DUP2, ours, target))
    return os.posix_spawnp(argv[0], argv, os.environ if env is None else env,
                           file_actions=actions, setsigdef=_DEFAULT_SIGNALS,
                           setsigmask=(), setsid=setsid)


def wait_exit(pid: int, timeout: float | None = None, cancel: int = -1) -> int | None:
    """Wait for our child `pid`; its exit code, or None if it still runs after `timeout`
    seconds (None: wait for as long as it takes) or once `cancel` (an fd) is readable."""
    if cancel >= 0 or timeout is not None:     # woken by the exit itself, not a timer
        pidfd = os.pidfd_open(pid)
        try:
            p = select.poll()
            p.register(pidfd, select.POLLIN)
            if cancel >= 0:
                p.register(cancel, select.POLLIN)
            ready = [fd for fd, _ in p.poll(None if timeout is None else int(timeout * 1000))]
        finally:
            os.close(pidfd)
        if pidfd not in ready:
            done, status = os.waitpid(pid, os.WNOHANG)
            return exit_code(status) if done else None
        _, status = os.waitpid(pid, 0)
        return exit_code(status)
    _, status = os.waitpid(pid, 0)
    return exit_code(status)


def run(argv: list[str], stdin: int | None = None, capture: bool = True,
        env: dict[str, str] | None = None) -> Completed:
    """Run a tool to completion; stdout/stderr captured (or inherited if not `capture`)."""
    fds: dict[int, int] = {}
    devnull = -1
    if stdin is None:
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        stdin = devnull
    fds[0] = stdin
    pipes = []
    if capture:
        for target in (1, 2):
            r, w = os.pipe2(os.O_CLOEXEC)
            fds[target] = w
            pipes.append((r, w))
    try:
        pid = spawn(argv, fds, env)
    except OSError:
        for r, w in pipes:
            os.close(r)
            os.close(w)
        raise
    finally:
        if devnull >= 0:
            os.close(devnull)
    for _, w in pipes:
        os.close(w)
    outs = [b"", b""]
    if capture:
        import select

        open_fds = {pipes[0][0]: 0, pipes[1][0]: 1}
        while open_fds:
            ready, _, _ = select.select(list(open_fds), [], [])
            for fd in ready:
                chunk = os.read(fd, 65536)
                if chunk:
                    outs[open_fds[fd]] += chunk
                else:
                    os.close(fd)
                    del open_fds[fd]
    _, status = os.waitpid(pid, 0)
    return Completed(exit_code(status), outs[0], outs[1])


def fork_exec(prepare: Callable[[], None], argv: list[str], env: dict[str, str],
              fds: dict[int, int], before_go: Callable[[int], None] | None = None) -> int:
    """Fork; the child waits for the go-ahead, runs `prepare()` (namespaces, mounts, chroot,
    ids), sets up `fds` as 0/1/2 and execs `argv`. The parent calls `before_go(pid)` (to
    journal the pid) first. Raises OSError with the child's message if it could not exec."""
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # child: never returns
        try:
            os.close(go_w)
            os.close(err_r)
            if not os.read(go_r, 1):
                os._exit(127)  # the parent gave up
            for sig in _DEFAULT_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            prepare()
            # dup2 onto 0/1/2 without clobbering a source that is itself 0/1/2
            srcs = {t: os.dup(s) for t, s in fds.items()}
            for target, src in srcs.items():
                os.dup2(src, target, inheritable=True)
            try:
                os.execvpe(argv[0], argv, env)
            except OSError as e:
                raise OSError(f"cannot execute {argv[0]}: {e.strerror}") from None
        except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
            msg = str(e)
            try:
                os.write(err_w, (msg or e.__class__.__name__).encode()[:4000])
            finally:
                os._exit(127)
    os.close(go_r)
    os.close(err_w)
    try:
        if before_go:
            before_go(pid)
        os.write(go_w, b"g")
    except BaseException:
        os.close(go_w)
        os.close(err_r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    os.close(go_w)
    msg = b""
    while True:  # EOF once exec succeeded (the pipe is close-on-exec) or the child died
        chunk = os.read(err_r, 4096)
        if not chunk:
            break
        msg += chunk
    os.close(err_r)
    if msg:
        os.waitpid(pid, 0)
        raise OSError(msg.decode(errors="replace"))
    return pid
