"""Image records: which references name which image, and what the image is made of.

One JSON file per image, `images/<config hex>.json`, named by the image ID (the config digest).
Writers hold `images.lock` exclusively for the short read-modify-write of records; readers
read files that are always whole because every write is a rename.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rktnetes.errors import AmbiguousError, NotFoundError
from rktnetes.fsutil import FileLock, atomic_write_json, read_json
from rktnetes.lazylog import getLogger

from . import digest as dg

log = getLogger(__name__)
SCHEMA_VERSION = 1



@dataclass
class LayerRef:
    """One layer of an image, as its manifest and config list it."""

    digest: str          # the blob digest as the manifest lists it
    media_type: str
    size: int
    diff_id: str = ""    # digest of the uncompressed tar, from the image config


@dataclass
class ImageRecord:
    """An image in the store: its blobs, the references naming it, when it was used."""

    id: str                                   # config digest, "sha256:..."
    manifest_digest: str
    manifest_media_type: str
    layers: list[LayerRef]
    references: list[str] = field(default_factory=list)
    size: int = 0                             # sum of manifest, config and layer blobs
    imported_at: float = 0.0
    last_used: float = 0.0
    platform: str = ""                        # "linux/amd64"
    schema: int = SCHEMA_VERSION

    @classmethod
    def from_json(cls, d: dict) -> "ImageRecord":
        d = dict(d)
        d["layers"] = [LayerRef(**layer) for layer in d.get("layers", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def name(self) -> str:
        return self.references[0] if self.references else "<none>"


class ImageStore:
    def __init__(self, root: Path):
        self.root = root
        self.lock = FileLock(root / "images.lock")

    def _path(self, image_id: str) -> Path:
        return self.root / (dg.parse(image_id)[1] + ".json")

    def get(self, image_id: str) -> ImageRecord:
        try:
            return ImageRecord.from_json(read_json(self._path(image_id)))
        except FileNotFoundError:
            raise NotFoundError(f"image {image_id} not found") from None

    def all(self) -> Iterator[ImageRecord]:
        try:
            names = sorted(n for n in os.listdir(self.root) if n.endswith(".json"))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return  # no store yet (or not ours to read): no images
        for name in names:
            p = self.root / name
            try:
                yield ImageRecord.from_json(read_json(p))
            except (OSError, ValueError, TypeError) as e:
                log.warning("skipping unreadable image record %s: %s", p, e)

    def save(self, rec: ImageRecord, claim_references: bool = True) -> None:
        """Write a record; its references are taken away from any other image that had them
        (a tag names one image at a time)."""
        with self.lock.held():
            old = None
            with contextlib.suppress(NotFoundError):
                old = self.get(rec.id)
            if old:
                rec.references = _merge(old.references, rec.references)
                rec.imported_at = old.imported_at or rec.imported_at
                rec.last_used = max(old.last_used, rec.last_used)  # a re-fetch is no use
            if claim_references and rec.references:
                for other in self.all():
                    if other.id != rec.id and set(other.references) & set(rec.references):
                        other.references = [r for r in other.references if r not in rec.references]
                        atomic_write_json(self._path(other.id), other.to_json())
            atomic_write_json(self._path(rec.id), rec.to_json())

    def touch(self, image_id: str, when: float | None = None) -> None:
        """Record a use of the image (for `rkt image gc`)."""
        with self.lock.held():
            rec = self.get(image_id)
            rec.last_used = when or time.time()
            atomic_write_json(self._path(rec.id), rec.to_json())

    def remove_record(self, image_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(image_id))

    def find_reference(self, names: list[str]) -> ImageRecord | None:
        """The image the first of `names` that some image carries as a reference names, or
        None: references only, never ID prefixes (a pull policy decides on those)."""
        recs = list(self.all())
        for want in names:
            hits = [r for r in recs if want in r.references]
            if len(hits) == 1:
                return hits[0]
        return None

    def find(self, name: str, normalized: list[str] | None = None) -> ImageRecord:
        """Resolve a user's IMAGE argument: an exact reference (as typed, then each of
        `normalized` in order), a full ID or a unique ID prefix (with or without `sha256:`)."""
        recs = list(self.all())
        for want in (name, *(normalized or [])):
            by_ref = [r for r in recs if want in r.references]
            if len(by_ref) == 1:
                return by_ref[0]
        hexpart = name.split(":", 1)[1] if name.startswith("sha256:") else name
        if len(hexpart) >= 4 and all(c in "0123456789abcdef" for c in hexpart):
            by_id = [r for r in recs if dg.parse(r.id)[1].startswith(hexpart)]
            if len(by_id) == 1:
                return by_id[0]
            if len(by_id) > 1:
                raise AmbiguousError(f"image ID prefix {name!r} matches {len(by_id)} images")
        raise NotFoundError(f"image {name!r} not found in the store (try `rkt fetch {name}`)")


def _merge(a: list[str], b: list[str]) -> list[str]:
    out = list(a)
    for x in b:
        if x not in out:
            out.append(x)
    return out
