"""Undo everything a pod's journal (resources.jsonl) records, from any process, after any crash.

Each journal kind is undone by the module that creates it: that module registers a handler for
its kind (`register`), and names itself as the entry's `owner`, which is imported here before
the undo, so pod/ knows no kind but the host's own (processes, mounts, network namespace
mounts, cgroups, directories). A qemu process or a tap device is one more owner, not an edit
here. Handlers run in phases: what pins others first (containers, processes), then network
attachments (before the namespace they live in), mounts, namespaces, cgroups, directories.

Each undo tolerates "already gone", so running this twice, or on a journal entry whose resource
was never created, is harmless. The caller holds the pod's lock (the monitor, or `rkt
stop|rm|gc` once the monitor is gone). Paths inside the pod directory are journaled relative to
it (the directory moves between state directories); a cgroup `path` that is not under
/sys/fs/cgroup names that cgroup in every mounted hierarchy.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from pathlib import Path

from rktnetes.config import Paths
from rktnetes.errors import PodError
from rktnetes.lazylog import getLogger

from . import resources
from .resources import Resource
from .store import Pod

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    # handler(paths, pod, entries in journal order) -> problems left
    Handler = Callable[[Paths, Pod, list[Resource]], list[str]]

log = getLogger(__name__)

# Phases, in the order they run.
CONTAINERS, PROCESSES, ATTACHMENTS, MOUNTS, NAMESPACES, CGROUPS, DIRECTORIES = \
    0, 10, 20, 30, 40, 50, 60

_HANDLERS: dict[str, tuple[int, Handler]] = {}

# Journals written before entries named their owner: the owners of the kinds they used.
_LEGACY_OWNERS = {"runc": "rktnetes.stage1.ociruntime", "cni": "rktnetes.net.cleanup"}


def register(kind: str, phase: int, handler: Handler) -> None:
    """Make `handler` the undo of journal entries of `kind` (done by the owning module when
    it is imported)."""
    _HANDLERS[kind] = (phase, handler)


def absolute(pod: Pod, p: str) -> str:
    """A journaled path: relative ones are inside the pod directory."""
    return p if os.path.isabs(p) else str(pod.path / p)


def attempt(problems: list[str], what: str, fn, *args) -> None:
    """Run one undo step; a failure is noted, and the undo of the rest goes on."""
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - keep undoing the rest, report at the end
        problems.append(f"{what}: {e}")


def cleanup_from_journal(paths: Paths, pod: Pod) -> list[str]:
    """Undo every journaled resource of `pod`. Returns the problems that remain (empty when the
    host is clean); raises PodError only if the journal cannot be read at all."""
    try:
        entries = resources.load(pod.path)
    except OSError as e:
        raise PodError(f"pod {pod.uuid}: cannot read its resource journal: {e}") from None
    problems: list[str] = []
    by_kind: dict[str, list[Resource]] = {"mount": []}   # mounts: the sweep below, always
    for res in entries:
        by_kind.setdefault(res.kind, []).append(res)
        owner = res.owner or _LEGACY_OWNERS.get(res.kind, "")
        if owner and res.kind not in _HANDLERS:
            try:
                importlib.import_module(owner)      # registers its kinds
            except ImportError as e:
                problems.append(f"{res.kind}: its owner {owner} cannot be loaded: {e}")
    for kind, items in sorted(by_kind.items(), key=lambda kv: _HANDLERS.get(kv[0], (99,))[0]):
        handler = _HANDLERS.get(kind)
        if handler is None:
            problems.append(f"{kind}: no module undoes this kind of resource")
            continue
        problems += handler[1](paths, pod, items)
    for p in problems:
        log.warning("pod %s: %s", pod.uuid, p)
    return problems


# -- the host's own kinds ------------------------------------------------------------------------

def _processes(paths: Paths, pod: Pod, items: list[Resource]) -> list[str]:
    from rktnetes.host.procs import kill_process

    problems: list[str] = []
    for res in reversed(items):
        attempt(problems, f"process {res.data.get('pid')}", kill_process,
                int(res.data.get("pid", 0)), int(res.data.get("starttime", 0)), 5.0,
                str(res.data.get("boot", "")))
    return problems


def _mounts(paths: Paths, pod: Pod, items: list[Resource]) -> list[str]:
    from rktnetes.host import mounts

    points = [absolute(pod, r.data["path"]) for r in items]
    # anything still mounted below the pod directory, journaled or not, goes too
    points += [m for m in mounts.mounts_under(str(pod.path)) if m not in points]
    problems: list[str] = []
    for mp in reversed(points):
        for sub in mounts.mounts_under(mp):
            attempt(problems, f"umount {sub}", mounts.umount, sub)
    return problems


def _netns(paths: Paths, pod: Pod, items: list[Resource]) -> list[str]:
    from rktnetes.host import mounts

    problems: list[str] = []
    for res in reversed(items):
        p = absolute(pod, res.data["path"])
        attempt(problems, f"umount {p}", mounts.umount, p)
        attempt(problems, f"remove {p}", _unlink, p)
    return problems


def _cgroups(paths: Paths, pod: Pod, items: list[Resource]) -> list[str]:
    from rktnetes.host import cgroups

    problems: list[str] = []
    for path in sorted({r.data["path"] for r in items}, key=lambda p: p.count("/"), reverse=True):
        if path.startswith("/sys/fs/cgroup/"):
            attempt(problems, f"cgroup {path}", _rmdir, path)
        else:
            attempt(problems, f"cgroup {path}", cgroups.remove, path)
    return problems


def _dirs(paths: Paths, pod: Pod, items: list[Resource]) -> list[str]:
    from rktnetes.fsutil import rmtree
    from rktnetes.host import mounts

    problems: list[str] = []
    for res in reversed(items):
        p = Path(absolute(pod, res.data["path"]))
        if not mounts.mounts_under(str(p)):
            attempt(problems, f"remove {p}", rmtree, p)
    return problems


def _unlink(p: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(p)


def _rmdir(p: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(p)


register("process", PROCESSES, _processes)
register("mount", MOUNTS, _mounts)
register("netns", NAMESPACES, _netns)
register("cgroup", CGROUPS, _cgroups)
register("dir", DIRECTORIES, _dirs)
