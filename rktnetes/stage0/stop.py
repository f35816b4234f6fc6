"""`rkt stop`: ask a running pod's monitor to stop it, or clean up after a monitor that died.

A held lock on a `run` pod means its monitor is alive: we leave it a stop request (grace period,
force) and signal it; it stops the apps (TERM, then KILL after the grace) and moves the pod to
`exited-garbage`. A free lock means the monitor is gone: we take the lock and undo the pod's
journal ourselves.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time

from rktnetes.config import Paths
from rktnetes.errors import NotRunning, PodError, RktError, TimedOut
from rktnetes.pod import state as st
from rktnetes.pod.store import EXITED_GARBAGE, GARBAGE, RUN, Pod
from rktnetes.supervise.control import monitor_alive, request_stop

from .podfs import undo_resources

log = logging.getLogger(__name__)

# How long past the grace period we wait for the monitor to finish undoing the pod.
STOP_MARGIN = 30.0


def reap_dead(paths: Paths, pod: Pod, message: str = "monitor died",
              timeout: float | None = None) -> None:
    """A `run` pod whose monitor is gone: stop what of it still runs, undo its journal, close
    its apps' records, move it to `exited-garbage`. The caller holds the pod's lock.

    timeout: apps still running get their stop signal and that long to exit before they are
    killed (`rkt stop`); 0 or None kills them at once (`rkt stop --force`, `gc`, `rm`). Exit statuses that only
    the dead monitor could have collected are inferred where the signal that ended the app is
    certain (a signal it neither caught nor ignored), and reported unknown (255) otherwise."""
    try:
        apps = pod.manifest().apps
    except (OSError, ValueError):
        apps = []
    states = {a.name: pod.app_state(a.name) for a in apps}
    live = [a for a in apps if states[a.name].process_alive()]
    if live and timeout:
        _stop_unsupervised(paths, pod, live, states, timeout)
    killed = {a.name for a in live if states[a.name].process_alive()}  # the undo kills them
    for problem in undo_resources(paths, pod):
        # the journal stays with the pod: `rkt rm|gc` try again before deleting it
        log.warning("pod %s: %s", pod.uuid, problem)
    now = time.time()
    for name, a in states.items():
        if a.state == st.EXITED:
            continue
        if name in killed:
            a.exit_code, a.signal = 128 + signal.SIGKILL, int(signal.SIGKILL)
            a.message = f"killed: its pod's monitor was gone ({message})"
        elif a.state == st.RUNNING and a.stop_signal and a.stop_fatal:
            a.exit_code, a.signal = 128 + a.stop_signal, a.stop_signal
            a.message = (f"ended by its stop signal {_signame(a.stop_signal)}, as its pod's "
                         f"monitor ({message}) could not confirm")
        else:
            a.message = message   # and 255: its exit status went with its monitor
            if a.exit_code is None:
                a.exit_code = 255 if a.started_at else -1
        a.state = st.EXITED
        a.reason = st.ERROR
        a.finished_at = a.finished_at or now
        pod.save_app_state(a)
    ps = pod.pod_state()
    ps.finished_at = ps.finished_at or now
    ps.error = ps.error or message
    with contextlib.suppress(OSError):
        pod.save_pod_state(ps)
    pod.move(EXITED_GARBAGE)


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def _stop_unsupervised(paths: Paths, pod: Pod, live: list, states: dict, timeout: float) -> None:
    """What the monitor would have done: each running app's stop signal through its stage1
    (KILL in place of one its PID namespace's init would drop), then `timeout` to exit."""
    from rktnetes.host import signals
    from rktnetes.stage1 import get_stage1
    from rktnetes.stage1.base import PodContext

    try:
        ctx = PodContext.load(paths, pod)
        s1 = get_stage1(ctx.manifest.stage1)
    except (RktError, OSError, ValueError) as e:
        log.warning("pod %s: cannot signal its apps (%s): killing them", pod.uuid, e)
        return
    for app in live:
        a = states[app.name]
        sig = signals.number(app.stop_signal)
        fate = signals.fate(a.pid, sig)
        a.stop_signal, a.stop_fatal = sig, fate in (signals.DIES, signals.DROPPED)
        pod.save_app_state(a)
        try:
            s1.signal_app(ctx, app, signal.SIGKILL if fate == signals.DROPPED else sig)
        except (RktError, OSError) as e:
            log.warning("pod %s: app %s: %s", pod.uuid, app.name, e)
    deadline = time.monotonic() + timeout
    while any(states[a.name].process_alive() for a in live) and time.monotonic() < deadline:
        time.sleep(0.05)


def try_reap(paths: Paths, pod: Pod, timeout: float | None = None) -> bool:
    """Reap a `run` pod if its lock is free; False if someone holds it."""
    try:
        lock = pod.lock()
    except PodError:
        return True
    try:
        if not lock.acquire(blocking=False):
            return False
        pod.refresh()
        if pod.state == RUN:
            reap_dead(paths, pod, timeout=timeout)
        return True
    finally:
        lock.close()


def stop(paths: Paths, pod: Pod, timeout: float = 10.0, force: bool = False) -> None:
    """Returns once the pod is no longer running."""
    wait = (0 if force else timeout) + STOP_MARGIN
    deadline = time.monotonic() + wait
    requested = 0
    with pod.watch() as changed:
        while True:
            try:
                pod.refresh()
            except PodError:
                return  # removed meanwhile: certainly stopped
            if pod.state in (EXITED_GARBAGE, GARBAGE):
                # moved by its monitor, which lets go of the pod's lock as it exits, a moment
                # later: until then `rkt rm` would find the pod busy
                while pod.is_locked() and time.monotonic() < deadline:
                    changed.wait(0.005)
                return
            if pod.state != RUN:
                from .status import display_state

                raise NotRunning(f"pod {pod.uuid} is not running "
                                 f"(it is {display_state(pod.state)})")
            if not pod.is_locked():
                if try_reap(paths, pod, 0 if force else timeout):
                    continue
            pid = monitor_alive(pod)  # pid and start time: a foreground monitor is `rkt run` itself
            if pid and requested != pid:
                with contextlib.suppress(OSError):
                    request_stop(pod, 0 if force else timeout, force)
                requested = pid
            if time.monotonic() > deadline:
                raise TimedOut(f"pod {pod.uuid}: still running {wait:.0f}s after the stop request")
            changed.wait(0.05)   # a monitor that died shows in no file
