"""An image's root filesystem: rendered flat into a directory, or as overlay lower dirs.

`render_rootfs` applies the layer blobs in order (apply mode: whiteouts delete) for
`rkt image extract|render` and for stage1s that cannot mount overlayfs. `lowerdirs` gives the
cached layer directories, top layer first, as overlayfs's `lowerdir=` option wants them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from rktnetes.errors import DigestMismatch, RktError
from rktnetes.fsutil import rmtree
from rktnetes.store import ImageRecord, Store
from rktnetes.store import digest as dg

from . import mediatypes as mt
from .unpack import APPLY, unpack_layer


def render_rootfs(store: Store, rec: ImageRecord, dest: Path) -> None:
    """Apply every layer of `rec` in order into the existing directory `dest`, each bounded
    by the store's unpack limits (rktnetes.store.limits)."""
    from rktnetes.store.limits import ExpansionBudget

    for i, layer in enumerate(rec.layers):
        what = f"layer {i + 1}/{len(rec.layers)} ({dg.short(layer.digest)})"
        budget = ExpansionBudget(store.limits, store.blobs.size(layer.digest), dest, what)
        with store.blobs.open(layer.digest) as f:
            res = unpack_layer(f, dest, mt.layer_compression(layer.media_type), APPLY, what,
                               budget)
        if layer.diff_id and res.diff_id != layer.diff_id:
            raise DigestMismatch(f"{what}: uncompressed digest {res.diff_id} differs from the "
                                 f"config's diff_id {layer.diff_id}")


def check_replaceable(dest: Path, protected: list[Path]) -> None:
    """RktError unless replacing the directory `dest` (--overwrite) can only lose what it holds
    itself: not one of `protected` (rktnetes' data and config directories), nor inside one or
    holding one, and with no mount point at or under it (its tree would be deleted under a
    mount's, and a pod's mounts live under the data directory)."""
    real = os.path.realpath(dest)
    for p in protected:
        prot = os.path.realpath(p)
        if real == prot or _under(real, prot) or _under(prot, real):
            raise RktError(f"refusing to replace {dest}: it is, holds or is inside rktnetes' "
                           f"directory {p}")
    from rktnetes.host.mounts import mounts_under

    mounts = mounts_under(real)
    if mounts:
        raise RktError(f"refusing to replace {dest}: {mounts[-1]} is a mount point")


def _under(path: str, parent: str) -> bool:
    return path.startswith(parent.rstrip("/") + "/")


def render_into(store: Store, rec: ImageRecord, dest: Path, overwrite: bool = False,
                rootfs_subdir: str = "", files: dict[str, bytes] | None = None) -> Path:
    """Render into `dest` (or `dest/rootfs_subdir`) next to `files`, all or nothing.

    The tree is built in a temporary sibling of `dest` and renamed into place, so a failure
    (a hostile layer, say) leaves nothing behind. `dest` must be absent or an empty directory
    unless `overwrite`, which replaces it. Returns the rootfs directory."""
    dest = dest.absolute()
    if os.path.lexists(dest) and not overwrite:
        if dest.is_symlink() or not dest.is_dir():
            raise RktError(f"{dest} exists and is not a directory (use --overwrite to replace it)")
        if any(dest.iterdir()):
            raise RktError(f"{dest} is not empty (use --overwrite to replace it)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        os.chmod(tmp, 0o755)
        rootfs = tmp / rootfs_subdir if rootfs_subdir else tmp
        rootfs.mkdir(mode=0o755, exist_ok=True)
        render_rootfs(store, rec, rootfs)
        for name, data in (files or {}).items():
            (tmp / name).write_bytes(data)
        _replace_dir(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            rmtree(tmp)
        raise
    return dest / rootfs_subdir if rootfs_subdir else dest


def _replace_dir(new: Path, dest: Path) -> None:
    if not os.path.lexists(dest) or (dest.is_dir() and not dest.is_symlink() and not any(dest.iterdir())):
        os.rename(new, dest)   # rename(2) replaces an empty directory
        return
    old = new.parent / (new.name + ".old")
    os.rename(dest, old)
    os.rename(new, dest)
    rmtree(old)


def lowerdirs(store: Store, rec: ImageRecord) -> list[Path]:
    """The cached layer directories of `rec`, top layer first (overlayfs `lowerdir=` order).
    Layers missing from the cache (removed by hand, say) are unpacked again."""
    from .layers import ensure_layer

    return [ensure_layer(store, layer) for layer in reversed(rec.layers)]
