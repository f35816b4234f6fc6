"""The image config (OCI image spec's `application/vnd.oci.image.config.v1+json`, Docker's
container image JSON): the parts of it a pod needs. Apart from the manifests (`manifest.py`),
since preparing a pod from a stored image reads its config only."""

from __future__ import annotations

import json
from dataclasses import dataclass

from rktnetes.errors import ManifestError
from rktnetes.store import digest as dg


def load_object(raw: bytes, what: str) -> dict:
    """A JSON document that must be an object; ManifestError (one line) otherwise."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"{what}: malformed JSON ({e.__class__.__name__}: {str(e)[:80]})") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{what}: not a JSON object")
    return doc


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image config a pod needs."""

    os: str
    architecture: str
    diff_ids: list[str]
    entrypoint: list[str]
    cmd: list[str]
    env: list[str]
    working_dir: str
    user: str
    exposed_ports: list[str]
    labels: dict
    stop_signal: str
    raw: dict

    @classmethod
    def parse(cls, raw: bytes, what: str = "image config") -> "ImageConfig":
        doc = load_object(raw, what)
        rootfs = doc.get("rootfs") or {}
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list):
            raise ManifestError(f"{what}: rootfs.diff_ids is missing")
        for d in diff_ids:
            dg.parse(d)
        c = doc.get("config") or {}
        if not isinstance(c, dict):
            raise ManifestError(f"{what}: 'config' is not an object")
        return cls(
            os=str(doc.get("os", "")), architecture=str(doc.get("architecture", "")),
            diff_ids=list(diff_ids), entrypoint=list(c.get("Entrypoint") or []),
            cmd=list(c.get("Cmd") or []), env=list(c.get("Env") or []),
            working_dir=str(c.get("WorkingDir") or ""), user=str(c.get("User") or ""),
            exposed_ports=sorted((c.get("ExposedPorts") or {}).keys()),
            labels=dict(c.get("Labels") or {}), stop_signal=str(c.get("StopSignal") or ""),
            raw=doc)
