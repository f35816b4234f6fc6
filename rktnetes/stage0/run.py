"""`rkt run` / `rkt run-prepared`: move a prepared pod to `run` and hand it to its monitor.

The pod's lock passes to the monitor, so it is held without a gap from `prepared` to exit:
whoever finds a `run` pod unlocked knows its monitor is gone. Foreground: this process becomes
the monitor (as rkt's stage0 execs stage1), so signals, stdio and the exit code are the
monitor's own, and nothing is started or loaded twice. Detached: a lean monitor process is
spawned in its own session, inheriting the lock's descriptor, and we return once it reports
the pod started.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from rktnetes.config import Paths
from rktnetes.errors import PodError, StartInterrupted, TimedOut, UsageError
from rktnetes.pod import state as st
from rktnetes.pod.protocol import MONITOR_LOG
from rktnetes.pod.store import EXITED_GARBAGE, GARBAGE, PREPARED, RUN, Pod, PodLock
from rktnetes.supervise.control import monitor_argv

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess

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


def set_interactive(pod: Pod) -> None:
    m = pod.manifest()
    m.apps[0].interactive = True
    m.apps[0].tty = sys.stdin.isatty()
    pod.save_manifest(m)


def start(paths: Paths, pod: Pod, lock: PodLock, detach: bool, interactive: bool = False,
          uuid_file: str = "") -> int:
    """Run a prepared pod whose lock the caller holds. Foreground: does not return once the pod
    has started; the process exits with the pod's exit code. Detached: 0 once it started."""
    pod.refresh()
    if pod.state != PREPARED:
        from .status import not_runnable  # user-facing state names, as `rkt list`

        raise not_runnable(pod)
    check_run_mode(pod, detach, interactive)
    if interactive:
        set_interactive(pod)
    if uuid_file:
        try:
            Path(uuid_file).write_text(pod.uuid + "\n")
        except OSError as e:  # checked before the pod was made; the caller discards it
            raise PodError(f"--uuid-file-save {uuid_file[:80]}: {e.strerror or e}") from None
    if detach:
        return spawn_detached(paths, pod, lock)
    pod.move(RUN)
    from rktnetes.supervise.monitor import run_foreground

    _flush_stdio()
    code = run_foreground(str(paths.data), str(paths.config), pod.uuid, lock.fd)
    # The pod has exited and all of it is on disk: leave without the interpreter's teardown
    # of every module loaded by now (~20 ms of each `rkt run`).
    _flush_stdio()
    os._exit(code)


def _flush_stdio() -> None:
    for f in (sys.stdout, sys.stderr):
        try:
            if f is not None:  # None: started with the descriptor closed (`>&-`)
                f.flush()
        except (OSError, ValueError):
            pass


def spawn_detached(paths: Paths, pod: Pod, lock: PodLock) -> int:
    """Move the prepared pod to `run` and hand it to a monitor of its own (a new session, so
    our ^C is not its); return once it has started the pod. A ^C from the move until the
    monitor holds the pod is held back, then raised as StartInterrupted, which names the pod:
    no pod is ever left in `run` without a monitor, nor running unnamed."""
    import signal
    import subprocess  # here: a foreground run never needs it, and it costs milliseconds

    held: list[int] = []
    old = signal.signal(signal.SIGINT, lambda sig, frame: held.append(sig))
    try:
        fd = lock.inheritable()
        pod.move(RUN)
        try:
            with open(os.devnull, "rb") as devnull, \
                    open(pod.path / MONITOR_LOG, "ab") as logf:
                proc = subprocess.Popen(monitor_argv(paths, pod.uuid, fd), stdin=devnull,
                                        stdout=logf, stderr=logf, pass_fds=(fd,),
                                        start_new_session=True)
        except BaseException:  # no monitor could start: the pod never ran
            pod.move(PREPARED)   # we still hold its lock; the caller discards or keeps it
            raise
        lock.close()  # the monitor's copy of the descriptor holds the lock from here on
    finally:
        signal.signal(signal.SIGINT, old)
    try:
        if held:
            raise KeyboardInterrupt
        wait_started(pod, proc)
    except KeyboardInterrupt:
        raise StartInterrupted(f"interrupted; pod {pod.uuid} was already starting and goes on "
                               f"in the background (`rkt stop {pod.uuid}` stops it)") from None
    return 0


def _started(pod: Pod) -> bool:
    """The monitor says the pod is ready (every app started), or every app has a verdict."""
    if pod.pod_state().ready:
        return True
    try:
        names = [a.name for a in pod.manifest().apps]
    except (OSError, ValueError):
        return False
    return bool(names) and all(pod.app_state(n).state in (st.RUNNING, st.EXITED) for n in names)


def wait_started(pod: Pod, proc: subprocess.Popen, timeout: float = START_TIMEOUT) -> None:
    """Until the monitor reports the pod started, the pod exits, or the monitor dies."""
    deadline = time.monotonic() + timeout
    delay = 0.005
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
                raise PodError(f"pod {pod.uuid}: the monitor exited ({proc.returncode}) before "
                               f"starting the pod; see {pod.path / MONITOR_LOG}")
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    raise TimedOut(f"pod {pod.uuid}: not started after {timeout:.0f}s")
