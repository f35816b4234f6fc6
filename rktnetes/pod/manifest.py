"""The pod manifest: what a pod is made of, as stage0 decided it. Typed, JSON, versioned.

Written once when the pod is created (`pod.json`) and changed only under the pod's lock
(apps added or removed in a running pod). Everything else about a pod — per-app state,
resources, logs — lives in files beside it.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field, fields

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds of every `rkt` start
    from typing import Any

SCHEMA_VERSION = 1


@dataclass
class Mount:
    """A volume mounted into one app."""

    volume: str
    target: str                    # absolute path inside the app's rootfs
    readonly: bool | None = None   # None: the volume's own setting
    propagation: str = ""          # "" (rprivate), "rslave" or "rshared"


@dataclass
class Volume:
    """A pod volume: a host directory, or an empty one the pod owns."""

    name: str
    kind: str                      # "host" | "empty"
    source: str = ""               # host path for kind=host
    readonly: bool = False
    mode: str = "0755"             # for kind=empty
    uid: int = 0
    gid: int = 0


@dataclass
class App:
    """One app of the pod: its image, command, environment, identity and limits."""

    name: str
    image_id: str                  # config digest of the image in the store
    image_name: str                # what the user asked for, for display
    exec: list[str]                # argv; resolved from the image when the user gave none
    env: dict[str, str] = field(default_factory=dict)
    user: str = "0"                # uid or name, resolved inside the image at start
    group: str = ""                # gid or name; "" means the user's primary group
    supplementary_gids: list[int] = field(default_factory=list)
    working_dir: str = "/"
    readonly_rootfs: bool = False
    memory_limit: int = 0          # bytes; 0 = none
    cpu_millis: int = 0            # 1000 = one CPU; 0 = none
    caps_retain: list[str] = field(default_factory=list)   # replaces the default set if given
    caps_remove: list[str] = field(default_factory=list)
    no_new_privileges: bool = True
    privileged: bool = False
    mounts: list[Mount] = field(default_factory=list)
    interactive: bool = False
    tty: bool = False
    restart: str = ""              # "" = the pod's policy; "never" | "on-failure" | "always"
    stop_signal: str = "SIGTERM"
    annotations: dict[str, str] = field(default_factory=dict)
    # What the CRI sets beyond the CLI's flags (zero values: the defaults)
    log_path: str = ""             # a host path for its CRI log; "": apps/<name>/log
    cpu_shares: int = 0            # explicit CFS settings; 0: derived from cpu_millis
    cpu_quota: int = 0
    cpu_period: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    seccomp: str = ""              # "": the default profile; "unconfined"; "localhost/PATH"
    masked_paths: list[str] | None = None     # None: the defaults
    readonly_paths: list[str] | None = None   # None: the defaults
    pid_namespace: str = ""        # "": its own; "pod": the pod's (its infra's); "host"
    stdin: bool = False            # its stdin is a pipe the monitor holds (attach)
    stdin_once: bool = False       # ... closed once the first attached client's input ends
    origin: dict[str, Any] = field(default_factory=dict)   # the front end's own record


@dataclass
class PortForward:
    """A host port forwarded to a port of the pod."""

    name: str                      # "80/tcp" or an exposed port's name
    container_port: int
    protocol: str                  # "tcp" | "udp"
    host_port: int
    host_ip: str = ""


@dataclass
class NetworkRequest:
    """A network the pod joins, as `--net` named it."""

    name: str                      # "default", "host", "none" or a user network
    args: dict[str, str] = field(default_factory=dict)   # CNI_ARGS


@dataclass
class PodManifest:
    """Everything stage0 decided about a pod (`pod.json`)."""

    uuid: str
    apps: list[App]
    volumes: list[Volume] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    stage1: str = "default"        # "default" | "fly" | "kvm"
    restart: str = "never"         # pod-wide policy: "never" | "on-failure" | "always"
    networks: list[NetworkRequest] = field(default_factory=lambda: [NetworkRequest("none")])
    ports: list[PortForward] = field(default_factory=list)
    hostname: str = ""
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    hosts_entries: dict[str, list[str]] = field(default_factory=dict)  # ip -> names
    sandbox: bool = False          # `rkt app sandbox`: lives until stopped, apps come and go
    host_uts: bool = False         # the host's UTS namespace and name (a CRI host-network pod)
    cgroup_parent: str = ""        # the pod's cgroup goes under this one ("": /rktnetes)
    sysctls: dict[str, str] = field(default_factory=dict)   # namespaced ones, set in the pod
    origin: dict[str, Any] = field(default_factory=dict)    # the front end's own record
    created_at: float = 0.0
    schema: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "PodManifest":
        d = _known(cls, d)
        d["apps"] = [App(**{**_known(App, a), "mounts": [Mount(**_known(Mount, m))
                                                         for m in a.get("mounts", [])]})
                     for a in d.get("apps", [])]
        d["volumes"] = [Volume(**_known(Volume, v)) for v in d.get("volumes", [])]
        d["networks"] = [NetworkRequest(**_known(NetworkRequest, n)) for n in d.get("networks", [])]
        d["ports"] = [PortForward(**_known(PortForward, p)) for p in d.get("ports", [])]
        return cls(**d)

    def app(self, name: str) -> App | None:
        return next((a for a in self.apps if a.name == name), None)

    def volume(self, name: str) -> Volume | None:
        return next((v for v in self.volumes if v.name == name), None)

    @property
    def host_network(self) -> bool:
        """The pod asked for the host's network (a flavor may also have no other)."""
        return any(n.name == "host" for n in self.networks)


def _known(cls, d: dict) -> dict:
    """Drop keys a newer writer added, so an older reader still loads the manifest."""
    names = field_names(cls)
    return {k: v for k, v in d.items() if k in names}


@functools.cache
def field_names(cls) -> frozenset[str]:
    """A dataclass's field names, computed once per class (readers load thousands of pods)."""
    return frozenset(f.name for f in fields(cls))
