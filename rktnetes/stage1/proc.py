"""Starting processes without the `subprocess` module (the monitor must stay small).

`run` is posix_spawn + waitpid for tools (runc, nsenter); `fork_exec` forks a child that
prepares itself (namespaces, mounts, chroot, ids) and waits for the parent's go-ahead, so
the parent can journal the child's pid before the child does anything.
"""

from __future__ import annotations

import os
import signal

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and dataclasses are heavy for the monitor, which imports this
    from collections.abc import Callable

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


def spawn(argv: list[str], fds: dict[int, int] | None = None, env: dict[str, str] | None = None,
          setsid: bool = False) -> int:
    """posix_spawn `argv` with `fds` (target fd -> our fd) dup'ed in; returns the pid."""
    actions = []
    for target, ours in (fds or {}).items():
        actions.append((os.POSIX_SPAWN_DUP2, ours, target))
    return os.posix_spawnp(argv[0], argv, os.environ if env is None else env,
                           file_actions=actions, setsigdef=_DEFAULT_SIGNALS,
                           setsigmask=(), setsid=setsid)


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
