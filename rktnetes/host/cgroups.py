"""Cgroup v1 (every controller hierarchy) and v2 paths: find, remove, read OOM counters.

A cgroup is named by its path inside a hierarchy (`/rktnetes/<uuid>/<app>`); the same path
exists in each mounted hierarchy the runtime placed it in.
"""

from __future__ import annotations

import errno
import os
import signal
import time


def hierarchies() -> list[str]:
    """Mount points of every cgroup (v1) and cgroup2 hierarchy."""
    out = []
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2] in ("cgroup", "cgroup2"):
                out.append(parts[1])
    return out


def dirs(cgpath: str) -> list[str]:
    """Existing directories of `cgpath` in all hierarchies."""
    rel = cgpath.strip("/")
    return [d for d in (os.path.join(h, rel) for h in hierarchies()) if os.path.isdir(d)]


def _procs(d: str) -> list[int]:
    try:
        with open(os.path.join(d, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def remove(cgpath: str, timeout: float = 5.0) -> None:
    """rmdir the cgroup (and any children) everywhere; processes left inside are killed."""
    for top in dirs(cgpath):
        subdirs = [r for r, _, _ in os.walk(top)]
        for d in sorted(subdirs, key=lambda p: p.count("/"), reverse=True):
            deadline = time.monotonic() + timeout
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise
                    for pid in _procs(d):
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    time.sleep(0.02)


def oom_kills(cgpath: str) -> int:
    """How many processes the OOM killer took from this cgroup (v2 memory.events or the
    v1 memory.oom_control `oom_kill` counter)."""
    total = 0
    for d in dirs(cgpath):
        for name in ("memory.events", "memory.oom_control"):
            try:
                with open(os.path.join(d, name)) as f:
                    for line in f:
                        k, _, v = line.partition(" ")
                        if k == "oom_kill":
                            total = max(total, int(v))
            except OSError:
                continue
    return total
