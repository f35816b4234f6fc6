"""Undo everything a pod's journal (resources.jsonl) records, from any process, after any crash.

Each undo tolerates "already gone", so running this twice, or on a journal entry whose resource
was never created, is harmless. Order: processes and containers first (they pin mounts and
cgroups), then mounts (reverse order, deepest first), network namespaces, cgroups, directories.
The caller holds the pod's lock (the monitor, or `rkt stop|rm|gc` once the monitor is gone).

Paths inside the pod directory are journaled relative to it (the directory moves between state
directories); a cgroup `path` that is not under /sys/fs/cgroup names that cgroup in every
mounted hierarchy.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from pathlib import Path

from rktnetes.config import Paths
from rktnetes.errors import PodError
from rktnetes.lazylog import getLogger

from . import resources
from .store import Pod


log = getLogger(__name__)


def _abs(pod: Pod, p: str) -> str:
    return p if os.path.isabs(p) else str(pod.path / p)


def kill_process(pid: int, starttime: int, timeout: float = 5.0) -> None:
    """SIGKILL `pid` if it is still the process that was journaled; wait until it is gone."""
    from rktnetes.stage1.sys import starttime as st

    if not pid:
        return
    try:  # a pidfd pins the process: no pid reuse between the check and the kill
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:
        pidfd = -1  # no pidfds (Linux < 5.3): signal by pid and poll below
    try:
        if st(pid) != starttime:
            return
        if pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            # readable once it has exited: no sleeping in steps
            select.select([pidfd], [], [], timeout)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # our own child (the monitor's infra): reaped
            return
    finally:
        if pidfd >= 0:
            os.close(pidfd)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while st(pid) == starttime and time.monotonic() < deadline:
        try:  # our own child (the monitor's infra): reap it, or it stays a zombie
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        if _is_zombie(pid):
            return  # dead; its parent will reap it
        time.sleep(0.01)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] in (b"Z", b"X")
    except (FileNotFoundError, ValueError):
        return True


def cleanup_from_journal(paths: Paths, pod: Pod) -> list[str]:
    """Undo every journaled resource of `pod`. Returns the problems that remain (empty when the
    host is clean); raises PodError only if the journal cannot be read at all."""
    from rktnetes.stage1 import cgroups
    from rktnetes.stage1 import sys as lsys
    from rktnetes.stage1.ociruntime import OCIRuntime

    try:
        entries = resources.load(pod.path)
    except OSError as e:
        raise PodError(f"pod {pod.uuid}: cannot read its resource journal: {e}") from None
    problems: list[str] = []

    def attempt(what: str, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - keep undoing the rest, report at the end
            problems.append(f"{what}: {e}")

    by_kind: dict[str, list] = {}
    for res in entries:
        by_kind.setdefault(res.kind, []).append(res)

    for res in reversed(by_kind.get("runc", [])):
        rt = OCIRuntime(res.data.get("runtime", "runc"), Path(_abs(pod, res.data["root"])))
        attempt(f"container {res.data['id']}", rt.delete, res.data["id"])
    for res in reversed(by_kind.get("process", [])):
        attempt(f"process {res.data.get('pid')}", kill_process, int(res.data.get("pid", 0)),
                int(res.data.get("starttime", 0)))
    for res in reversed(by_kind.get("cni", [])):
        # CNI DEL belongs to the networking code; it reads its own journal entries. In
        # reverse order of creation, and before the netns they live in is removed (below).
        with contextlib.suppress(ImportError):
            from rktnetes.net import cleanup as netcleanup  # type: ignore[attr-defined]

            attempt(f"cni {res.data.get('network')}", netcleanup.undo, paths, pod, res)
    mounts = [_abs(pod, r.data["path"]) for r in by_kind.get("mount", [])]
    # anything still mounted below the pod directory, journaled or not, goes too
    mounts += [m for m in lsys.mounts_under(str(pod.path)) if m not in mounts]
    for mp in reversed(mounts):
        for sub in lsys.mounts_under(mp):
            attempt(f"umount {sub}", lsys.umount, sub)
    for res in reversed(by_kind.get("netns", [])):
        p = _abs(pod, res.data["path"])
        attempt(f"umount {p}", lsys.umount, p)
        with contextlib.suppress(FileNotFoundError):
            attempt(f"remove {p}", _unlink, p)
    cg = [r.data["path"] for r in by_kind.get("cgroup", [])]
    for path in sorted(set(cg), key=lambda p: p.count("/"), reverse=True):
        if path.startswith("/sys/fs/cgroup/"):
            attempt(f"cgroup {path}", _rmdir, path)
        else:
            attempt(f"cgroup {path}", cgroups.remove, path)
    from rktnetes.fsutil import rmtree

    for res in reversed(by_kind.get("dir", [])):
        p = Path(_abs(pod, res.data["path"]))
        if not lsys.mounts_under(str(p)):
            attempt(f"remove {p}", rmtree, p)
    for p in problems:
        log.warning("pod %s: %s", pod.uuid, p)
    return problems


def _unlink(p: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(p)


def _rmdir(p: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(p)
