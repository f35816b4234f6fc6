"""`rkt gc`: mark-and-sweep of pods, as rkt.

Mark: an exited pod (`exited-garbage`, or `run` with its monitor gone) moves to `garbage` and the
time of the move is recorded in the pod (`gc-marked`). Sweep: a `garbage` pod marked longer ago
than the grace period is undone (its resource journal) and deleted. Prepared pods older than
`expire_prepared`, and `embryo`/`prepare` pods whose creator died, are removed at once.
Pods another process holds locked are skipped: they are someone else's business right now.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from rktnetes.config import Paths
from rktnetes.errors import RktError
from rktnetes.fsutil import atomic_write_json, read_json, rmtree
from rktnetes.pod.store import (CREATING_PREFIX, EMBRYO, EXITED_GARBAGE, GARBAGE, PREPARE, PREPARED,
                                RUN, Pod, PodLock, PodStore)

from .podfs import mounts_under, remove_pod_dir
from .stop import reap_dead

log = logging.getLogger(__name__)
MARK_FILE = "gc-marked"


@dataclass
class GcReport:
    marked: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def marked_at(pod: Pod) -> float:
    try:
        return float(read_json(pod.path / MARK_FILE)["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def mark(pod: Pod, now: float) -> None:
    """Move to garbage, then record when; a crash between leaves an unrecorded mark, which the
    next gc records (the grace period then starts late, never early)."""
    if pod.state != GARBAGE:
        pod.move(GARBAGE)
    atomic_write_json(pod.path / MARK_FILE, {"at": now})


def _locked(pod: Pod) -> PodLock | None:
    """The pod's lock if it is free (held by us now), else None."""
    try:
        lock = pod.lock()
    except RktError:
        return None
    if not lock.acquire(blocking=False):
        lock.close()
        return None
    try:
        pod.refresh()  # it may have moved between listing and locking
    except RktError:
        lock.close()
        return None
    return lock


def gc(paths: Paths, grace_period: float = 1800.0, expire_prepared: float = 86400.0,
       mark_only: bool = False) -> GcReport:
    rep = GcReport()
    store = PodStore(paths.pods)
    now = time.time()
    for pod in list(store.all((RUN, EXITED_GARBAGE, GARBAGE, PREPARED, EMBRYO, PREPARE))):
        lock = _locked(pod)
        if lock is None:
            continue
        try:
            _one(paths, pod, now, grace_period, expire_prepared, mark_only, rep)
        except (RktError, OSError) as e:
            log.warning("gc: pod %s: %s", pod.uuid, e)
            rep.failed.append((pod.uuid, str(e)))
        finally:
            lock.close()
    _sweep_creating(paths)
    _sweep_store_temps(paths)
    return rep


def _sweep_store_temps(paths: Paths) -> None:
    """What killed fetches and unpacks left in the image store (no live writer holds it)."""
    from rktnetes.store import Store
    from rktnetes.store.gc import sweep_tmp

    if paths.store.is_dir():
        try:
            sweep_tmp(Store.open(paths))
        except OSError as e:
            log.warning("gc: image store temporaries: %s", e)


def _one(paths: Paths, pod: Pod, now: float, grace: float, expire: float, mark_only: bool,
         rep: GcReport) -> None:
    if pod.state == RUN:
        reap_dead(paths, pod)
    if pod.state == EXITED_GARBAGE:
        mark(pod, now)
        rep.marked.append(pod.uuid)
    if pod.state == GARBAGE:
        at = marked_at(pod)
        if not at:
            mark(pod, now)
            at = now
        if not mark_only and now - at >= grace:
            remove_pod_dir(paths, pod)
            rep.removed.append(pod.uuid)
        return
    if pod.state == PREPARED:
        try:
            created = pod.manifest().created_at or os.stat(pod.path).st_mtime
        except (OSError, ValueError):
            created = 0.0
        if now - created >= expire and not mark_only:
            remove_pod_dir(paths, pod)
            rep.removed.append(pod.uuid)
        return
    if pod.state in (EMBRYO, PREPARE) and not mark_only:
        # Unlocked while being made: its `rkt prepare|run` died.
        remove_pod_dir(paths, pod)
        rep.removed.append(pod.uuid)


def _sweep_creating(paths: Paths) -> None:
    """Half-created pods (`embryo/.creating-*`) whose creator died before locking them."""
    store = PodStore(paths.pods)
    d = paths.pods / EMBRYO
    try:
        names = [n for n in os.listdir(d) if n.startswith(CREATING_PREFIX)]
    except FileNotFoundError:
        return
    if not names:
        return
    creation = store.creation_lock()
    if not creation.acquire(blocking=False):
        return  # someone is between mkdir and flock right now; next time
    try:
        for name in names:
            p = d / name
            try:
                lk = PodLock(p)
            except OSError:
                continue
            try:
                if lk.acquire(blocking=False) and not mounts_under(p):
                    rmtree(p)
            finally:
                lk.close()
    finally:
        creation.release()
