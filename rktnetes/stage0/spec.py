"""Typed requests to stage0: what a front end asks for, in the pod manifest's own types.

The CLI fills these from its flags (rktnetes.cli), the CRI server from CRI messages; stage0
checks them (`check_app`, `check_pod`), resolves their images and makes the pod manifest
from them. No flag text crosses this line: sizes are bytes, CPUs millicores, networks and
volumes the manifest's dataclasses.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from rktnetes.errors import INVALID_ARGUMENT, UsageError
from rktnetes.net.flags import PortSpec
from rktnetes.pod.manifest import Mount, NetworkRequest, Volume

# containerd's default capability set; caps_retain replaces it, caps_remove subtracts.
KNOWN_CAPS = frozenset("""
AUDIT_CONTROL AUDIT_READ AUDIT_WRITE BLOCK_SUSPEND BPF CHECKPOINT_RESTORE CHOWN DAC_OVERRIDE
DAC_READ_SEARCH FOWNER FSETID IPC_LOCK IPC_OWNER KILL LEASE LINUX_IMMUTABLE MAC_ADMIN MAC_OVERRIDE
MKNOD NET_ADMIN NET_BIND_SERVICE NET_BROADCAST NET_RAW PERFMON SETFCAP SETGID SETPCAP SETUID
SYSLOG SYS_ADMIN SYS_BOOT SYS_CHROOT SYS_MODULE SYS_NICE SYS_PACCT SYS_PTRACE SYS_RAWIO
SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG WAKE_ALARM""".split())
MAX_ID = 4294967294          # uid/gid: 32 bits, (uid_t)-1 excluded
RESTART_POLICIES = ("never", "on-failure", "always")
_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_ENV_KEY = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
# rkt's volume and app names are ACNames: lower-case alphanumerics and dashes.
_NAME_RE = re.compile(r"^(?=.{1,63}$)[a-z0-9]+(?:[-.][a-z0-9]+)*$")  # a DNS label's length
_HOSTNAME = (r"^(?=.{1,253}$)[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
             r"(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$")


class InvalidSpec(UsageError):
    """A request stage0 cannot accept as it is (invalid argument)."""

    kind = INVALID_ARGUMENT


@dataclass
class Resources:
    memory_limit: int = 0          # bytes; 0: none
    cpu_millis: int = 0            # 1000 = one CPU; 0: none
    cpu_shares: int = 0            # the CRI's explicit CFS settings (0: from cpu_millis)
    cpu_quota: int = 0             # microseconds per period; 0 or -1: none
    cpu_period: int = 0            # microseconds
    cpuset_cpus: str = ""          # "0-1,3"
    cpuset_mems: str = ""


@dataclass
class AppSpec:
    """One app: its image and how to run it. None/empty means "the image's own"."""

    image: str                                    # the reference as asked for
    name: str = ""                                # "" : from the image's name, made unique
    command: list[str] | None = None              # replaces the image's Entrypoint (and Cmd)
    args: list[str] | None = None                 # replaces the image's Cmd
    env: list[tuple[str, str]] = field(default_factory=list)   # in order; a later one wins
    user: str = ""                                # a uid or a name in the image
    group: str = ""                               # a gid or a name; "": the user's group
    supplementary_gids: list[int] = field(default_factory=list)
    working_dir: str = ""
    readonly_rootfs: bool = False
    resources: Resources = field(default_factory=Resources)
    caps_retain: list[str] = field(default_factory=list)   # CAP_ names; replaces the default
    caps_remove: list[str] = field(default_factory=list)
    privileged: bool = False
    no_new_privileges: bool | None = None         # None: the default (set)
    mounts: list[Mount] = field(default_factory=list)
    restart: str = ""                             # "": the pod's policy
    stop_signal: str = ""                         # canonical (host.signals); "": the image's
    annotations: dict[str, str] = field(default_factory=dict)
    log_path: str = ""                            # a host path for its log ("": the pod's)
    seccomp: str = ""                             # "", "unconfined" or "localhost/PATH"
    masked_paths: list[str] | None = None         # None: the defaults ([]: none)
    readonly_paths: list[str] | None = None
    pid_namespace: str = ""                       # "": its own; "pod"; "host"
    stdin: bool = False           # a stdin pipe the monitor holds, for attached clients
    stdin_once: bool = False      # ... closed when the first attached client ends its input
    origin: dict = field(default_factory=dict)    # the front end's record, kept with the app


@dataclass
class PodSpec:
    """A pod: its apps and what they share."""

    apps: list[AppSpec]
    stage1: str = "default"
    hostname: str = ""                            # "": rkt-<uuid prefix>
    volumes: list[Volume] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    restart: str = "never"
    networks: list[NetworkRequest] = field(default_factory=list)   # []: the flavor's default
    #                                       (the `default` network, or the host's for fly)
    ports: list[PortSpec] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)  # servers, or ["host"] / ["none"]
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    hosts_entries: dict[str, list[str]] = field(default_factory=dict)
    interactive: bool = False                     # one app, attached to the caller's stdin
    tty: bool = False                             # ... which is a terminal
    sandbox: bool = False                         # a mutable pod: apps come and go
    host_uts: bool = False                        # the host's hostname (no UTS namespace)
    cgroup_parent: str = ""                       # a cgroup path the pod's goes under
    sysctls: dict[str, str] = field(default_factory=dict)
    origin: dict = field(default_factory=dict)    # the front end's record, kept with the pod


@dataclass
class PullOptions:
    """How images are found: the pull policy (new, update, never) and the transport."""

    policy: str = "new"
    insecure_http: bool = False
    insecure_tls: bool = False
    quiet: bool = True        # False: a progress line on stderr, if it is a terminal (the
    #                           CLI's choice; the library touches no stdio by default)
    credentials: object = None   # image.auth.Credentials for the registry, in place of
    #                              auth.json's (what a CRI PullImage brings)


# -- checks both front ends share: neutral words, `what` names the field for the user ---------

def normalize_caps(values: list[str], what: str = "capability") -> list[str]:
    """`CAP_NET_ADMIN`, `net_admin` -> "CAP_NET_ADMIN" (order kept, duplicates dropped)."""
    out: list[str] = []
    for c in values:
        c = c.strip().upper()
        if not c:
            continue
        bare = c.removeprefix("CAP_")
        if bare not in KNOWN_CAPS:
            raise InvalidSpec(f"{what}: unknown capability {c!r}")
        if f"CAP_{bare}" not in out:
            out.append(f"CAP_{bare}")
    return out


def check_id(v: str, what: str) -> str:
    """A user or group: a number in 0..4294967294, or a name (looked up in the image)."""
    if not _USER_RE.match(v):
        raise InvalidSpec(f"{what} {short(v)!r}: expected a number or a name")
    if v.isdigit() and int(v) > MAX_ID:
        raise InvalidSpec(f"{what} {short(v)}: out of range (ids are 0..{MAX_ID})")
    return v


def check_env_key(k: str, what: str) -> None:
    if not re.match(_ENV_KEY, k):
        raise InvalidSpec(f"{what}: invalid environment variable name {short(k)!r}")


def check_name(name: str, what: str) -> str:
    """An app or volume name."""
    if not _NAME_RE.match(name or ""):
        raise InvalidSpec(f"{what}: invalid name {name[:80]!r} (lower-case letters, digits, "
                          f"'-' and '.', at most 63)")
    return name


def check_hostname(h: str, what: str = "hostname") -> None:
    if not re.match(_HOSTNAME, h):
        raise InvalidSpec(f"{what} {short(h)!r}: not a valid host name")


def check_app(a: AppSpec) -> None:
    """What can be checked of one app before its image is known."""
    for k, _ in a.env:
        check_env_key(k, f"app {a.name or a.image}")
    for what, v in (("user", a.user), ("group", a.group)):
        if v:
            check_id(v, what)
    if a.working_dir and not posixpath.isabs(a.working_dir):
        raise InvalidSpec(f"working directory {short(a.working_dir)!r}: must be an absolute "
                          f"path")
    targets = [m.target for m in a.mounts]
    for t in targets:
        if not posixpath.isabs(t):
            raise InvalidSpec(f"app {a.name or a.image}: mount target {t!r} is not absolute")
        if targets.count(t) > 1:
            raise InvalidSpec(f"app {a.name or a.image}: two mounts on {t}")
    for m in a.mounts:
        if m.propagation not in ("", "rprivate", "rslave", "rshared"):
            raise InvalidSpec(f"mount on {m.target}: propagation {m.propagation!r}: use "
                              f"rprivate, rslave or rshared")
    if a.restart and a.restart not in RESTART_POLICIES:
        raise InvalidSpec(f"restart policy {a.restart!r}: use never, on-failure or always")
    for g in a.supplementary_gids:
        if not 0 <= g <= MAX_ID:
            raise InvalidSpec(f"supplementary gid {g}: out of range (ids are 0..{MAX_ID})")
    a.caps_retain = normalize_caps(a.caps_retain)
    a.caps_remove = normalize_caps(a.caps_remove)
    check_resources(a.resources)
    if a.seccomp and a.seccomp != "unconfined":
        path = a.seccomp.removeprefix("localhost/")
        if not a.seccomp.startswith("localhost/") or not posixpath.isabs(path):
            raise InvalidSpec(f"seccomp profile {short(a.seccomp)!r}: use unconfined or "
                              f"localhost/ABSOLUTE-PATH")
    if a.pid_namespace not in PID_NAMESPACES:
        raise InvalidSpec(f"pid namespace {a.pid_namespace!r}: use pod or host (or none)")
    for p in (a.masked_paths or []) + (a.readonly_paths or []):
        if not posixpath.isabs(p):
            raise InvalidSpec(f"masked or read-only path {short(p)!r}: must be absolute")
    if a.log_path and not posixpath.isabs(a.log_path):
        raise InvalidSpec(f"log path {short(a.log_path)!r}: must be absolute")


PID_NAMESPACES = ("", "pod", "host")
_CPUSET = re.compile(r"^$|^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$")
# namespaced sysctls (what the kernel keeps per IPC or network namespace), as runc allows
_SYSCTL_IPC = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
               "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def check_resources(r: Resources) -> None:
    for what, v in (("memory limit", r.memory_limit), ("cpu shares", r.cpu_shares),
                    ("cpu period", r.cpu_period)):
        if v < 0:
            raise InvalidSpec(f"{what} {v}: must not be negative")
    if r.cpu_quota < -1:
        raise InvalidSpec(f"cpu quota {r.cpu_quota}: must be -1 (none) or more")
    if r.cpu_period and not 1000 <= r.cpu_period <= 1_000_000:
        raise InvalidSpec(f"cpu period {r.cpu_period}: must be 1000..1000000 microseconds")
    if r.cpu_quota > 0 and r.cpu_quota < 1000:
        raise InvalidSpec(f"cpu quota {r.cpu_quota}: at least 1000 microseconds")
    for what, v in (("cpuset cpus", r.cpuset_cpus), ("cpuset mems", r.cpuset_mems)):
        if not _CPUSET.match(v):
            raise InvalidSpec(f"{what} {short(v)!r}: expected a list like 0-2,4")


def check_sysctls(sysctls: dict[str, str], host_network: bool) -> None:
    """Only namespaced sysctls, and the network's only with a network of the pod's own."""
    for k, v in sysctls.items():
        net = k.startswith("net.")
        if not (net or k in _SYSCTL_IPC or k.startswith("fs.mqueue.")):
            raise InvalidSpec(f"sysctl {short(k)!r}: not a namespaced sysctl (only net.*, "
                              f"kernel.shm*/msg*/sem and fs.mqueue.* can be set in a pod)")
        if net and host_network:
            raise InvalidSpec(f"sysctl {short(k)!r}: a host-network pod cannot set the "
                              f"host's network sysctls")
        if not re.match(r"^[a-z0-9_.\-/]+$", k) or "\n" in v or not v:
            raise InvalidSpec(f"sysctl {short(k)!r}={short(v)!r}: not a valid setting")


def short(s: str, n: int = 80) -> str:
    """A value for an error message: at most `n` characters, then an ellipsis."""
    return s if len(s) <= n else s[:n] + "…"
