"""An app's root filesystem: an overlay of the cached image layers, upper/work in the app dir.

Copying (rendering the layers into the app dir) is the fallback where overlay cannot mount.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rktnetes.errors import Stage1Error
from rktnetes.image.config import ImageConfig
from rktnetes.store import ImageRecord, Store

from rktnetes.host import mounts


@dataclass(frozen=True)
class Overlay:
    """An app's rootfs: an overlay mount over the image's cached layers."""
    lowers: list[str]      # top layer first
    upper: str
    work: str
    target: str

    @property
    def options(self) -> str:
        return f"lowerdir={':'.join(self.lowers)},upperdir={self.upper},workdir={self.work}"


def image_of(store: Store, image_id: str) -> tuple[ImageRecord, ImageConfig]:
    rec = store.images.get(image_id)
    return rec, ImageConfig.parse(store.blobs.read(rec.id), f"image {image_id} config")


def plan(store: Store, rec: ImageRecord, app_dir: Path) -> Overlay:
    lowers = [store.layer_path(layer.digest) for layer in reversed(rec.layers)]
    if not all(p.is_dir() for p in lowers):
        from rktnetes.image.render import lowerdirs  # re-unpacks what the cache lost

        lowers = lowerdirs(store, rec)
    if not lowers:  # an image with no layers: overlay still wants one lower dir
        empty = app_dir / "empty"
        empty.mkdir(exist_ok=True)
        lowers = [empty]
    for d in ("upper", "work", "rootfs"):
        (app_dir / ("rootfs" if d == "rootfs" else f"overlay/{d}")).mkdir(parents=True,
                                                                          exist_ok=True)
    return Overlay([str(p) for p in lowers], str(app_dir / "overlay/upper"),
                   str(app_dir / "overlay/work"), str(app_dir / "rootfs"))


def is_mounted(path: str) -> bool:
    return path in mounts.mounts_under(path)


def mount(ov: Overlay, store: Store, rec: ImageRecord) -> str:
    """Mount the overlay at ov.target (the caller journaled it); copy if overlay fails."""
    if is_mounted(ov.target):
        return ov.target  # a restart: the previous run's rootfs is still there
    try:
        # nodev: an image's device nodes never work in its rootfs (a container's /dev is its
        # own tmpfs, a fly app's the host's bind mount; neither is affected)
        mounts.mount("overlay", ov.target, "overlay", mounts.MS_NODEV, ov.options)
        return ov.target
    except OSError as e:
        overlay_error = e
    copied = Path(ov.target)
    marker = Path(ov.upper).parent / "rendered"   # outside the rootfs, invisible to the app
    try:
        if not marker.exists():
            from rktnetes.image.render import render_rootfs

            render_rootfs(store, rec, copied)
            marker.touch()
        # the copy bind-mounted onto itself nodev, as the overlay would be
        mounts.mount(ov.target, ov.target, "", mounts.MS_BIND)
        mounts.mount("none", ov.target, "", mounts.MS_BIND | mounts.MS_REMOUNT | mounts.MS_NODEV)
    except Exception as e:  # noqa: BLE001 - report both failures on one line
        raise Stage1Error(f"cannot mount the rootfs ({overlay_error}) nor copy it ({e})") from None
    return ov.target


def umount(target: str) -> None:
    for mp in mounts.mounts_under(target):
        mounts.umount(mp)
