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

    def __init__(self, root: Path, config_dir: Path | None = None):
        self.root = root
        self.config_dir = config_dir    # where store.toml (the unpack limits) is read from
        self.blobs = BlobStore(root / "blobs", store_root=root)
        self.images = ImageStore(root / "images")
        self.layers_dir = root / "layers"
        self.tmp = root / "tmp"
        self.gc_lock = FileLock(root / "gc.lock")
        self._limits = None

    @classmethod
    def open(cls, paths) -> "Store":
        """The store of a data directory, with its configuration's limits (config.Paths)."""
        return cls(paths.store, paths.config)

    @property
    def limits(self):
        """The unpack limits (rktnetes.store.limits), read at first use: most commands
        never unpack a layer."""
        if self._limits is None:
            from .limits import load

            self._limits = load(self.config_dir)
        return self._limits

    def layer_path(self, layer_digest: str) -> Path:
        """The unpacked directory of a layer blob (one per blob digest, shared by images)."""
        from .digest import parse

        algo, hexd = parse(layer_digest)
        return self.layers_dir / f"{algo}-{hexd}"
