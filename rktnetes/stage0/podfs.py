"""Undoing and removing a pod directory, safely.

A pod directory may hold mount points (rootfs overlays, volume binds); deleting through a bind
mount of a host volume would delete the host's data, so every mount under the pod is gone
before a single file is removed, and removal refuses if one stays.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

from rktnetes.config import Paths
from rktnetes.errors import PodError
from rktnetes.fsutil import rmtree
from rktnetes.pod.store import GARBAGE, Pod

log = logging.getLogger(__name__)

MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)  # libc, already loaded (find_library runs ldconfig)


def _unescape(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 4 <= len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path`, deepest first."""
    prefix = os.path.realpath(path)
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = _unescape(line.split()[4])
                if mp == prefix or mp.startswith(prefix + "/"):
                    found.append(mp)
    except OSError:
        return []
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def unmount_all(path: Path) -> list[str]:
    """Lazily unmount everything under `path`; returns what is still mounted."""
    for _ in range(3):
        left = mounts_under(path)
        if not left:
            return []
        for mp in left:
            if _libc.umount2(mp.encode(), MNT_DETACH) != 0:
                err = ctypes.get_errno()
                log.debug("umount %s: %s", mp, os.strerror(err))
    return mounts_under(path)


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
