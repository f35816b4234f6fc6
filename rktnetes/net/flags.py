"""Parsing `--net` and `--port` values: pure functions, UsageError on bad input."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rktnetes.errors import UsageError
from rktnetes.pod.manifest import NetworkRequest, PortForward

# The CNI spec's network name (net.d's files are checked against it too). Here, not in
# config.py: `rkt run --net=...` needs the parsers only, not the network definitions.
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
_PORT_PROTO = r"^(\d{1,5})(?:/(tcp|udp|sctp))?$"  # compiled at first use: --port only


def parse_net_flag(value: str) -> list[NetworkRequest]:
    """`default`, `host`, `none`, `NAME`, `NAME:K=V;K=V`, several comma-separated."""
    out: list[NetworkRequest] = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            raise UsageError(f"--net {value!r}: empty network name")
        name, _, argstr = item.partition(":")
        name = name.strip()
        if not NAME_RE.match(name):
            raise UsageError(f"--net {value!r}: invalid network name {name!r}")
        args: dict[str, str] = {}
        for kv in filter(None, (s.strip() for s in argstr.split(";"))):
            k, eq, v = kv.partition("=")
            if not eq or not k.strip():
                raise UsageError(f"--net {value!r}: CNI argument {kv!r} is not K=V")
            args[k.strip()] = v.strip()
        if args and name in ("host", "none"):
            raise UsageError(f"--net {value!r}: {name!r} takes no arguments")
        if any(r.name == name for r in out):
            raise UsageError(f"--net {value!r}: network {name!r} given twice")
        out.append(NetworkRequest(name, args))
    return check_net_requests(out)


def parse_net_flags(values: Iterable[str]) -> list[NetworkRequest]:
    """Several `--net` flags are one list; none means `default`."""
    out: list[NetworkRequest] = []
    for v in values:
        out += parse_net_flag(v)
    return check_net_requests(out or [NetworkRequest("default")])


def check_net_requests(reqs: list[NetworkRequest]) -> list[NetworkRequest]:
    names = [r.name for r in reqs]
    if len(set(names)) != len(names):
        raise UsageError(f"--net: a network is given twice in {','.join(names)}")
    for special in ("host", "none"):
        if special in names and len(names) > 1:
            raise UsageError(f"--net={special} cannot be combined with other networks")
    return reqs


@dataclass
class PortSpec:
    """A host port to forward to the pod, before the images are known: `port` is
    "PORT[/PROTO]" or the name of a port an image exposes."""

    port: str
    host_port: int
    host_ip: str = ""
    shown: str = ""           # how an error names it ("--port '80/tcp:8080'")


def parse_port_spec(value: str) -> PortSpec:
    """`NAME:[HOSTIP:]HOSTPORT`, its syntax only (the name is resolved by resolve_port)."""
    shown = f"--port {value!r}"
    name, sep, rest = value.partition(":")
    if not sep or not name or not rest:
        raise UsageError(f"{shown}: expected NAME:[HOSTIP:]HOSTPORT")
    host_ip, host_port_s = "", rest
    if rest.startswith("["):                      # [IPv6]:PORT
        ip6, close, tail = rest[1:].partition("]")
        if not close or not tail.startswith(":"):
            raise UsageError(f"{shown}: expected [IPV6]:HOSTPORT")
        host_ip, host_port_s = ip6, tail[1:]
    elif ":" in rest:
        host_ip, _, host_port_s = rest.rpartition(":")
    if host_ip:
        try:
            host_ip = str(ipaddress.ip_address(host_ip))
        except ValueError:
            raise UsageError(f"{shown}: invalid host IP {host_ip!r}") from None
    if not host_port_s.isdigit() or not 0 < int(host_port_s) < 65536:
        raise UsageError(f"{shown}: invalid host port {host_port_s!r}")
    return PortSpec(name, int(host_port_s), host_ip, shown)


def resolve_port(spec: PortSpec, exposed_ports: Iterable[str] | Mapping[str, str] = ()
                 ) -> PortForward:
    """The forward `spec` asks for, its port named by `PORT/PROTO` (or `PORT`, tcp) or by an
    exposed port: `exposed_ports` maps names to "PORT/PROTO" (a plain list of "PORT/PROTO"
    strings, as OCI images expose them, names each port by itself)."""
    exposed = (dict(exposed_ports) if isinstance(exposed_ports, Mapping)
               else {p: p for p in exposed_ports})
    port = exposed.get(spec.port, spec.port)
    m = re.match(_PORT_PROTO, port, re.IGNORECASE)
    shown = spec.shown or f"port {spec.port!r}"
    if not m:
        known = ", ".join(sorted(exposed)) or "none"
        raise UsageError(f"{shown}: unknown port name {spec.port!r} (exposed: {known})")
    container_port, proto = int(m.group(1)), (m.group(2) or "tcp").lower()
    if not 0 < container_port < 65536:
        raise UsageError(f"{shown}: invalid container port {container_port}")
    if not 0 < spec.host_port < 65536:
        raise UsageError(f"{shown}: invalid host port {spec.host_port}")
    return PortForward(name=spec.port, container_port=container_port, protocol=proto,
                       host_port=spec.host_port, host_ip=spec.host_ip)


def parse_port_flag(value: str, exposed_ports: Iterable[str] | Mapping[str, str] = ()
                    ) -> PortForward:
    """`NAME:[HOSTIP:]HOSTPORT` resolved against `exposed_ports` (see resolve_port)."""
    return resolve_port(parse_port_spec(value), exposed_ports)


def check_port_forwards(ports: list[PortForward]) -> list[PortForward]:
    """Two forwards cannot claim the same host port and protocol."""
    seen: set[tuple[str, int, str]] = set()
    for p in ports:
        key = (p.host_ip or "*", p.host_port, p.protocol)
        wild = ("*", p.host_port, p.protocol)
        if key in seen or wild in seen or (p.host_ip == "" and any(
                s[1:] == key[1:] for s in seen)):
            raise UsageError(f"--port: host port {p.host_port}/{p.protocol} given twice")
        seen.add(key)
    return ports
