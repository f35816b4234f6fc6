"""Importing images from files: `oci:DIR[:REF]`, `oci-archive:PATH[:REF]`, `docker-archive:PATH[:REF]`.

Every blob goes through `store.blobs.ingest`, which verifies digest and size before the blob
gets its name; then `commit_image` unpacks the layers and writes the record. If anything
fails (a hostile layer, a digest mismatch), the blobs and layers this import added and no
image needs are removed again, so the store is as it was.

References an imported image gets:
  - the transport form, as `rkt image` finds it again: `oci-archive:/abs/path:REF` where REF
    is the name asked for or else the entry's `org.opencontainers.image.ref.name`; when no
    REF was asked for, also the bare `oci-archive:/abs/path`;
  - a registry-style name when the archive carries one: the `io.containerd.image.name`
    annotation (docker and `rkt image export` write it), or a ref name that is a full image
    name (`busybox:1.36`, `example.com/app:v1`: it has a `:` or `/`), normalized like
    `docker.io/library/busybox:1.36`; for docker-archive, each of RepoTags.
"""

from __future__ import annotations

import hashlib
import lzma
import json
import posixpath
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

from rktnetes.errors import (AmbiguousError, DigestMismatch, ManifestError, NotFoundError,
                             ReferenceError_)
from rktnetes.store import ImageRecord, Store
from rktnetes.store import digest as dg

from . import mediatypes as mt
from .manifest import Descriptor, ImageConfig, media_type_of, parse_index, parse_manifest, select_platform

REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"
_JSON_LIMIT = 16 << 20   # manifests, indexes and configs are small; refuse to slurp a huge file
_CHUNK = 1 << 20
_MAX_INDEX_DEPTH = 4


def import_archive(store: Store, ref) -> ImageRecord:
    """Import the image `ref` (a reference.Reference with transport oci, oci-archive or
    docker-archive) into the store and return its record."""
    if ref.transport == "oci":
        src: _Source = _DirSource(Path(ref.path))
    elif ref.transport in ("oci-archive", "docker-archive"):
        src = _TarSource(Path(ref.path), ref.transport)
    else:
        raise ReferenceError_(f"{ref.transport}: not an archive transport")
    job = _Import(store)
    # gc must not sweep our blobs before the record exists. A caller (`rkt fetch`) may hold the
    # lock already through this same Store; flock is per open file, so do not take it twice.
    owns_lock = store.gc_lock.fd is None
    with src:
        if owns_lock:
            store.gc_lock.acquire(shared=True)
        try:
            if ref.transport == "docker-archive":
                manifest_digest, refs, platform = _docker_archive(job, src, ref)
            else:
                manifest_digest, refs, platform = _oci_layout(job, src, ref)
            from .commit import commit_image

            return commit_image(store, manifest_digest, refs, platform)
        except BaseException:
            job.rollback()
            raise
        finally:
            if owns_lock:
                store.gc_lock.release()


# ---- sources: a directory or a tar ---------------------------------------------------------


class _Source:
    where: str

    def __enter__(self) -> "_Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def open(self, name: str) -> BinaryIO:
        raise NotImplementedError

    def size(self, name: str) -> int:
        raise NotImplementedError

    def read(self, name: str, limit: int = _JSON_LIMIT) -> bytes:
        if not self.exists(name):
            raise ManifestError(f"{self.where}: {name} is missing")
        if self.size(name) > limit:
            raise ManifestError(f"{self.where}: {name} is larger than {limit} bytes")
        with self.open(name) as f:
            return f.read()

    def chunks(self, name: str) -> Iterator[bytes]:
        if not self.exists(name):
            raise ManifestError(f"{self.where}: {name} is missing")
        with self.open(name) as f:
            while chunk := f.read(_CHUNK):
                yield chunk


class _DirSource(_Source):
    def __init__(self, root: Path):
        self.root, self.where = root, str(root)
        if not root.exists():
            raise NotFoundError(f"{root}: no such file or directory")
        if not root.is_dir():
            raise ManifestError(f"{root} is not a directory (an OCI layout is one; use oci-archive: for a tar)")

    def _path(self, name: str) -> Path:
        # Names come from the layout's own JSON (docker-archive) or from digests: keep them inside.
        norm = posixpath.normpath(name)
        if norm.startswith("/") or norm == ".." or norm.startswith("../"):
            raise ManifestError(f"{self.where}: path {name!r} leads outside the layout")
        return self.root / norm

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def size(self, name: str) -> int:
        return self._path(name).stat().st_size

    def open(self, name: str) -> BinaryIO:
        return open(self._path(name), "rb")


class _TarSource(_Source):
    """Random access to a tar's members (plain or compressed) without extracting them."""

    def __init__(self, path: Path, transport: str = ""):
        self.where = str(path)
        if not path.exists():
            raise NotFoundError(f"{path}: no such file or directory")
        if path.is_dir():
            raise ManifestError(f"{path} is a directory, not an archive (use oci:{path} for a layout)")
        label = f"{transport}:{path}" if transport else str(path)
        try:
            self.tf = tarfile.open(path, "r:*")
        except tarfile.ReadError:
            # tarfile tried every compression and every one refused: its message lists them all
            raise ManifestError(f"{label}: not a tar archive") from None
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as e:
            raise ManifestError(f"{label}: corrupt archive ({_one_line(e)})") from None
        except OSError as e:
            raise ManifestError(f"{label}: cannot read: {e.strerror or _one_line(e)}") from None
        try:
            self.members = {_norm(m.name): m for m in self.tf.getmembers()}
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as e:
            self.tf.close()
            raise ManifestError(f"{label}: truncated or corrupt tar archive "
                                f"({_one_line(e)})") from None

    def close(self) -> None:
        self.tf.close()

    def _member(self, name: str) -> tarfile.TarInfo | None:
        name = _norm(name)
        for _ in range(8):   # follow links between members (docker save links repeated layers)
            m = self.members.get(name)
            if m is None or m.isreg():
                return m
            if m.issym():
                name = _norm(posixpath.join(posixpath.dirname(name), m.linkname))
            elif m.islnk():
                name = _norm(m.linkname)
            else:
                return None
        return None

    def exists(self, name: str) -> bool:
        return self._member(name) is not None

    def size(self, name: str) -> int:
        m = self._member(name)
        assert m is not None
        return m.size

    def open(self, name: str) -> BinaryIO:
        m = self._member(name)
        f = self.tf.extractfile(m) if m is not None else None
        if f is None:
            raise ManifestError(f"{self.where}: {name} is missing")
        return f  # type: ignore[return-value]


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or e.__class__.__name__


def _norm(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


# ---- the import and its undo ---------------------------------------------------------------


@dataclass
class _Import:
    store: Store
    added_blobs: list[str] = field(default_factory=list)
    layers_before: set[str] = field(default_factory=set)
    layer_digests: list[str] = field(default_factory=list)

    def ingest(self, chunks, digest: str, size: int | None, what: str) -> None:
        if self.store.blobs.has(digest):
            return
        self.store.blobs.ingest(chunks, digest, size, what=what)
        self.added_blobs.append(digest)

    def will_unpack(self, layer_digests: list[str]) -> None:
        from rktnetes.store.layers import cached_layers

        self.layer_digests = list(layer_digests)
        self.layers_before = set(cached_layers(self.store))

    def rollback(self) -> None:
        from rktnetes.store.gc import discard_unreferenced

        new_layers = [d for d in self.layer_digests if d not in self.layers_before]
        if self.added_blobs or new_layers:
            # Exclusive (a conversion of our shared lock): every other writer has committed its
            # record by then, so what no record names is truly ours alone.
            self.store.gc_lock.acquire(shared=False)
            discard_unreferenced(self.store, self.added_blobs, new_layers)


# ---- OCI image layout ----------------------------------------------------------------------


def _oci_layout(job: _Import, src: _Source, ref) -> tuple[str, list[str], str]:
    if not src.exists("index.json"):
        raise ManifestError(f"{src.where} is not an OCI image layout (no index.json)")
    index = parse_index(src.read("index.json"), f"{src.where}: index.json")
    chosen = _choose_entry(index.manifests, ref, src.where)
    desc, platform = chosen, ""
    for _ in range(_MAX_INDEX_DEPTH):
        raw = _read_blob(src, desc)
        if media_type_of(raw, desc.media_type, f"{src.where}: {desc.digest}") not in mt.INDEXES:
            break
        desc = select_platform(parse_index(raw, f"{src.where}: index {dg.short(desc.digest)}"))
        p = desc.platform or {}
        platform = "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
    else:
        raise ManifestError(f"{src.where}: image indexes nested too deep")
    what = f"{src.where}: manifest {dg.short(desc.digest)}"
    manifest = parse_manifest(raw, what)
    job.ingest([raw], desc.digest, desc.size, what)
    for blob in (manifest.config, *manifest.layers):
        job.ingest(src.chunks(_blob_name(blob.digest)), blob.digest, blob.size,
                   f"{src.where}: blob {dg.short(blob.digest)}")
    job.will_unpack([x.digest for x in manifest.layers])
    return desc.digest, _oci_references(ref, chosen), platform


def _choose_entry(entries: list[Descriptor], ref, where: str) -> Descriptor:
    def name(d: Descriptor) -> str:
        return (d.annotations or {}).get(REF_NAME, "")

    names = ", ".join(sorted({name(d) for d in entries if name(d)})) or "none"
    if ref.ref:
        matches = [d for d in entries if name(d) == ref.ref]
        if not matches:
            raise NotFoundError(f"{where}: no image named {ref.ref!r} (names: {names})")
    else:
        matches = entries
        if not matches:
            raise NotFoundError(f"{where}: the layout holds no image")
    if len({d.digest for d in matches}) > 1:
        hint = "" if ref.ref else f"; choose one with {ref.transport}:{ref.path}:NAME"
        raise AmbiguousError(f"{where}: {len(matches)} images match (names: {names}){hint}")
    return matches[0]


def _oci_references(ref, chosen: Descriptor) -> list[str]:
    from .reference import Reference

    ann = chosen.annotations or {}
    name = ref.ref or ann.get(REF_NAME, "")
    refs = []
    full = ann.get(IMAGE_NAME) or (name if (":" in name or "/" in name) else "")
    if full and (n := _registry_name(full)):
        refs.append(n)
    refs.append(Reference(ref.transport, path=ref.path, ref=name).normalized())
    if not ref.ref and name:
        refs.append(Reference(ref.transport, path=ref.path).normalized())
    if name and not full and (n := _registry_name(f"localhost/{name}")):
        refs.append(n)   # a bare ref name, as podman names what it loads: localhost/NAME
    return refs


def _registry_name(s: str) -> str:
    from .reference import parse

    try:
        r = parse(s)
    except ReferenceError_:
        return ""
    return r.normalized() if r.transport == "docker" else ""


def _blob_name(digest: str) -> str:
    algo, hexd = dg.parse(digest)
    return f"blobs/{algo}/{hexd}"


def _read_blob(src: _Source, desc: Descriptor) -> bytes:
    """A small blob (manifest, index), checked against its descriptor before it is parsed."""
    name = _blob_name(desc.digest)
    what = f"{src.where}: blob {dg.short(desc.digest)}"
    if not src.exists(name):
        raise ManifestError(f"{what} is missing")
    if desc.size > _JSON_LIMIT:
        raise ManifestError(f"{what}: {desc.size} bytes is too large for a manifest")
    raw = src.read(name)
    if len(raw) != desc.size:
        raise DigestMismatch(f"{what}: size {len(raw)} differs from the announced {desc.size}")
    dg.verify_bytes(raw, desc.digest, what)
    return raw


# ---- docker save -----------------------------------------------------------------------------


def _docker_archive(job: _Import, src: _Source, ref) -> tuple[str, list[str], str]:
    if not src.exists("manifest.json"):
        raise ManifestError(f"{src.where} is not a `docker save` archive (no manifest.json)")
    try:
        entries = json.loads(src.read("manifest.json"))
    except ValueError as e:
        raise ManifestError(f"{src.where}: manifest.json: malformed JSON ({e})") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ManifestError(f"{src.where}: manifest.json is not a list of images")
    entry = _choose_docker_entry(entries, ref, src.where)
    try:
        config_name = str(entry["Config"])
        layer_names = [str(x) for x in entry["Layers"]]
        tags = [str(t) for t in entry.get("RepoTags") or []]
    except (KeyError, TypeError) as e:
        raise ManifestError(f"{src.where}: manifest.json entry lacks {e}") from None

    cfg_raw = src.read(config_name)
    cfg = ImageConfig.parse(cfg_raw, f"{src.where}: {config_name}")
    if len(cfg.diff_ids) != len(layer_names):
        raise ManifestError(f"{src.where}: config lists {len(cfg.diff_ids)} layers, "
                            f"manifest.json {len(layer_names)}")
    cfg_digest = dg.of_bytes(cfg_raw)
    job.ingest([cfg_raw], cfg_digest, len(cfg_raw), f"{src.where}: {config_name}")

    layers = []
    for name, diff_id in zip(layer_names, cfg.diff_ids):
        what = f"{src.where}: {name}"
        media_type = _sniff_layer(src, name)
        size = src.size(name) if src.exists(name) else 0
        if media_type == mt.OCI_LAYER:
            digest = diff_id   # an uncompressed layer's digest is its diff_id; ingest checks it
        else:
            digest = _digest_of(src.chunks(name))
        job.ingest(src.chunks(name), digest, size, what)
        layers.append({"mediaType": media_type, "digest": digest, "size": size})

    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": cfg_digest, "size": len(cfg_raw)},
        "layers": layers,
    }, separators=(",", ":"), sort_keys=True).encode()
    manifest_digest = dg.of_bytes(manifest)
    job.ingest([manifest], manifest_digest, len(manifest), f"{src.where}: generated manifest")
    job.will_unpack([x["digest"] for x in layers])

    from .reference import Reference

    refs = [n for n in (_registry_name(t) for t in tags) if n]
    refs.append(Reference("docker-archive", path=ref.path, ref=ref.ref).normalized())
    return manifest_digest, refs, ""


def _choose_docker_entry(entries: list[dict], ref, where: str) -> dict:
    if not entries:
        raise NotFoundError(f"{where}: the archive holds no image")
    if ref.ref:
        if ref.ref.startswith("@") and ref.ref[1:].isdigit():
            i = int(ref.ref[1:])
            if i >= len(entries):
                raise NotFoundError(f"{where}: no image at index {i} (it has {len(entries)})")
            return entries[i]
        want = _registry_name(ref.ref) or ref.ref
        for e in entries:
            if want in {_registry_name(str(t)) for t in e.get("RepoTags") or []}:
                return e
        raise NotFoundError(f"{where}: no image tagged {ref.ref!r}")
    if len(entries) > 1:
        raise AmbiguousError(f"{where} holds {len(entries)} images; choose one with "
                             f"docker-archive:{ref.path}:NAME:TAG or :@INDEX")
    return entries[0]


def _sniff_layer(src: _Source, name: str) -> str:
    if not src.exists(name):
        raise ManifestError(f"{src.where}: layer {name} is missing")
    with src.open(name) as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return mt.OCI_LAYER_GZIP
    if magic == b"\x28\xb5\x2f\xfd":
        return mt.OCI_LAYER_ZSTD
    return mt.OCI_LAYER


def _digest_of(chunks: Iterator[bytes]) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return f"sha256:{h.hexdigest()}"

