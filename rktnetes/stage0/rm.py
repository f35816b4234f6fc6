"""`rkt rm`: remove pods that are not running (as rkt, a running pod must be stopped first)."""

from __future__ import annotations

import contextlib

from rktnetes.config import Paths
from rktnetes.errors import Busy, NotFoundError, NotRunning, PodError
from rktnetes.pod.store import EMBRYO, PREPARE, RUN, Pod

from .podfs import remove_pod_dir
from .stop import reap_dead, stop


def rm(paths: Paths, pod: Pod) -> None:
    lock = pod.lock()
    try:
        if not lock.acquire(blocking=False):
            pod.refresh()
            if pod.state == RUN:
                raise PodError(f"pod {pod.uuid} is running: stop it first (rkt stop {pod.uuid})")
            if pod.state in (EMBRYO, PREPARE):
                raise Busy(f"pod {pod.uuid} is being prepared")
            raise Busy(f"pod {pod.uuid} is busy (another rkt command holds it); try again")
        pod.refresh()
        if pod.state == RUN:
            reap_dead(paths, pod)  # its monitor died: finish it as gc would
        remove_pod_dir(paths, pod)
    finally:
        lock.close()


def remove_pod(paths: Paths, pod: Pod, force: bool = True, timeout: float = 10.0) -> None:
    """Stop the pod if it runs (`force`: at once), then remove it."""
    with contextlib.suppress(NotRunning):
        stop(paths, pod, timeout=0 if force else timeout, force=force)
    try:
        pod.refresh()
    except (NotFoundError, PodError):
        return
    rm(paths, pod)
