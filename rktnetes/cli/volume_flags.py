"""Parsing `--volume`, `--mount` and `--mnt-volume` values (rkt's `key=value,...` syntax) into
the pod manifest's types."""

from __future__ import annotations

import posixpath
import re

from rktnetes.errors import UsageError
from rktnetes.pod.manifest import Mount, Volume
from rktnetes.stage0.spec import check_name

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _pairs(value: str, flag: str, first_is_name: bool) -> tuple[str, dict[str, str]]:
    parts = [p for p in value.split(",") if p != ""]
    name = ""
    if first_is_name and parts and "=" not in parts[0]:
        name = parts.pop(0)
    kv: dict[str, str] = {}
    for p in parts:
        k, sep, v = p.partition("=")
        if not sep or not k:
            raise UsageError(f"{flag} {value!r}: expected key=value, got {p!r}")
        if k in kv:
            raise UsageError(f"{flag} {value!r}: {k} given twice")
        kv[k] = v
    return name, kv


def parse_bool(v: str, what: str) -> bool:
    low = v.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise UsageError(f"{what}: expected true or false, got {v!r}")


def parse_volume(value: str) -> Volume:
    """`NAME,kind=host|empty,source=PATH,readOnly=BOOL[,mode=0755,uid=N,gid=N]`."""
    name, kv = _pairs(value, "--volume", first_is_name=True)
    name = kv.pop("name", name)
    check_name(name, "--volume")
    if "kind" not in kv:
        raise UsageError(f"--volume {name}: kind= is required (kind=host,source=PATH or "
                         f"kind=empty)")
    kind = kv.pop("kind")
    if kind not in ("host", "empty"):
        raise UsageError(f"--volume {name}: kind must be host or empty, not {kind!r}")
    vol = Volume(name=name, kind=kind)
    if "readOnly" in kv or "readonly" in kv:
        vol.readonly = parse_bool(kv.pop("readOnly", kv.pop("readonly", "")), f"--volume {name} readOnly")
    source = kv.pop("source", "")
    if kind == "host":
        if not source or not posixpath.isabs(source):
            raise UsageError(f"--volume {name}: kind=host needs an absolute source=PATH")
        vol.source = posixpath.normpath(source)
    elif source:
        raise UsageError(f"--volume {name}: source= is only for kind=host")
    if kind == "empty":
        if "mode" in kv:
            mode = kv.pop("mode")
            if not re.match(r"^0?[0-7]{3,4}$", mode):
                raise UsageError(f"--volume {name}: mode must be octal like 0755, not {mode!r}")
            vol.mode = mode if mode.startswith("0") else "0" + mode
        for key in ("uid", "gid"):
            if key in kv:
                raw = kv.pop(key)
                if not raw.isdigit() or int(raw) > 4294967294:
                    raise UsageError(f"--volume {name}: {key} must be a number in "
                                     f"0..4294967294, not {raw[:80]!r}")
                setattr(vol, key, int(raw))
    if kv:
        raise UsageError(f"--volume {name}: unknown option(s) {', '.join(sorted(kv))}")
    return vol


def parse_mount(value: str) -> Mount:
    """`volume=NAME,target=PATH[,readOnly=BOOL]`."""
    _, kv = _pairs(value, "--mount", first_is_name=False)
    vol = kv.pop("volume", "")
    target = kv.pop("target", "")
    if not vol or not target:
        raise UsageError(f"--mount {value!r}: expected volume=NAME,target=PATH")
    check_name(vol, "--mount")
    if not posixpath.isabs(target):
        raise UsageError(f"--mount {value!r}: target must be an absolute path")
    ro = None
    if "readOnly" in kv or "readonly" in kv:
        ro = parse_bool(kv.pop("readOnly", kv.pop("readonly", "")), f"--mount {vol} readOnly")
    if kv:
        raise UsageError(f"--mount {value!r}: unknown option(s) {', '.join(sorted(kv))}")
    return Mount(volume=vol, target=posixpath.normpath(target), readonly=ro)


def parse_mnt_volume(value: str) -> tuple[Volume, Mount]:
    """rkt's `--mnt-volume=name=NAME,kind=host,source=PATH,target=PATH[,readOnly=true]`: a pod
    volume and the app's mount of it in one flag."""
    parts = [p for p in value.split(",") if p]
    targets = [p for p in parts if p.startswith("target=")]
    if len(targets) != 1:
        raise UsageError(f"--mnt-volume {value!r}: expected NAME,kind=host|empty,...,target=PATH")
    target = targets[0].partition("=")[2]
    vol = parse_volume(",".join(p for p in parts if not p.startswith("target=")))
    if not posixpath.isabs(target):
        raise UsageError(f"--mnt-volume {value!r}: target must be an absolute path")
    return vol, Mount(volume=vol.name, target=posixpath.normpath(target))

