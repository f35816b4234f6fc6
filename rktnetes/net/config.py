"""Network definitions: CNI configuration lists read from `<config-dir>/net.d`.

`.conflist` files are CNI network configuration lists; a `.conf` file holds one plugin's
configuration and is wrapped into a list of one, as libcni does. Files are read in name order;
a malformed file is an error naming it (a broken definition should not be silently skipped).
When no file defines `default`, the built-in one is used: rkt's bridge on 172.16.28.0/24.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from rktnetes.errors import NetworkError

from .flags import NAME_RE

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds on every pod's start
    from typing import Any

DEFAULT_NETWORK = "default"
RESERVED = ("host", "none")          # not CNI networks: the host's namespace, loopback only
DEFAULT_CNI_VERSION = "0.4.0"        # for files that omit it (rkt accepted that)

# rkt's default network. The bridge is host-wide, so its IPAM state must be too: host-local's
# own default dataDir (/var/lib/cni/networks/default), shared by every --dir on this host.
DEFAULT_BRIDGE = "rkt0"
DEFAULT_SUBNET = "172.16.28.0/24"


@dataclass
class NetworkConfig:
    """One network definition (a CNI network configuration list)."""
    name: str
    cni_version: str
    plugins: list[dict[str, Any]]
    source: str = "<built-in>"     # the file it came from
    raw: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "cniVersion": self.cni_version, "plugins": self.plugins,
                "source": self.source}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "NetworkConfig":
        return cls(d["name"], d["cniVersion"], list(d["plugins"]), d.get("source", ""), d)

    def has_capability(self, cap: str) -> bool:
        return any((p.get("capabilities") or {}).get(cap) for p in self.plugins)


def default_network() -> NetworkConfig:
    plugins: list[dict[str, Any]] = [
        {"type": "bridge", "bridge": DEFAULT_BRIDGE, "isGateway": True, "ipMasq": True,
         # hairpin: a pod can reach its own forwarded port through the host's address
         "hairpinMode": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": DEFAULT_SUBNET}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ]
    from .cni import plugin_dirs

    # Accept the pod's traffic in FORWARD even where the policy is DROP (e.g. with Docker);
    # optional, as older plugin sets lack it.
    if any((Path(d) / "firewall").exists() for d in plugin_dirs()):
        plugins.append({"type": "firewall"})
    return NetworkConfig(DEFAULT_NETWORK, "1.0.0", plugins)


def parse_network(data: bytes | str, source: str) -> NetworkConfig:
    """One file's definition; NetworkError naming the file when it is not a usable one."""
    def bad(why: str) -> NetworkError:
        return NetworkError(f"invalid network config {source}: {why}")

    try:
        d = json.loads(data)
    except ValueError as e:
        raise bad(f"not JSON ({e})") from None
    if not isinstance(d, dict):
        raise bad("not a JSON object")
    if source.endswith(".conflist"):
        plugins = d.get("plugins")
        if not isinstance(plugins, list) or not plugins:
            raise bad("'plugins' must be a non-empty list")
    else:
        # A single plugin's config is a list of one (libcni ConfListFromConf).
        plugins = [{k: v for k, v in d.items() if k not in ("name", "cniVersion")}]
    name = d.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise bad(f"missing or invalid 'name' {name!r}")
    if name in RESERVED:
        raise bad(f"network name {name!r} is reserved")
    version = d.get("cniVersion", DEFAULT_CNI_VERSION)
    if not isinstance(version, str) or not re.match(r"^\d+\.\d+\.\d+$", version):
        raise bad(f"invalid 'cniVersion' {version!r}")
    for i, p in enumerate(plugins):
        if not isinstance(p, dict) or not isinstance(p.get("type"), str) or not p["type"]:
            raise bad(f"plugin {i} has no 'type'")
        if "ipam" in p and not (isinstance(p["ipam"], dict) and p["ipam"].get("type")):
            raise bad(f"plugin {p['type']!r} has an 'ipam' without a 'type'")
    return NetworkConfig(name, version, plugins, source, d)


def load_networks(net_d: Path) -> dict[str, NetworkConfig]:
    """Every network defined in `net_d` (missing dir: none), plus the built-in default."""
    nets: dict[str, NetworkConfig] = {}
    try:
        files = sorted(p for p in net_d.iterdir()
                       if p.suffix in (".conf", ".conflist", ".json") and p.is_file())
    except FileNotFoundError:
        files = []
    for f in files:
        try:
            data = f.read_bytes()
        except OSError as e:
            raise NetworkError(f"cannot read network config {f}: {e.strerror}") from None
        net = parse_network(data, str(f))
        if net.name in nets:
            raise NetworkError(f"network {net.name!r} is defined twice: in "
                               f"{nets[net.name].source} and {f}")
        nets[net.name] = net
    nets.setdefault(DEFAULT_NETWORK, default_network())
    return nets


def get_networks(net_d: Path, names: list[str]) -> list[NetworkConfig]:
    nets = load_networks(net_d)
    out = []
    for n in names:
        if n not in nets:
            known = ", ".join(sorted(nets))
            raise NetworkError(f"unknown network {n!r} (defined in {net_d}: {known})")
        out.append(nets[n])
    return out
