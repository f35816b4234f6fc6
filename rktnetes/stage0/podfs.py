"""Undoing and removing a pod directory, safely.

A pod directory may hold mount points (rootfs overlays, volume binds); deleting through a bind
mount of a host volume would delete the host's data, so every mount under the pod is gone
before a single file is removed, and removal refuses if one stays.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rktnetes.config import Paths
from rktnetes.errors import PodError
from rktnetes.fsutil import rmtree
from rktnetes.host.mounts import mounts_under, unmount_all  # noqa: F401 - its callers'
from rktnetes.pod.store import GARBAGE, Pod

log = logging.getLogger(__name__)

def undo_resources(paths: Paths, pod: Pod) -> list[str]:
    """Undo the pod's journal (processes, runc containers, cgroups, mounts, netns ...);
    returns what could not be undone."""
    from rktnetes.pod.cleanup import cleanup_from_journal

    problems = list(cleanup_from_journal(paths, pod) or [])
    left = unmount_all(pod.path)
    return problems + [f"still mounted: {mp}" for mp in left]


def remove_pod_dir(paths: Paths, pod: Pod) -> None:
    """Undo everything and delete the pod. The caller holds the pod's lock.

    The pod goes to `garbage` first, so a crash halfway leaves it where `rkt gc` finishes it;
    if something cannot be undone the directory (and its journal) stays there for the next try.
    """
    if pod.state != GARBAGE:
        pod.move(GARBAGE)
    problems = undo_resources(paths, pod)
    if problems:
        raise PodError(f"pod {pod.uuid}: not removed, cannot undo {problems[0]}")
    rmtree(pod.path)
