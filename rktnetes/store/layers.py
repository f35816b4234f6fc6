"""The unpacked-layer cache: `layers/<algo>-<hex>/`, one directory per layer blob digest.

Each directory is a layer in overlay form (whiteouts as 0/0 char devices, opaque directories
marked with `trusted.overlay.opaque`), so a pod's rootfs is an overlay mount of them. A layer
is unpacked into `layers/.tmp-*`, its diff_id checked, then renamed into place: a directory
under its final name is always complete. Two processes racing for one layer both unpack;
the first rename wins and the loser discards its copy.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from rktnetes.errors import DigestMismatch, ManifestError, StoreError
from rktnetes.fsutil import rmtree
from rktnetes.image import mediatypes as mt

from . import Store
from . import digest as dg
from .images import LayerRef

from .tmpfiles import LAYER_PREFIX as TMP_PREFIX


def ensure_layer(store: Store, layer: LayerRef) -> Path:
    """The unpacked directory of `layer`, unpacking its blob first if it is not cached."""
    final = store.layer_path(layer.digest)
    if final.is_dir():
        return final
    if not store.blobs.has(layer.digest):
        raise StoreError(f"layer blob {layer.digest} is not in the store")
    # tar and the decompressors only when a layer is unpacked, not for every cached one
    from rktnetes.image.unpack import OVERLAY, unpack_layer

    from .limits import ExpansionBudget
    from .tmpfiles import make_dir

    what = f"layer {dg.short(layer.digest)}"
    held = make_dir(store.root, store.layers_dir, TMP_PREFIX)   # locked until we are done
    tmp = held.path
    try:
        os.chmod(tmp, 0o755)  # a layer's "./" entry, if any, overrides this
        budget = ExpansionBudget(store.limits, store.blobs.size(layer.digest), tmp, what)
        with store.blobs.open(layer.digest) as f:
            res = unpack_layer(f, tmp, mt.layer_compression(layer.media_type), OVERLAY,
                               what=what, budget=budget)
        if layer.diff_id and res.diff_id != layer.diff_id:
            raise DigestMismatch(f"layer {layer.digest}: uncompressed digest {res.diff_id} "
                                 f"differs from the config's diff_id {layer.diff_id}")
        try:
            os.rename(tmp, final)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not final.is_dir():
                raise
            rmtree(tmp)  # another process cached it first; theirs is as good as ours
    except BaseException:
        with contextlib.suppress(OSError):
            rmtree(tmp)
        raise
    finally:
        held.close()
    return final


def remove_layer(store: Store, layer_digest: str) -> bool:
    """Remove a cached layer. It is renamed away first so no half-deleted tree keeps the name."""
    final = store.layer_path(layer_digest)
    if not final.exists():
        return False
    from .tmpfiles import make_dir

    with make_dir(store.root, store.layers_dir, TMP_PREFIX + "rm-") as held:
        doomed = held.path
        try:
            os.rename(final, doomed / "layer")
        except FileNotFoundError:
            rmtree(doomed)
            return False
        rmtree(doomed)
    return True


def cached_layers(store: Store) -> list[str]:
    """Digests of the layers in the cache (temporary directories excluded)."""
    if not store.layers_dir.is_dir():
        return []
    out = []
    for p in store.layers_dir.iterdir():
        algo, sep, hexd = p.name.partition("-")
        if p.name.startswith(".") or not sep:
            continue
        digest = f"{algo}:{hexd}"
        try:
            dg.parse(digest)
        except ManifestError:
            continue
        out.append(digest)
    return sorted(out)
