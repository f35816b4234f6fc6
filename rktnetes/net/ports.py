"""Port forwards: which network carries them, the portmap plugin's capability argument, and
the check that the host ports are free. Loaded only for pods that forward ports."""

from __future__ import annotations

import errno
import re

from rktnetes.errors import NetworkError
from rktnetes.pod.manifest import PortForward

from .config import NetworkConfig

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds on every pod's start
    from typing import Any

PORT_CAPABILITY = "portMappings"


def port_network(configs: list[NetworkConfig], ports: list[PortForward]) -> NetworkConfig | None:
    """Ports are forwarded on the first network whose plugins take portMappings."""
    if not ports:
        return None
    for cfg in configs:
        if cfg.has_capability(PORT_CAPABILITY):
            return cfg
    names = ",".join(c.name for c in configs) or "none"
    raise NetworkError(f"cannot forward ports: network {names!r} has no plugin with the "
                       f"{PORT_CAPABILITY!r} capability (portmap)")


def port_mappings(ports: list[PortForward]) -> list[dict[str, Any]]:
    """The portMappings capability argument, as the portmap plugin reads it."""
    out = []
    for p in ports:
        m: dict[str, Any] = {"hostPort": p.host_port, "containerPort": p.container_port,
                             "protocol": p.protocol}
        if p.host_ip:
            m["hostIP"] = p.host_ip
        out.append(m)
    return out


def check_host_ports(ports: list[PortForward]) -> None:
    """Fail before any ADD when a host port is taken: by a listening socket (try bind()), or by
    another pod's forward (a portmap DNAT rule, which holds no socket)."""
    if not ports:
        return
    import socket  # here: most pods forward no port, and it costs milliseconds to import

    for p in ports:
        fam = socket.AF_INET6 if ":" in p.host_ip else socket.AF_INET
        kind = socket.SOCK_DGRAM if p.protocol == "udp" else socket.SOCK_STREAM
        if p.protocol not in ("tcp", "udp"):
            continue
        with socket.socket(fam, kind) as s:
            if kind == socket.SOCK_STREAM:
                # allowed past TIME_WAIT leftovers, refused by a listener
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((p.host_ip or ("::" if fam == socket.AF_INET6 else "0.0.0.0"),
                        p.host_port))
            except OSError as e:
                why = "already in use" if e.errno == errno.EADDRINUSE else e.strerror
                where = f"{p.host_ip}:" if p.host_ip else ""
                raise NetworkError(f"host port {where}{p.host_port}/{p.protocol} for "
                                   f"--port {p.name}: {why}") from None
    taken = _forwarded_ports()
    for p in ports:
        if (p.protocol, p.host_port) in taken:
            raise NetworkError(f"host port {p.host_port}/{p.protocol} for --port {p.name}:"
                               f" already forwarded to another pod")


_DNAT_RULE = re.compile(r"^-A CNI-HOSTPORT-DNAT .*-p (\w+) .*--dports ([\d,:]+)")


def _forwarded_ports() -> set[tuple[str, int]]:
    """(proto, port) of every portmap forward on this host, from its top-level DNAT chain."""
    try:
        import subprocess  # only for a pod that forwards ports

        p = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True)
    except OSError:
        return set()
    out: set[tuple[str, int]] = set()
    for line in p.stdout.splitlines():
        m = _DNAT_RULE.match(line)
        if m:
            for part in m.group(2).split(","):
                lo, _, hi = part.partition(":")
                out.update((m.group(1), n) for n in range(int(lo), int(hi or lo) + 1))
    return out
