"""`rkt stop`: ask a running pod's monitor to stop it, or clean up after a monitor that died.

A held lock on a `run` pod means its monitor is alive: we leave it a stop request (grace period,
force) and signal it; it stops the apps (TERM, then KILL after the grace) and moves the pod to
`exited-garbage`. A free lock means the monitor is gone: we take the lock and undo the pod's
journal ourselves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time

from rktnetes.config import Paths
from rktnetes.errors import PodError
from rktnetes.fsutil import atomic_write_json
from rktnetes.pod import state as st
from rktnetes.pod.store import EXITED_GARBAGE, GARBAGE, RUN, Pod
from rktnetes.supervise.control import monitor_alive

from .podfs import undo_resources

log = logging.getLogger(__name__)

# How long past the grace period we wait for the monitor to finish undoing the pod.
STOP_MARGIN = 30.0


def reap_dead(paths: Paths, pod: Pod, message: str = "monitor died") -> None:
    """A `run` pod whose monitor is gone: undo its journal, close its apps' records, move it to
    `exited-garbage`. The caller holds the pod's lock."""
    for problem in undo_resources(paths, pod):
        # the journal stays with the pod: `rkt rm|gc` try again before deleting it
        log.warning("pod %s: %s", pod.uuid, problem)
    now = time.time()
    try:
        names = [a.name for a in pod.manifest().apps]
    except (OSError, ValueError):
        names = []
    for name in names:
        a = pod.app_state(name)
        if a.state != st.EXITED:
            a.state = st.EXITED
            a.reason = st.ERROR
            a.message = message
            if a.exit_code is None:
                a.exit_code = 255 if a.started_at else -1
            a.finished_at = a.finished_at or now
            pod.save_app_state(a)
    ps = pod.pod_state()
    ps.setdefault("finished_at", now)
    ps["error"] = ps.get("error") or message
    with contextlib.suppress(OSError):
        pod.save_pod_state(ps)
    pod.move(EXITED_GARBAGE)


def try_reap(paths: Paths, pod: Pod) -> bool:
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
            reap_dead(paths, pod)
        return True
    finally:
        lock.close()


def stop(paths: Paths, pod: Pod, timeout: float = 10.0, force: bool = False) -> None:
    """Returns once the pod is no longer running."""
    wait = (0 if force else timeout) + STOP_MARGIN
    deadline = time.monotonic() + wait
    requested = 0
    while True:
        try:
            pod.refresh()
        except PodError:
            return  # removed meanwhile: certainly stopped
        if pod.state in (EXITED_GARBAGE, GARBAGE):
            return
        if pod.state != RUN:
            from .status import display_state

            raise PodError(f"pod {pod.uuid} is not running (it is {display_state(pod.state)})")
        if not pod.is_locked():
            if try_reap(paths, pod):
                continue
        pid = monitor_alive(pod)  # pid and start time: a foreground monitor is `rkt run` itself
        if pid and requested != pid:
            with contextlib.suppress(OSError):
                atomic_write_json(pod.path / "stop-request.json",
                                  {"timeout": 0 if force else timeout, "force": force})
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            requested = pid
        if time.monotonic() > deadline:
            raise PodError(f"pod {pod.uuid}: still running {wait:.0f}s after the stop request")
        time.sleep(0.05)
