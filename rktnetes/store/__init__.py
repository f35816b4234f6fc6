"""The image store: blobs by digest, image records, and the unpacked-layer cache."""

from __future__ import annotations

from pathlib import Path

from rktnetes.fsutil import FileLock

from .blobs import BlobStore
from .images import ImageRecord, ImageStore, LayerRef

__all__ = ["Store", "ImageRecord", "LayerRef"]


class Store:
    """Facade over the store's parts.

    `gc_lock` orders writers against garbage collection: fetch/import/pod-prepare hold it
    shared while they add things; `rkt image rm|gc` hold it exclusively while they delete.
    """

    def __init__(self, root: Path):
        self.root = root
        self.blobs = BlobStore(root / "blobs")
        self.images = ImageStore(root / "images")
        self.layers_dir = root / "layers"
        self.tmp = root / "tmp"
        self.gc_lock = FileLock(root / "gc.lock")

    def layer_path(self, layer_digest: str) -> Path:
        """The unpacked directory of a layer blob (one per blob digest, shared by images)."""
        from .digest import parse

        algo, hexd = parse(layer_digest)
        return self.layers_dir / f"{algo}-{hexd}"
