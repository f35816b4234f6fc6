"""Typed views of OCI/Docker manifests, indexes and image configs, with the checks the spec asks.
(The image config's own view, `ImageConfig`, lives in `config.py`; it is re-exported here.)"""

from __future__ import annotations

from dataclasses import dataclass, field

from rktnetes.errors import ManifestError
from rktnetes.store import digest as dg

from . import mediatypes as mt
from .config import ImageConfig, load_object as _load

__all__ = ["Descriptor", "Manifest", "Index", "ImageConfig", "media_type_of", "parse_manifest",
           "parse_index", "host_platform", "select_platform"]


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what a manifest or index says about one blob."""
    media_type: str
    digest: str
    size: int
    platform: dict | None = None
    annotations: dict | None = None

    @classmethod
    def from_json(cls, d: dict, what: str) -> "Descriptor":
        if not isinstance(d, dict):
            raise ManifestError(f"{what}: descriptor is not an object")
        try:
            desc = cls(str(d.get("mediaType", "")), str(d["digest"]), int(d["size"]),
                       d.get("platform"), d.get("annotations"))
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"{what}: malformed descriptor ({e})") from None
        dg.parse(desc.digest)
        if desc.size < 0:
            raise ManifestError(f"{what}: negative size in descriptor")
        return desc


@dataclass(frozen=True)
class Manifest:
    """An image manifest (OCI or Docker v2 schema 2): its config and layers."""
    media_type: str
    config: Descriptor
    layers: list[Descriptor]
    annotations: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Index:
    """An OCI index or Docker manifest list: one manifest per platform."""
    media_type: str
    manifests: list[Descriptor]


def media_type_of(raw: bytes, header_type: str = "", what: str = "manifest") -> str:
    """The document's own mediaType wins; otherwise the HTTP Content-Type; otherwise guess."""
    doc = _load(raw, what)
    mtype = doc.get("mediaType") or header_type.split(";")[0].strip()
    if mtype in mt.INDEXES or mtype in mt.MANIFESTS:
        return mtype
    if doc.get("schemaVersion") == 1:
        raise ManifestError(f"{what}: Docker schema 1 manifests are not supported")
    if "manifests" in doc:
        return mt.OCI_INDEX
    if "config" in doc and "layers" in doc:
        return mt.OCI_MANIFEST
    raise ManifestError(f"{what}: unsupported media type {mtype or '(none)'!r}")


def parse_manifest(raw: bytes, what: str = "manifest") -> Manifest:
    doc = _load(raw, what)
    mtype = media_type_of(raw, what=what)
    if mtype not in mt.MANIFESTS:
        raise ManifestError(f"{what}: expected an image manifest, got {mtype}")
    if doc.get("schemaVersion") != 2:
        raise ManifestError(f"{what}: schemaVersion must be 2")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ManifestError(f"{what}: 'layers' is missing or not a list")
    return Manifest(mtype, Descriptor.from_json(doc.get("config"), f"{what} config"),
                    [Descriptor.from_json(x, f"{what} layer") for x in layers],
                    doc.get("annotations") or {})


def parse_index(raw: bytes, what: str = "index") -> Index:
    doc = _load(raw, what)
    mtype = media_type_of(raw, what=what)
    if mtype not in mt.INDEXES:
        raise ManifestError(f"{what}: expected an image index, got {mtype}")
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise ManifestError(f"{what}: 'manifests' is missing or not a list")
    return Index(mtype, [Descriptor.from_json(x, f"{what} entry") for x in entries])


def host_platform() -> dict:
    import platform as _platform  # here: ~5 ms, and only fetching from an index needs it

    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(_platform.machine(),
                                                                            _platform.machine())
    return {"os": "linux", "architecture": arch}


def select_platform(index: Index, want: dict | None = None) -> Descriptor:
    """The index entry for the wanted platform (the host's by default)."""
    want = want or host_platform()
    for desc in index.manifests:
        p = desc.platform or {}
        if p.get("os") == want["os"] and p.get("architecture") == want["architecture"] and (
                not want.get("variant") or p.get("variant") == want.get("variant")):
            return desc
    offered = ", ".join(f"{(d.platform or {}).get('os')}/{(d.platform or {}).get('architecture')}"
                        for d in index.manifests) or "none"
    raise ManifestError(f"no image for {want['os']}/{want['architecture']} in the index "
                        f"(it offers: {offered})")
