"""The unpacked-layer cache: `layers/<algo>-<hex>/`, one directory per layer blob digest.

Each directory is a layer in overlay form (whiteouts as 0/0 char devices, opaque directories
marked with `trusted.overlay.opaque`), so a pod's rootfs is an overlay mount of them. A layer
is unpacked into `layers/.tmp-*` (rktnetes.image.layers.ensure_layer), its diff_id checked, then
renamed into place: a directory under its final name is always complete. This module keeps
the cache: where a layer lives, which are there, removing one.
"""

from __future__ import annotations

import os
from pathlib import Path

from rktnetes.errors import ManifestError
from rktnetes.fsutil import rmtree

from . import Store
from . import digest as dg

from .tmpfiles import LAYER_PREFIX as TMP_PREFIX


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
