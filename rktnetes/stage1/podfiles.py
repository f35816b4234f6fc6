"""Files a pod's apps share: /etc/hosts, /etc/hostname, /etc/resolv.conf and empty volumes.

The text of each file is a pure function; `write_etc` puts them in `<pod>/etc/` from where
each app gets them bind-mounted.
"""

from __future__ import annotations

import os
from pathlib import Path

from rktnetes.errors import Stage1Error
from rktnetes.fsutil import atomic_write_bytes
from rktnetes.pod.manifest import App, PodManifest

from .ocispec import BindMount

ETC_FILES = ("hosts", "hostname", "resolv.conf")


def hosts_text(hostname: str, entries: dict[str, list[str]]) -> str:
    lines = ["127.0.0.1\tlocalhost " + hostname,
             "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{ip}\t{' '.join(names)}" for ip, names in entries.items()]
    return "\n".join(lines) + "\n"


def resolv_text(host_resolv: str, dns: list[str], search: list[str], options: list[str]) -> str:
    """The host's resolv.conf without loopback resolvers (unreachable from the pod's own
    network namespace); explicit pod DNS settings replace the host's."""
    servers, srch, opts = [], [], []
    for line in host_resolv.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0].startswith(("#", ";")):
            continue
        if parts[0] == "nameserver" and not (parts[1].startswith("127.") or parts[1] == "::1"):
            servers.append(parts[1])
        elif parts[0] in ("search", "domain"):
            srch = parts[1:]
        elif parts[0] == "options":
            opts += parts[1:]
    servers, srch, opts = dns or servers, search or srch, options or opts
    out = [f"nameserver {s}" for s in servers]
    if srch:
        out.append("search " + " ".join(srch))
    if opts:
        out.append("options " + " ".join(opts))
    return "\n".join(out) + "\n" if out else ""


def write_etc(pod_dir: Path, m: PodManifest, hostname: str) -> None:
    try:
        host_resolv = Path("/etc/resolv.conf").read_text(errors="replace")
    except OSError:
        host_resolv = ""
    d = pod_dir / "etc"
    # rewritten at every start of the pod: no fsync (see atomic_write_bytes)
    atomic_write_bytes(d / "hosts", hosts_text(hostname, m.hosts_entries).encode(),
                       durable=False)
    atomic_write_bytes(d / "hostname", (hostname + "\n").encode(), durable=False)
    atomic_write_bytes(d / "resolv.conf",
                       resolv_text(host_resolv, m.dns, m.dns_search, m.dns_options).encode(),
                       durable=False)


def etc_binds(pod_dir: Path) -> list[BindMount]:
    return [BindMount(f"/etc/{n}", str(pod_dir / "etc" / n), readonly=False) for n in ETC_FILES]


def volume_dir(pod_dir: Path, name: str) -> Path:
    return pod_dir / "volumes" / name


def make_empty_volumes(pod_dir: Path, m: PodManifest) -> None:
    for v in m.volumes:
        if v.kind == "empty":
            d = volume_dir(pod_dir, v.name)
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, int(v.mode, 8))
            os.chown(d, v.uid, v.gid)


def volume_binds(pod_dir: Path, m: PodManifest, app: App) -> list[BindMount]:
    out = []
    for mnt in app.mounts:
        vol = m.volume(mnt.volume)
        if vol is None:
            raise Stage1Error(f"app {app.name}: mount of unknown volume {mnt.volume!r}")
        if not os.path.isabs(mnt.target):
            raise Stage1Error(f"app {app.name}: mount target {mnt.target!r} is not absolute")
        if vol.kind == "host":
            src = vol.source
            if not os.path.exists(src):
                raise Stage1Error(f"volume {vol.name}: source {src} does not exist")
        elif vol.kind == "empty":
            src = str(volume_dir(pod_dir, vol.name))
        else:
            raise Stage1Error(f"volume {vol.name}: unknown kind {vol.kind!r}")
        ro = vol.readonly if mnt.readonly is None else mnt.readonly
        out.append(BindMount(mnt.target, src, ro))
    return out
