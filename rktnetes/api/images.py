"""Images as the API sees them: image records plus their manifest and config blobs, cached.

Records (`store/images/<hex>.json`) are replaced by rename, so one keyed by (mtime, size) is
re-read only when it changed; manifests and configs are content-addressed and never change,
so they are cached by digest. A record whose blobs are gone (being removed) or unreadable is
skipped, as rkt skips images it cannot describe. Nothing is ever written.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from rktnetes.errors import RktError
from rktnetes.image import mediatypes as mt
from rktnetes.store import ImageRecord, Store
from rktnetes.proto.v1alpha import api_pb2 as pb

from . import wire
from .filters import ImageFacts
from .names import split_reference

log = logging.getLogger(__name__)
IMAGES_FIELD = pb.ListImagesResponse.DESCRIPTOR.fields_by_name["images"].number

_FORMATS = {mt.OCI_MANIFEST: (pb.IMAGE_TYPE_OCI, "1.0.0"),
            mt.DOCKER_MANIFEST: (pb.IMAGE_TYPE_DOCKER, "2.2")}


@dataclass
class ImageView(wire.CachedMessage):
    record: ImageRecord
    manifest_raw: bytes
    labels: dict[str, str]
    annotations: dict[str, str]
    config_digest: str
    _memo: dict = field(default_factory=dict, repr=False)
    LIST_FIELD = IMAGES_FIELD

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(split_reference(r)[0] for r in self.record.references))

    @property
    def display_name(self) -> str:
        return split_reference(self.record.references[0])[0] if self.record.references else ""

    def facts(self) -> ImageFacts:
        f = self._memo.get("facts")
        if f is None:
            f = self._memo["facts"] = ImageFacts(self.id, self.names, self.labels,
                                                     self.annotations, int(self.record.imported_at))
        return f

    def build(self, detail: bool) -> pb.Image:
        return _to_message(self, detail)


def _to_message(v: ImageView, detail: bool) -> pb.Image:
    rec = v.record
    typ, version = _FORMATS.get(rec.manifest_media_type, (pb.IMAGE_TYPE_UNDEFINED, ""))
    name, tag = split_reference(rec.references[0]) if rec.references else ("", "")
    msg = pb.Image(base_format=pb.ImageFormat(type=typ, version=version), id=rec.id, name=name,
                   version=tag, import_timestamp=int(rec.imported_at), size=int(rec.size))
    msg.annotations.extend(pb.KeyValue(Key=k, value=str(x)) for k, x in sorted(v.annotations.items()))
    msg.labels.extend(pb.KeyValue(Key=k, value=str(x)) for k, x in sorted(v.labels.items()))
    if detail:
        msg.manifest = v.manifest_raw
    return msg


def _str_map(d) -> dict[str, str]:
    return {str(k): str(v) for k, v in d.items()} if isinstance(d, dict) else {}


class ImageReader:
    def __init__(self, store_root: Path):
        self.store = Store(store_root)
        self.dir = self.store.images.root
        self._cache: dict[str, tuple[tuple, ImageView]] = {}
        self._blobs: dict[str, dict] = {}          # digest -> parsed JSON (immutable content)
        self._bad: dict[str, tuple] = {}
        self._lock = threading.Lock()

    def _json_blob(self, digest: str) -> tuple[dict, bytes]:
        raw = self.store.blobs.read(digest)
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        return doc, raw

    def _read(self, path: Path) -> ImageView:
        with open(path, "rb") as f:
            rec = ImageRecord.from_json(json.load(f))
        manifest, raw = self._json_blob(rec.manifest_digest)
        cfg_digest = (manifest.get("config") or {}).get("digest") or rec.id
        cfg = self._blobs.get(cfg_digest)
        if cfg is None:
            cfg = self._json_blob(cfg_digest)[0]
            with self._lock:
                self._blobs[cfg_digest] = cfg
        labels = _str_map((cfg.get("config") or {}).get("Labels"))
        return ImageView(rec, raw, labels, _str_map(manifest.get("annotations")), cfg_digest)

    def names(self) -> list[str]:
        """Record file names (`<hex>.json`), cheap enough to poll."""
        try:
            return [n for n in os.listdir(self.dir) if n.endswith(".json") and not n.startswith(".")]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def get_file(self, name: str) -> ImageView | None:
        path = self.dir / name
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._cache.get(name)
        if cached and cached[0] == key:
            return cached[1]
        if self._bad.get(name) == key:
            return None
        try:
            view = self._read(path)
        except FileNotFoundError:
            return None        # record or a blob removed under us (`rkt image rm`): skip
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RktError) as e:
            with self._lock:
                self._bad[name] = key
            log.warning("skipping unreadable image record %s: %s", name, e)
            return None
        with self._lock:
            self._cache[name] = (key, view)
        return view

    def all(self) -> list[ImageView]:
        names = self.names()
        out = [v for v in (self.get_file(n) for n in sorted(names)) if v is not None]
        with self._lock:           # forget what was removed, so the caches stay bounded
            for gone in self._cache.keys() - set(names):
                self._cache.pop(gone, None)
            for gone in self._blobs.keys() - {v.config_digest for v in out}:
                self._blobs.pop(gone, None)
        return out

    def find(self, ident: str) -> list[ImageView]:
        """By full ID, ID prefix (with or without `sha256:`) or reference (name[:tag])."""
        views = self.all()
        exact = [v for v in views if v.id == ident]
        if exact:
            return exact
        hexpart = ident.split(":", 1)[1] if ident.startswith("sha256:") else ident
        if hexpart and all(c in "0123456789abcdef" for c in hexpart):
            by_id = [v for v in views if v.id.split(":", 1)[-1].startswith(hexpart)]
            if by_id:
                return by_id
        return [v for v in views if ident in v.record.references
                or any(split_reference(r) == split_reference(ident) for r in v.record.references)]
