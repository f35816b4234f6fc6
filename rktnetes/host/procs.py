"""Processes named by pid and start time, so that a recorded pid never names a newer process
that happens to reuse it."""

from __future__ import annotations


def starttime(pid: int) -> int:
    """Field 22 of /proc/PID/stat (clock ticks since boot): with the pid, names one process
    even after the pid is reused. 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    # comm (field 2) may hold spaces and parens: split after the last ')'
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def alive(pid: int, started: int) -> bool:
    """The process recorded as (pid, start time) still runs (a zombie counts as gone)."""
    if pid <= 0 or not started:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    fields = stat[stat.rindex(b")") + 2:].split()
    return int(fields[19]) == started and fields[0] not in (b"Z", b"X")


def _children() -> dict[int, list[int]]:
    """Parent pid -> its children's pids, from /proc."""
    import os

    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        out.setdefault(ppid, []).append(int(name))
    return out


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and every process descended from it (a call's worker and what it ran: a
    CNI plugin, a runtime). `pid` must be our child (so it cannot be a reused pid); it is
    stopped first, so that it starts nothing new while its descendants are collected."""
    import os
    import signal

    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return
    tree, todo = [], [pid]
    kids = _children()
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += kids.get(p, [])
    for p in reversed(tree):   # the leaves first: nothing is reparented while it lives
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
