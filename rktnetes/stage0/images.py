"""The image store as a library: find, describe, remove and measure images (the CRI's image
service and `rkt image` stand on these)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rktnetes.config import Paths
from rktnetes.errors import NotFoundError, RktError
from rktnetes.image.config import ImageConfig
from rktnetes.store import ImageRecord, Store

_TRANSPORTS = ("oci:", "oci-archive:", "docker-archive:", "builtin:")


@dataclass
class ImageView:
    """What a front end shows of an image."""

    record: ImageRecord
    config: ImageConfig | None
    repo_tags: list[str] = field(default_factory=list)      # registry names with a tag
    repo_digests: list[str] = field(default_factory=list)   # REPOSITORY@MANIFEST-DIGEST
    uid: int | None = None                                  # the image's user, a number ...
    username: str = ""                                      # ... or a name


def _split_ref(ref: str) -> tuple[str, str]:
    """("repository", "tag") of a registry-style reference; ("", "") otherwise."""
    if ref.startswith(_TRANSPORTS) or "@" in ref:
        return "", ""
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return "", ""
    repo, _, tag = ref.rpartition(":")
    return repo, tag


def view(store: Store, rec: ImageRecord) -> ImageView:
    try:
        cfg = ImageConfig.parse(store.blobs.read(rec.id), f"config of {rec.name}")
    except (OSError, RktError):
        cfg = None
    v = ImageView(rec, cfg)
    repos: list[str] = []
    for ref in rec.references:
        repo, _tag = _split_ref(ref)
        if repo:
            v.repo_tags.append(ref)
            if repo not in repos:
                repos.append(repo)
        elif "@" in ref and not ref.startswith(_TRANSPORTS):
            repo = ref.partition("@")[0]
            if repo not in repos:
                repos.append(repo)
    v.repo_digests = [f"{r}@{rec.manifest_digest}" for r in repos]
    user = (cfg.user if cfg else "").partition(":")[0]
    if user.isdigit():
        v.uid = int(user)
    elif user:
        v.username = user
    else:
        v.uid = 0
    return v


def list_images(paths: Paths) -> list[ImageView]:
    store = Store.open(paths)
    return [view(store, r) for r in store.images.all()]


def find(paths: Paths, name: str) -> ImageView | None:
    """The image `name` (an ID, an ID prefix, a reference or short name) names; None if the
    store has none."""
    from rktnetes.image.reference import local_candidates

    store = Store.open(paths)
    try:
        return view(store, store.images.find(name, local_candidates(name)))
    except NotFoundError:
        return None


def remove(paths: Paths, name: str) -> bool:
    """Remove the image `name` names (every tag of it); False if there was none. StoreError
    if a pod uses it."""
    from rktnetes.store.gc import images_in_use, remove_images

    v = find(paths, name)
    if v is None:
        return False
    remove_images(Store.open(paths), [v.record.id], lambda: images_in_use(paths))
    return True


@dataclass
class FsUsage:
    mountpoint: str
    used_bytes: int
    inodes_used: int


def fs_usage(paths: Paths) -> FsUsage:
    """What the image store takes on its filesystem: bytes and inodes under it."""
    return fs_usage_of(paths.store)


def fs_usage_of(root) -> FsUsage:
    """Bytes and inodes under `root`, on its own filesystem (mounts under it not counted)."""
    from rktnetes.metrics.disk import tree_usage

    used, inodes = tree_usage(str(root))
    return FsUsage(str(root), used, inodes)
