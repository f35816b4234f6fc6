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
        """The whole config checked, field by field, against the OCI image spec's types: a
        hostile or broken one is one ManifestError line at fetch, never a Python error later
        (an Entrypoint that is a number, a Cmd that is a string, Env entries that are not)."""
        doc = load_object(raw, what)
        rootfs = doc.get("rootfs")
        if not isinstance(rootfs, dict):
            raise ManifestError(f"{what}: rootfs is missing or not an object")
        diff_ids = rootfs.get("diff_ids")
        if not isinstance(diff_ids, list):
            raise ManifestError(f"{what}: rootfs.diff_ids is missing")
        for d in diff_ids:
            if not isinstance(d, str):
                raise ManifestError(f"{what}: rootfs.diff_ids holds {_shown(d)}, not a digest")
            dg.parse(d)
        c = doc.get("config")
        if c is None:
            c = {}
        if not isinstance(c, dict):
            raise ManifestError(f"{what}: 'config' is not an object")
        labels = _str_map(c.get("Labels"), f"{what}: config.Labels")
        ports = _ports(c.get("ExposedPorts"), f"{what}: config.ExposedPorts")
        stop = _string(c.get("StopSignal"), f"{what}: config.StopSignal")
        if stop:
            from rktnetes.host.signals import canonical

            try:
                stop = canonical(stop)
            except ValueError as e:
                raise ManifestError(f"{what}: config.StopSignal {_shown(stop)}: {e}") from None
        env = _strings(c.get("Env"), f"{what}: config.Env")
        for kv in env:
            if "=" not in kv or kv.startswith("="):
                raise ManifestError(f"{what}: config.Env entry {_shown(kv)} is not NAME=VALUE")
        return cls(
            os=_string(doc.get("os"), f"{what}: os"),
            architecture=_string(doc.get("architecture"), f"{what}: architecture"),
            diff_ids=list(diff_ids),
            entrypoint=_strings(c.get("Entrypoint"), f"{what}: config.Entrypoint"),
            cmd=_strings(c.get("Cmd"), f"{what}: config.Cmd"),
            env=env,
            working_dir=_string(c.get("WorkingDir"), f"{what}: config.WorkingDir"),
            user=_string(c.get("User"), f"{what}: config.User"),
            exposed_ports=ports, labels=labels, stop_signal=stop, raw=doc)


def _shown(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:60] + "…"


def _string(v, what: str) -> str:
    """An optional string field: absent or null is ""."""
    if v is None:
        return ""
    if not isinstance(v, str):
        raise ManifestError(f"{what} is {_shown(v)}, not a string")
    return v


def _strings(v, what: str) -> list[str]:
    """An optional list of strings (Entrypoint, Cmd, Env). A plain string is refused: the
    shell form is the builder's to turn into a list, and taken as one here it would be split
    into characters or run as one word."""
    if v is None:
        return []
    if isinstance(v, str):
        raise ManifestError(f"{what} is the string {_shown(v)}, not a list of strings")
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ManifestError(f"{what} is {_shown(v)}, not a list of strings")
    return list(v)


def _str_map(v, what: str) -> dict:
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        raise ManifestError(f"{what} is {_shown(v)}, not an object of strings")
    return dict(v)


def _ports(v, what: str) -> list[str]:
    """ExposedPorts: an object whose keys are `PORT[/tcp|udp|sctp]`."""
    if v is None:
        return []
    if not isinstance(v, dict):
        raise ManifestError(f"{what} is {_shown(v)}, not an object of ports")
    for key in v:
        port, _, proto = key.partition("/")
        if not port.isdigit() or not 0 < int(port) < 65536 or proto not in ("", "tcp", "udp",
                                                                             "sctp"):
            raise ManifestError(f"{what}: {_shown(key)} is not a port like 80/tcp")
    return sorted(v)
