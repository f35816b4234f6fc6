"""Image garbage collection: old unused images, then blobs and layers no image needs.

Everything here holds `store.gc_lock` exclusively. Writers (fetch, import, pod prepare) hold
it shared from their first new blob until their record exists, so while gc runs no blob is
"new and not yet referenced": anything no record names is garbage.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

from rktnetes.config import Paths
from rktnetes.errors import ManifestError, StoreError
from rktnetes.fsutil import read_json, rmtree

from . import Store
from .images import ImageRecord
from .layers import cached_layers, remove_layer

log = logging.getLogger(__name__)

STALE_TMP_SECONDS = 3600


@dataclass
class GcResult:
    removed_images: list[str] = field(default_factory=list)
    removed_blobs: list[str] = field(default_factory=list)
    removed_layers: list[str] = field(default_factory=list)
    removed_tmp: int = 0
    freed_bytes: int = 0    # blob bytes; unpacked layers are not counted


def images_in_use(paths: Paths) -> set[str]:
    """IDs of images some pod uses (see `image_users`)."""
    return set(image_users(paths))


def image_users(paths: Paths) -> dict[str, list[str]]:
    """Image ID -> UUIDs of the pods using it: `apps[].image_id` of every
    `pods/<state>/<uuid>/pod.json`.

    The pods module owns that format; this reads it leniently and is the one place gc asks.
    State directories are read in lifecycle order and a pod that moved on between listing and
    reading is looked for again, so a pod changing state meanwhile is never missed."""
    from rktnetes.pod.store import STATES

    if not paths.pods.is_dir():
        return {}
    used: dict[str, list[str]] = {}
    for i, st in enumerate(STATES):
        try:
            names = os.listdir(paths.pods / st)
        except OSError:
            continue
        for name in names:
            for later in STATES[i:]:
                p = paths.pods / later / name / "pod.json"
                try:
                    doc = read_json(p)
                except FileNotFoundError:
                    continue
                except (OSError, ValueError) as e:
                    log.warning("cannot read %s: %s", p, e)
                    break
                for app in (doc.get("apps") or []) if isinstance(doc, dict) else []:
                    if isinstance(app, dict) and app.get("image_id"):
                        pods = used.setdefault(str(app["image_id"]), [])
                        if name not in pods:
                            pods.append(name)
                break
    return used


# Image IDs in use, or a mapping of them to the UUIDs of the pods using them (as
# `image_users` returns), so that an error can name the pods.
InUse = Iterable[str] | Mapping[str, Iterable[str]] | Callable[[], Iterable[str] | Mapping[str, Iterable[str]]]


def _in_use(in_use: InUse) -> dict[str, list[str]]:
    """Evaluated only once gc_lock is held exclusively: a pod prepared a moment earlier holds
    the lock shared until its pod.json names its images, so a callable sees every such pod."""
    got = in_use() if callable(in_use) else in_use
    if isinstance(got, Mapping):
        return {str(k): [str(u) for u in v] for k, v in got.items()}
    return {str(k): [] for k in got}


def _used_by(image_id: str, pods: list[str]) -> str:
    if not pods:
        return f"image {image_id} is used by a pod; remove the pod first"
    names = ", ".join(sorted(u[:8] for u in pods))
    what = "pod" if len(pods) == 1 else "pods"
    it = "it" if len(pods) == 1 else "them"
    return f"image {image_id} is used by {what} {names}; remove {it} first"


def gc_images(store: Store, grace_seconds: float, in_use: InUse,
              now: float | None = None) -> GcResult:
    """Remove images not used (or, never used, not imported) within `grace_seconds` and not
    used by any pod; then sweep unneeded blobs, layers and stale temporary files."""
    now = time.time() if now is None else now
    with store.gc_lock.held():
        in_use = _in_use(in_use)
        res = GcResult()
        with store.images.lock.held():
            for rec in _records(store):
                last = rec.last_used or rec.imported_at
                if rec.id not in in_use and now - last >= grace_seconds:
                    store.images.remove_record(rec.id)
                    res.removed_images.append(rec.id)
        _sweep(store, res, now)
        return res


def remove_image(store: Store, image_id: str, in_use: InUse = ()) -> GcResult:
    return remove_images(store, [image_id], in_use)


def remove_images(store: Store, image_ids: list[str], in_use: InUse = ()) -> GcResult:
    """Remove image records and whatever of their blobs and layers no other image needs."""
    with store.gc_lock.held():
        used = _in_use(in_use)
        res = GcResult()
        with store.images.lock.held():
            for image_id in image_ids:
                store.images.get(image_id)   # NotFoundError for an unknown ID
                if image_id in used:
                    raise StoreError(_used_by(image_id, used[image_id]))
            for image_id in image_ids:
                store.images.remove_record(image_id)
                res.removed_images.append(image_id)
        _sweep(store, res, time.time())
        return res


def discard_unreferenced(store: Store, blobs: Iterable[str], layers: Iterable[str]) -> None:
    """Undo a failed import: drop these blobs and layers unless some record needs them.
    The caller holds `gc_lock` exclusively."""
    try:
        need_blobs, need_layers = _needed(store)
    except StoreError as e:
        log.warning("not cleaning up after the failed import: %s", e)
        return
    for d in blobs:
        if d not in need_blobs:
            store.blobs.delete(d)
    for d in layers:
        if d not in need_layers:
            remove_layer(store, d)


def _records(store: Store) -> list[ImageRecord]:
    """Every record; an unreadable one stops gc, since its blobs could not be told apart."""
    out = []
    if not store.images.root.is_dir():
        return out
    for p in sorted(store.images.root.glob("*.json")):
        try:
            out.append(ImageRecord.from_json(read_json(p)))
        except (OSError, ValueError, TypeError) as e:
            raise StoreError(f"unreadable image record {p} ({e.__class__.__name__}); "
                             f"remove it to let gc run") from None
    return out


def _needed(store: Store) -> tuple[set[str], set[str]]:
    blobs: set[str] = set()
    layers: set[str] = set()
    for rec in _records(store):
        blobs.update((rec.id, rec.manifest_digest, *(x.digest for x in rec.layers)))
        layers.update(x.digest for x in rec.layers)
    return blobs, layers


def _sweep(store: Store, res: GcResult, now: float) -> None:
    need_blobs, need_layers = _needed(store)
    for d in list(store.blobs.all()):
        try:
            p = store.blobs.path(d)
        except ManifestError:
            continue   # a stray file that is no blob: not ours to judge
        if d not in need_blobs:
            with contextlib.suppress(FileNotFoundError):
                res.freed_bytes += p.stat().st_size
            store.blobs.delete(d)
            res.removed_blobs.append(d)
    for d in cached_layers(store):
        if d not in need_layers and remove_layer(store, d):
            res.removed_layers.append(d)
    res.removed_tmp += _sweep_tmp(store, now)


def _sweep_tmp(store: Store, now: float) -> int:
    """Temporary files of crashed writers: blob `.part`s, `layers/.tmp-*` and fetch staging
    directories (each held by a flock while its writer lives: swept as soon as it is not),
    and record temps of an atomic write (short-lived, unlocked: swept after an hour)."""
    return sweep_tmp(store) + _sweep_record_temps(store, now)


def sweep_tmp(store: Store) -> int:
    """The locked kinds (see rktnetes.store.tmpfiles): what no live writer holds goes."""
    from .tmpfiles import PART_SUFFIX, layer_temps, sweep

    candidates: list[Path] = []
    if store.blobs.root.is_dir():
        for algo in store.blobs.root.iterdir():
            if algo.is_dir():
                candidates += [p for p in algo.iterdir() if p.name.endswith(PART_SUFFIX)]
    candidates += layer_temps(store.layers_dir)
    if store.tmp.is_dir():
        candidates += list(store.tmp.iterdir())
    return sweep(store.root, candidates) if candidates else 0


def _sweep_record_temps(store: Store, now: float) -> int:
    n = 0
    if not store.images.root.is_dir():
        return 0
    for p in store.images.root.iterdir():
        if not (p.name.startswith(".") and p.name.endswith(".tmp")):
            continue
        try:
            if now - os.lstat(p).st_mtime < STALE_TMP_SECONDS:
                continue
            rmtree(p)
            n += 1
        except OSError as e:
            log.warning("cannot remove %s: %s", p, e)
    return n
