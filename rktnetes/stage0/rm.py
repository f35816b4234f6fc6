"""`rkt rm`: remove pods that are not running (as rkt, a running pod must be stopped first)."""

from __future__ import annotations

from rktnetes.config import Paths
from rktnetes.errors import Busy, PodError
from rktnetes.pod.store import EMBRYO, PREPARE, RUN, Pod

from .podfs import remove_pod_dir
from .stop import reap_dead


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
