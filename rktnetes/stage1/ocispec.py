"""An app's OCI runtime spec (config.json), as a pure function of the app, its image and the pod.

Defaults follow containerd's: its capability set, no_new_privs, masked and read-only /proc and
/sys paths, the default seccomp profile, /dev with the runtime's standard devices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rktnetes.errors import Stage1Error
from rktnetes.image.config import ImageConfig
from rktnetes.pod.manifest import App

from . import seccomp
from .users import Identity

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]

ALL_CAPS = DEFAULT_CAPS + [
    "CAP_DAC_READ_SEARCH", "CAP_LINUX_IMMUTABLE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_LEASE", "CAP_AUDIT_CONTROL", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]

MASKED_PATHS = ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/sys/devices/virtual/powercap"]
READONLY_PATHS = ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                  "/proc/sysrq-trigger"]

CPU_PERIOD = 100_000


@dataclass(frozen=True)
class BindMount:
    """A host path bind-mounted into an app."""
    target: str
    source: str
    readonly: bool = False
    propagation: str = "rprivate"     # or rslave, rshared


@dataclass(frozen=True)
class SpecInputs:
    """What the stage1 worked out on the host for one app."""

    rootfs: str
    identity: Identity
    hostname: str
    namespace_paths: dict[str, str] = field(default_factory=dict)  # "network" -> /proc/N/ns/net
    binds: list[BindMount] = field(default_factory=list)           # /etc files, volumes, /dev/shm
    cgroups_path: str = ""
    arch: str = "amd64"
    seccomp_profile: dict | None = None    # a localhost profile's contents, read on the host
    sysctls: dict[str, str] = field(default_factory=dict)


def normalize_cap(name: str) -> str:
    n = name.strip().upper()
    n = n if n.startswith("CAP_") else "CAP_" + n
    if n not in ALL_CAPS:
        raise Stage1Error(f"unknown capability {name!r}")
    return n


# capability numbers (linux/capability.h), to read a CapBnd mask
CAP_NUMBERS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
               "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
               "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
               "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
               "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN",
               "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
               "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
               "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
               "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
               "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]


def host_capabilities() -> list[str]:
    """The capabilities we can grant: our own bounding set (a privileged app gets what the
    host has — a kernel or an enclosing container may lack some, and the runtime fails on
    those). Every known one if /proc cannot tell."""
    try:
        with open("/proc/self/status") as f:
            mask = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    except (OSError, StopIteration, ValueError):
        return list(ALL_CAPS)
    have = {c for i, c in enumerate(CAP_NUMBERS) if mask >> i & 1}
    return [c for c in ALL_CAPS if c in have]


def capabilities(app: App) -> list[str]:
    if app.privileged:
        return host_capabilities()
    caps = [normalize_cap(c) for c in app.caps_retain] if app.caps_retain else list(DEFAULT_CAPS)
    drop = {normalize_cap(c) for c in app.caps_remove}
    return [c for c in caps if c not in drop]


def process_args(app: App, image: ImageConfig) -> list[str]:
    args = list(app.exec) or [*image.entrypoint, *image.cmd]
    if not args:
        raise Stage1Error(f"app {app.name}: no command to run (the image has none; use --exec)")
    return args


def process_env(app: App, image: ImageConfig, identity: Identity, hostname: str) -> list[str]:
    """Image env, then the app's; PATH, HOSTNAME and HOME filled in when missing."""
    env: dict[str, str] = {}
    for kv in image.env:
        k, _, v = kv.partition("=")
        env[k] = v
    env.update(app.env)
    env.setdefault("PATH", DEFAULT_PATH)
    env["HOSTNAME"] = hostname
    env.setdefault("HOME", identity.home or "/")
    if app.tty:
        env.setdefault("TERM", "xterm")
    return [f"{k}={v}" for k, v in env.items()]


def resources(app: App) -> dict:
    res: dict = {"devices": [{"allow": False, "access": "rwm"}]}  # the runtime adds its defaults
    res.update(limits(app))
    return res


def limits(app: App) -> dict:
    """The app's memory and CPU settings as OCI `linux.resources` (also what `runc update`
    takes). Explicit CFS values (the CRI's) win over cpu_millis."""
    res: dict = {}
    if app.memory_limit:
        res["memory"] = {"limit": app.memory_limit}
    cpu: dict = {}
    if app.cpu_millis:
        cpu = {"quota": app.cpu_millis * CPU_PERIOD // 1000, "period": CPU_PERIOD,
               "shares": max(2, app.cpu_millis * 1024 // 1000)}
    if app.cpu_shares:
        cpu["shares"] = max(2, app.cpu_shares)
    if app.cpu_quota > 0:
        cpu["quota"] = app.cpu_quota
        cpu.setdefault("period", CPU_PERIOD)
    if app.cpu_period:
        cpu["period"] = app.cpu_period
    if app.cpuset_cpus:
        cpu["cpus"] = app.cpuset_cpus
    if app.cpuset_mems:
        cpu["mems"] = app.cpuset_mems
    if cpu:
        res["cpu"] = cpu
    return res


def mounts(binds: list[BindMount]) -> list[dict]:
    out = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        # read-only through readonlyPaths (a read-only bind), not a read-only mount: the
        # apps of a pod share one sysfs superblock (it is per network namespace), and a
        # read-only mount would make it read-only for a privileged app as well
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]
    if not any(b.target == "/dev/shm" for b in binds):
        out.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                    "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]})
    for b in binds:
        opts = ["rbind", b.propagation] + (["ro"] if b.readonly else [])
        out.append({"destination": b.target, "type": "bind", "source": b.source, "options": opts})
    return out


def build_spec(app: App, image: ImageConfig, inp: SpecInputs) -> dict:
    """The whole config.json as a dict. Pure: no file or system access."""
    caps = capabilities(app)
    ident = inp.identity
    ns = [{"type": "mount"}]
    for kind in ("pid", "network", "ipc", "uts"):
        if kind == "pid" and app.pid_namespace == "host":
            continue   # the host's: no namespace of its own
        entry = {"type": kind}
        if kind in inp.namespace_paths and (kind != "pid" or app.pid_namespace == "pod"):
            entry["path"] = inp.namespace_paths[kind]
        ns.append(entry)
    linux: dict = {
        "namespaces": ns,
        "resources": resources(app),
    }
    if inp.cgroups_path:
        linux["cgroupsPath"] = inp.cgroups_path
    if inp.sysctls:
        linux["sysctl"] = dict(inp.sysctls)
    if not app.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS if app.masked_paths is None
                                    else app.masked_paths)
        linux["readonlyPaths"] = ["/sys"] + list(READONLY_PATHS if app.readonly_paths is None
                                                 else app.readonly_paths)
        if app.seccomp.startswith("localhost/"):
            if inp.seccomp_profile is None:
                raise Stage1Error(f"app {app.name}: seccomp profile {app.seccomp} not loaded")
            linux["seccomp"] = inp.seccomp_profile
        elif app.seccomp != "unconfined":
            linux["seccomp"] = seccomp.default_profile(caps, inp.arch)
    spec = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": bool(app.tty),
            "user": {"uid": ident.uid, "gid": ident.gid,
                     **({"additionalGids": list(ident.additional_gids)}
                        if ident.additional_gids else {})},
            "args": process_args(app, image),
            "env": process_env(app, image, ident, inp.hostname),
            "cwd": app.working_dir or image.working_dir or "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": bool(app.no_new_privileges) and not app.privileged,
        },
        "root": {"path": inp.rootfs, "readonly": bool(app.readonly_rootfs)},
        "mounts": mounts(inp.binds),
        "linux": linux,
    }
    if app.pid_namespace == "pod" and "pid" not in inp.namespace_paths:
        raise Stage1Error(f"app {app.name}: this pod has no PID namespace to share")
    if "uts" not in inp.namespace_paths:
        spec["hostname"] = inp.hostname  # only a private UTS namespace may be given a name
    if app.privileged:
        linux["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
        # as the CRI defines privileged: the host's devices, a writable cgroupfs
        for m in spec["mounts"]:
            if m["destination"] == "/dev":
                m.update(type="bind", source="/dev", options=["rbind", "rprivate"])
            elif m["destination"] == "/sys/fs/cgroup":
                m["options"] = [o for o in m["options"] if o != "ro"]
    return spec
