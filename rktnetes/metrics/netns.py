"""A network namespace's interface counters, read through a process in it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Interface:
    name: str
    rx_bytes: int
    rx_errors: int
    tx_bytes: int
    tx_errors: int


def net_dev(pid: int) -> list[Interface]:
    """The interfaces of the network namespace process `pid` is in (/proc/PID/net/dev),
    loopback left out."""
    out = []
    for line in _read(f"/proc/{pid}/net/dev").splitlines()[2:]:
        name, _, rest = line.partition(":")
        f = rest.split()
        if len(f) < 16 or name.strip() == "lo":
            continue
        out.append(Interface(name.strip(), int(f[0]), int(f[2]), int(f[8]), int(f[10])))
    return out


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""
