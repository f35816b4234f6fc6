"""The pod's /etc/resolv.conf, /etc/hosts and /etc/hostname, written into the pod directory
for the stage1 to bind-mount. Rendering is pure; `pod_dns_files` only writes the results."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from rktnetes.fsutil import atomic_write_bytes
from rktnetes.pod.manifest import PodManifest

from .status import NetworkStatus

HOST_RESOLV = Path("/etc/resolv.conf")
# Where systemd-resolved keeps the real upstreams when /etc/resolv.conf points at 127.0.0.53.
RESOLVED_UPSTREAM = Path("/run/systemd/resolve/resolv.conf")
HOST_HOSTS = Path("/etc/hosts")


@dataclass
class ResolvConf:
    """What goes into a pod's /etc/resolv.conf."""
    nameservers: list[str] = field(default_factory=list)
    search: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"nameserver {n}" for n in self.nameservers]
        if self.search:
            lines.append("search " + " ".join(self.search))
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "".join(line + "\n" for line in lines)


def parse_resolv_conf(text: str) -> ResolvConf:
    rc = ResolvConf()
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        key, vals = words[0], words[1:]
        if key == "nameserver" and vals:
            rc.nameservers.append(vals[0])
        elif key in ("search", "domain"):
            rc.search = vals          # the last of search/domain wins, as in resolv.conf(5)
        elif key == "options":
            rc.options += vals
    return rc


def _is_loopback(ns: str) -> bool:
    try:
        return ipaddress.ip_address(ns.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def pod_resolv_conf(manifest: PodManifest, status: NetworkStatus, host: ResolvConf,
                    host_upstream: ResolvConf | None = None) -> ResolvConf:
    """User flags first, then what the CNI networks announced, then the host's resolvers —
    minus loopback ones, which mean nothing inside the pod's own network namespace."""
    cni_ns = [n for a in status.networks for n in a.dns.nameservers]
    cni_search = [s for a in status.networks for s in (a.dns.search or
                                                       ([a.dns.domain] if a.dns.domain else []))]
    cni_opts = [o for a in status.networks for o in a.dns.options]
    if status.mode == "host":
        nameservers = host.nameservers           # loopback resolvers do work in the host netns
    else:
        nameservers = [n for n in host.nameservers if not _is_loopback(n)]
        if not nameservers and host_upstream:
            nameservers = [n for n in host_upstream.nameservers if not _is_loopback(n)]
    return ResolvConf(
        nameservers=_uniq(manifest.dns or cni_ns or nameservers),
        search=_uniq(manifest.dns_search or cni_search or host.search),
        options=_uniq(manifest.dns_options or cni_opts or host.options))


def default_hostname(manifest: PodManifest) -> str:
    return manifest.hostname or f"rkt-{manifest.uuid}"


def pod_hosts(manifest: PodManifest, status: NetworkStatus, host_hosts: str = "") -> str:
    """localhost lines, the pod's own address with its hostname, then --hosts-entry lines.
    A host-network pod starts from the host's own /etc/hosts instead."""
    name = default_hostname(manifest)
    short = name.split(".", 1)[0]
    names = name if short == name else f"{name} {short}"
    if status.mode == "host" and host_hosts:
        out = host_hosts if host_hosts.endswith("\n") else host_hosts + "\n"
    else:
        out = ("127.0.0.1\tlocalhost localhost.localdomain\n"
               "::1\tlocalhost ip6-localhost ip6-loopback\n")
    ip = status.ip
    if status.mode != "host":
        out += f"{ip or '127.0.1.1'}\t{names}\n"
    for addr, hosts in manifest.hosts_entries.items():
        out += f"{addr}\t{' '.join(hosts)}\n"
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def pod_dns_files(pod_dir: Path, manifest: PodManifest, status: NetworkStatus
                  ) -> tuple[Path, Path, Path]:
    """Write etc/resolv.conf, etc/hosts, etc/hostname in the pod dir; return their paths."""
    etc = pod_dir / "etc"
    resolv, hosts, hostname = etc / "resolv.conf", etc / "hosts", etc / "hostname"
    if manifest.dns == ["host"]:
        text = _read(HOST_RESOLV)                          # rkt's --dns=host
    elif manifest.dns == ["none"]:
        text = ""                                          # rkt's --dns=none
    else:
        upstream = parse_resolv_conf(_read(RESOLVED_UPSTREAM)) if RESOLVED_UPSTREAM.exists() \
            else None
        text = pod_resolv_conf(manifest, status, parse_resolv_conf(_read(HOST_RESOLV)),
                               upstream).render()
    # rewritten at every start of the pod: no fsync (see atomic_write_bytes)
    atomic_write_bytes(resolv, text.encode(), durable=False)
    atomic_write_bytes(hosts, pod_hosts(manifest, status, _read(HOST_HOSTS)).encode(),
                       durable=False)
    atomic_write_bytes(hostname, (default_hostname(manifest) + "\n").encode(), durable=False)
    return resolv, hosts, hostname


def _uniq(xs: list[str]) -> list[str]:
    return list(dict.fromkeys(xs))
