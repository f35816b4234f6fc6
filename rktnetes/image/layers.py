"""Filling the unpacked-layer cache (rktnetes.store.layers): a layer blob unpacked, bounded by
the store's limits, its diff_id checked, renamed into place."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from rktnetes.errors import DigestMismatch, StoreError
from rktnetes.fsutil import rmtree
from rktnetes.store import LayerRef, Store
from rktnetes.store import digest as dg
from rktnetes.store.layers import TMP_PREFIX

from . import mediatypes as mt


def ensure_layer(store: Store, layer: LayerRef) -> Path:
    """The unpacked directory of `layer`, unpacking its blob first if it is not cached."""
    final = store.layer_path(layer.digest)
    if final.is_dir():
        return final
    if not store.blobs.has(layer.digest):
        raise StoreError(f"layer blob {layer.digest} is not in the store")
    # tar and the decompressors only when a layer is unpacked, not for every cached one
    from rktnetes.store.limits import ExpansionBudget
    from rktnetes.store.tmpfiles import make_dir

    from .unpack import OVERLAY, unpack_layer

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
