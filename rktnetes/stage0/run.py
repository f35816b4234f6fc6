"""`rkt run` / `rkt run-prepared`: move a prepared pod to `run` and hand it to its monitor.

The pod's lock passes to the monitor, so it is held without a gap from `prepared` to exit:
whoever finds a `run` pod unlocked knows its monitor is gone. Foreground: this process becomes
the monitor (as rkt's stage0 execs stage1), so signals, stdio and the exit code are the
monitor's own, and nothing is started or loaded twice. Detached: a lean monitor process is
spawned in its own session, inheriting the lock's descriptor, and we return once it reports
the pod started.

Callable from any thread: what touches the process (its signals, its terminal, its exit) is the
caller's to pass in (`hold_interrupts`, `tty`) or to do with what is returned.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from rktnetes.config import Paths
from rktnetes.errors import PodError, StartInterrupted, TimedOut, UsageError
from rktnetes.pod import state as st
from rktnetes.pod.protocol import MONITOR_LOG
from rktnetes.pod.store import EXITED_GARBAGE, GARBAGE, PREPARED, RUN, Pod, PodLock
from rktnetes.supervise.control import monitor_args, monitor_argv

START_TIMEOUT = 120.0


def check_run_mode(pod: Pod, detach: bool, interactive: bool) -> None:
    """UsageError if the pod cannot run so: detached, an interactive pod would have no stdin
    (it would read end-of-file at once); interactive, it needs exactly one app."""
    if not (detach or interactive):
        return
    apps = pod.manifest().apps
    if detach and (interactive or any(a.interactive for a in apps)):
        raise UsageError("an interactive pod cannot run detached (--interactive and --detach)")
    if interactive and len(apps) != 1:
        raise UsageError("--interactive needs a pod of exactly one app")


def set_interactive(pod: Pod, tty: bool) -> None:
    m = pod.manifest()
    m.apps[0].interactive = True
    m.apps[0].tty = tty
    pod.save_manifest(m)


def start(paths: Paths, pod: Pod, lock: PodLock, detach: bool, interactive: bool = False,
          uuid_file: str = "", tty: bool = False, hold_interrupts=None, launcher=None) -> int:
    """Run a prepared pod whose lock the caller holds. Foreground: this process is the pod's
    monitor (its stdio the apps', its signals the monitor's: the main thread only) and this
    returns the pod's exit code once it has exited and been cleaned up. Detached: 0 once it
    started. interactive/tty: attach the pod's one app to our stdin (a terminal, if tty).
    hold_interrupts: a context manager under which the detached start must not be interrupted
    (the CLI holds ^C back); none by default. launcher: see spawn_detached."""
    pod.refresh()
    if pod.state != PREPARED:
        from .status import not_runnable  # user-facing state names, as `rkt list`

        raise not_runnable(pod)
    check_run_mode(pod, detach, interactive)
    if interactive:
        set_interactive(pod, tty)
    if uuid_file:
        try:
            Path(uuid_file).write_text(pod.uuid + "\n")
        except OSError as e:  # checked before the pod was made; the caller discards it
            raise PodError(f"--uuid-file-save {uuid_file[:80]}: {e.strerror or e}") from None
    if detach:
        return spawn_detached(paths, pod, lock, hold_interrupts, launcher)
    pod.move(RUN)
    from rktnetes.supervise.monitor import run_foreground

    flush_stdio()
    return run_foreground(str(paths.data), str(paths.config), pod.uuid, lock.fd)


def flush_stdio() -> None:
    for f in (sys.stdout, sys.stderr):
        try:
            if f is not None:  # None: started with the descriptor closed (`>&-`)
                f.flush()
        except (OSError, ValueError):
            pass


class InterruptsHeld:
    """For a front end's main thread (the CLI's): SIGINT held back while it is entered, and
    `pending` tells whether one came. The library installs no signal handler of its own."""

    def __init__(self):
        self.pending = False

    def __enter__(self) -> "InterruptsHeld":
        import signal

        self._old = signal.signal(signal.SIGINT, self._note)
        return self

    def _note(self, sig, frame) -> None:
        self.pending = True

    def __exit__(self, *exc) -> None:
        import signal

        signal.signal(signal.SIGINT, self._old)


def spawn_detached(paths: Paths, pod: Pod, lock: PodLock, hold_interrupts=None,
                   launcher=None) -> int:
    """Move the prepared pod to `run` and hand it to a monitor of its own (a new session, so
    our ^C is not its); return once it has started the pod. Under `hold_interrupts` (an
    InterruptsHeld, from the CLI) a ^C from the move until the monitor holds the pod is held
    back, then raised as StartInterrupted, which names the pod: no pod is ever left in `run`
    without a monitor, nor running unnamed. `launcher` (a supervise.launcher.Launcher, from a
    long-lived front end) forks the monitor warm; without one, or if it fails, the monitor is
    a new interpreter."""
    hold = hold_interrupts if hold_interrupts is not None else contextlib.nullcontext()
    with hold:
        fd = lock.inheritable()
        pod.move(RUN)
        try:
            proc = _warm_monitor(launcher, paths, pod, fd) if launcher is not None else None
            if proc is None:
                proc = _new_monitor(paths, pod, fd)
        except BaseException:  # no monitor could start: the pod never ran
            pod.move(PREPARED)   # we still hold its lock; the caller discards or keeps it
            raise
        lock.close()  # the monitor's copy of the descriptor holds the lock from here on
    try:
        if getattr(hold_interrupts, "pending", False):
            raise KeyboardInterrupt
        wait_started(pod, proc)
    except KeyboardInterrupt:
        raise StartInterrupted(f"interrupted; pod {pod.uuid} was already starting and goes on "
                               f"in the background (`rkt stop {pod.uuid}` stops it)") from None
    return 0


def _new_monitor(paths: Paths, pod: Pod, fd: int):
    import subprocess  # here: a foreground run never needs it, and it costs milliseconds

    with open(os.devnull, "rb") as devnull, open(pod.path / MONITOR_LOG, "ab") as logf:
        return subprocess.Popen(monitor_argv(paths, pod.uuid, fd), stdin=devnull, stdout=logf,
                                stderr=logf, pass_fds=(fd,), start_new_session=True)


def _warm_monitor(launcher, paths: Paths, pod: Pod, fd: int):
    """The monitor forked by the launcher, or None (then a new interpreter is started)."""
    from rktnetes.supervise.launcher import LauncherError

    try:
        return launcher.spawn(monitor_args(paths, pod.uuid), str(pod.path / MONITOR_LOG), fd)
    except LauncherError as e:
        from rktnetes.lazylog import getLogger

        getLogger(__name__).warning("pod %s: %s; starting its monitor anew", pod.uuid, e)
        return None


def _started(pod: Pod) -> bool:
    """The monitor says the pod is ready (every app started), or every app has a verdict."""
    if pod.pod_state().ready:
        return True
    try:
        names = [a.name for a in pod.manifest().apps]
    except (OSError, ValueError):
        return False
    return bool(names) and all(pod.app_state(n).state in (st.RUNNING, st.EXITED) for n in names)


def wait_started(pod: Pod, proc, timeout: float = START_TIMEOUT) -> None:
    """Until the monitor reports the pod started, the pod exits, or the monitor dies."""
    deadline = time.monotonic() + timeout
    with pod.watch() as changed:
        while time.monotonic() < deadline:
            try:
                pod.refresh()
            except PodError:
                return  # already removed by someone: it did run
            if pod.state in (EXITED_GARBAGE, GARBAGE):
                return
            if _started(pod):
                return
            if proc.poll() is not None:
                pod.refresh()
                if pod.state == RUN and not _started(pod):
                    how = "" if getattr(proc, "status_unknown", False) else \
                        f" ({proc.returncode})"
                    raise PodError(f"pod {pod.uuid}: the monitor exited{how} before starting "
                                   f"the pod; see {pod.path / MONITOR_LOG}")
                return
            changed.wait(0.05)   # a monitor that died shows in no file
    raise TimedOut(f"pod {pod.uuid}: not started after {timeout:.0f}s")


def run_pod(paths: Paths, spec, pull=None, detach: bool = False, uuid_file: str = "",
            hold_interrupts=None, discard_failed: bool = False,
            launcher=None) -> tuple[Pod, int]:
    """The whole of `rkt run`, and of a sandbox's start: prepare the pod, run it, and remove it
    if it never ran (`discard_failed`: also if it failed while starting). Returns the pod and
    its exit code (foreground: once it has exited; detached: 0 once it started)."""
    from rktnetes.pod.store import PREPARED as _PREPARED

    from .prepare import discard, prepare

    pod, lock = prepare(paths, spec, pull)
    try:
        code = start(paths, pod, lock, detach=detach, uuid_file=uuid_file,
                     interactive=spec.interactive, tty=spec.tty,
                     hold_interrupts=hold_interrupts, launcher=launcher)
    except BaseException:
        if pod.state == _PREPARED:
            discard(paths, pod, lock)  # never ran: leave nothing behind
        else:
            lock.close()
            if discard_failed:
                from .rm import remove_pod   # only on this failure path: keep run's imports lean

                with contextlib.suppress(Exception):   # the start's error is the one to tell
                    remove_pod(paths, pod, force=True)
        raise
    return pod, code

