"""Turns blobs already in the store into an image record, whatever source they came from.

Every source (registry, OCI layout, OCI archive, docker-archive, the built-in builder) first puts
the manifest, config and layer blobs into the blob store (each verified on the way in), then calls
`commit_image`. Layers are unpacked into the shared cache before the record is written, so a
record that exists always has its layers.
"""

from __future__ import annotations

import time

from rktnetes.errors import ManifestError, StoreError
from rktnetes.store import ImageRecord, LayerRef, Store

from .manifest import ImageConfig, parse_manifest


def commit_image(store: Store, manifest_digest: str, references: list[str],
                 platform: str = "") -> ImageRecord:
    if not store.blobs.has(manifest_digest):
        raise StoreError(f"manifest {manifest_digest} is not in the store")
    manifest = parse_manifest(store.blobs.read(manifest_digest), "manifest")
    for desc in (manifest.config, *manifest.layers):
        if not store.blobs.has(desc.digest):
            raise StoreError(f"blob {desc.digest} is not in the store")
        if store.blobs.size(desc.digest) != desc.size:
            raise ManifestError(f"blob {desc.digest}: size differs from the manifest's {desc.size}")
    config = ImageConfig.parse(store.blobs.read(manifest.config.digest))
    if len(config.diff_ids) != len(manifest.layers):
        raise ManifestError(f"image config lists {len(config.diff_ids)} layers, "
                            f"the manifest {len(manifest.layers)}")
    layers = [LayerRef(d.digest, d.media_type, d.size, diff_id)
              for d, diff_id in zip(manifest.layers, config.diff_ids)]

    from .layers import ensure_layer  # the cache verifies each diff_id as it unpacks

    for layer in layers:
        ensure_layer(store, layer)
    now = time.time()
    rec = ImageRecord(
        id=manifest.config.digest, manifest_digest=manifest_digest,
        manifest_media_type=manifest.media_type, layers=layers, references=list(references),
        size=store.blobs.size(manifest_digest) + manifest.config.size + sum(x.size for x in layers),
        imported_at=now, last_used=0.0,
        platform=platform or f"{config.os}/{config.architecture}")
    store.images.save(rec)
    return store.images.get(rec.id)
