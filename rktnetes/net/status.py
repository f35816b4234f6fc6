"""What a pod's networking is, once set up: saved as `networks.json` in the pod directory
(read by `rkt status`, `rkt list --full`, the API and the stage1)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from rktnetes.fsutil import atomic_write_json, read_json

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds on every pod's start
    from typing import Any


STATUS_FILE = "networks.json"
SCHEMA_VERSION = 1

HOST, NONE, CNI = "host", "none", "cni"


@dataclass
class DNS:
    """DNS settings a plugin reports (CNI result `dns`)."""
    nameservers: list[str] = field(default_factory=list)
    domain: str = ""
    search: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: dict | None) -> "DNS":
        d = d or {}
        return cls(list(d.get("nameservers") or []), d.get("domain") or "",
                   list(d.get("search") or []), list(d.get("options") or []))


@dataclass
class Attachment:
    """The pod's attachment to one CNI network: interface and addresses."""
    network: str
    ifname: str
    ips: list[str] = field(default_factory=list)      # CIDRs on the pod's interface
    gateway: str = ""
    mac: str = ""
    dns: DNS = field(default_factory=DNS)

    @classmethod
    def from_result(cls, network: str, ifname: str, res) -> "Attachment":
        """From a CNI ADD's result (net.cni.CNIResult: this module stays below cni)."""
        idx = next((n for n, i in enumerate(res.interfaces)
                    if i.name == ifname and i.sandbox), None)
        # IPs tied to our interface; results without interface indices give all of theirs
        ips = [ip for ip in res.ips if ip.interface is None or idx is None or ip.interface == idx]
        iface = res.container_interface(ifname)
        return cls(network, ifname, [ip.address for ip in ips],
                   next((ip.gateway for ip in ips if ip.gateway), ""),
                   iface.mac if iface else "", res.dns)

    @property
    def ip(self) -> str:
        return self.ips[0].split("/", 1)[0] if self.ips else ""

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Attachment":
        return cls(d["network"], d["ifname"], list(d.get("ips", [])), d.get("gateway", ""),
                   d.get("mac", ""), DNS.from_json(d.get("dns")))


@dataclass
class NetworkStatus:
    """The pod's networking: its mode, netns and attachments."""
    mode: str                      # "host" | "none" | "cni"
    netns: str = ""                # the namespace's path; "" for host (join nothing)
    networks: list[Attachment] = field(default_factory=list)
    schema: int = SCHEMA_VERSION

    @property
    def ip(self) -> str:
        """The pod's first IPv4 address ("" when it has none): what /etc/hosts names."""
        ips = [a.ip for a in self.networks if a.ip]
        return next((i for i in ips if ":" not in i), ips[0] if ips else "")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "NetworkStatus":
        return cls(d.get("mode", NONE), d.get("netns", ""),
                   [Attachment.from_json(a) for a in d.get("networks", [])],
                   d.get("schema", SCHEMA_VERSION))


def status_entries(st: NetworkStatus) -> list[dict[str, Any]]:
    """One flat dict per attachment, for state.json / `rkt status` / `rkt list --full`."""
    return [{"name": a.network, "ifname": a.ifname, "ip": a.ip, "ips": a.ips,
             "gateway": a.gateway, "mac": a.mac} for a in st.networks]


def save_status(pod_dir: Path, st: NetworkStatus) -> None:
    # a summary, written anew at each start: not fsync'd (what undoing the networking needs,
    # the journal and the attachments' saved configurations, is)
    atomic_write_json(pod_dir / STATUS_FILE, st.to_json(), durable=False)


def load_status(pod_dir: Path) -> NetworkStatus | None:
    """The saved status, or None before networking was set up (or for an older pod, or one
    a machine crash left torn)."""
    try:
        return NetworkStatus.from_json(read_json(pod_dir / STATUS_FILE))
    except (FileNotFoundError, ValueError):
        return None
