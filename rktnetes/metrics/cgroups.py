"""What a cgroup has used, read from cgroup v1 controllers or the v2 unified files, whichever
the cgroup is in (a hybrid host has both; runc puts containers in the v1 controllers there).
The CRI's stats and a Prometheus endpoint share these readers; names follow cAdvisor's."""

from __future__ import annotations

import os
from dataclasses import dataclass

from rktnetes.host.cgroups import dirs


@dataclass
class Usage:
    cpu_ns: int | None = None              # cumulative CPU time, nanoseconds
    memory_bytes: int | None = None        # usage, page cache included
    working_set_bytes: int | None = None   # usage less inactive file pages (cAdvisor's)
    rss_bytes: int | None = None
    page_faults: int | None = None
    major_page_faults: int | None = None
    processes: int | None = None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _int(path: str) -> int | None:
    s = _read(path)
    try:
        return int(s.split()[0]) if s else None
    except ValueError:
        return None


def _kv(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read(path) or "").splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


def read(cgpath: str) -> Usage:
    """The cgroup's usage; fields stay None where no hierarchy has them."""
    u = Usage()
    for d in dirs(cgpath):
        if os.path.exists(os.path.join(d, "cgroup.controllers")):      # v2
            cpu = _kv(os.path.join(d, "cpu.stat"))
            if u.cpu_ns is None and "usage_usec" in cpu:
                u.cpu_ns = cpu["usage_usec"] * 1000
            cur = _int(os.path.join(d, "memory.current"))
            if u.memory_bytes is None and cur is not None:
                m = _kv(os.path.join(d, "memory.stat"))
                u.memory_bytes = cur
                u.working_set_bytes = max(0, cur - m.get("inactive_file", 0))
                u.rss_bytes = m.get("anon")
                u.page_faults, u.major_page_faults = m.get("pgfault"), m.get("pgmajfault")
        else:                                                           # v1
            ns = _int(os.path.join(d, "cpuacct.usage"))
            if ns is not None and u.cpu_ns is None:
                u.cpu_ns = ns
            usage = _int(os.path.join(d, "memory.usage_in_bytes"))
            if usage is not None and u.memory_bytes is None:
                m = _kv(os.path.join(d, "memory.stat"))
                u.memory_bytes = usage
                u.working_set_bytes = max(0, usage - m.get("total_inactive_file",
                                                           m.get("inactive_file", 0)))
                u.rss_bytes = m.get("total_rss", m.get("rss"))
                u.page_faults = m.get("total_pgfault", m.get("pgfault"))
                u.major_page_faults = m.get("total_pgmajfault", m.get("pgmajfault"))
        if u.processes is None:
            procs = _read(os.path.join(d, "cgroup.procs"))
            if procs is not None:
                u.processes = len(procs.split())
    return u
