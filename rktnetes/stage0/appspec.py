"""Building a pod's App from an image config and the user's app flags. Pure functions only."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from rktnetes.errors import UsageError
from rktnetes.image.config import ImageConfig
from rktnetes.pod.manifest import App, Mount

from .volumes import check_name

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# containerd's default capability set; --caps-retain replaces it, --caps-remove subtracts.
KNOWN_CAPS = frozenset("""
AUDIT_CONTROL AUDIT_READ AUDIT_WRITE BLOCK_SUSPEND BPF CHECKPOINT_RESTORE CHOWN DAC_OVERRIDE
DAC_READ_SEARCH FOWNER FSETID IPC_LOCK IPC_OWNER KILL LEASE LINUX_IMMUTABLE MAC_ADMIN MAC_OVERRIDE
MKNOD NET_ADMIN NET_BIND_SERVICE NET_BROADCAST NET_RAW PERFMON SETFCAP SETGID SETPCAP SETUID
SYSLOG SYS_ADMIN SYS_BOOT SYS_CHROOT SYS_MODULE SYS_NICE SYS_PACCT SYS_PTRACE SYS_RAWIO
SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG WAKE_ALARM""".split())

_BIN_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DEC_UNITS = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
              "E": 10**18, "": 1}
# compiled (and cached by `re`) at first use: only --memory and --set-env* need them
_QUANTITY = r"^([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)$"
_ENV_KEY = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
MAX_ID = 4294967294          # uid/gid: 32 bits, (uid_t)-1 excluded


@dataclass
class AppFlags:
    """What the user said about one app (flags after its image on the command line)."""

    image: str
    args: list[str] | None = None      # after `--`; None = not given (keep the image's Cmd)
    name: str = ""
    exec: str = ""
    env: list[str] = field(default_factory=list)          # K=V, in order given
    env_files: list[str] = field(default_factory=list)
    user: str = ""
    group: str = ""
    working_dir: str = ""
    readonly_rootfs: bool = False
    memory: str = ""
    cpu: str = ""
    caps_retain: list[str] = field(default_factory=list)
    caps_remove: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)        # raw `volume=..,target=..`


def parse_memory(s: str) -> int:
    """A Kubernetes quantity of bytes: `32M` (10^6), `32Mi` (2^20), `1G`, `1.5Gi`, `1048576`."""
    m = re.match(_QUANTITY, s.strip())
    unit = m.group(2) if m else ""
    mult = _BIN_UNITS.get(unit) or _DEC_UNITS.get(unit)
    if not m or not mult:
        raise UsageError(f"--memory {s!r}: expected a size like 64M, 512Mi or 1G")
    from decimal import Decimal  # here, not at the top: ~3 ms of every `rkt run` without --memory

    n = int(Decimal(m.group(1)) * mult)
    if n < 4096:
        raise UsageError(f"--memory {s!r}: too small (at least 4 KiB)")
    return n


def parse_cpu(s: str) -> int:
    """CPU as Kubernetes writes it, returned in millicores: `500m` -> 500, `1` -> 1000, `1.5`."""
    from decimal import Decimal, InvalidOperation  # lazily, as in parse_memory

    s = s.strip()
    try:
        millis = Decimal(s[:-1]) if s.endswith("m") else Decimal(s) * 1000
    except InvalidOperation:
        raise UsageError(f"--cpu {s!r}: expected CPUs like 500m, 1 or 1.5") from None
    if millis != millis.to_integral_value() or millis <= 0:
        raise UsageError(f"--cpu {s!r}: expected a positive number of millicores (at least 1m)")
    return int(millis)


def parse_env_pair(s: str, what: str = "--set-env") -> tuple[str, str]:
    k, sep, v = s.partition("=")
    if not sep or not re.match(_ENV_KEY, k):
        raise UsageError(f"{what} {s!r}: expected NAME=VALUE")
    return k, v


def parse_env_file(text: str, what: str) -> list[tuple[str, str]]:
    """Lines of NAME=VALUE; blank lines and `#` comments skipped."""
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append(parse_env_pair(line, f"{what} line {i}:"))
    return out


def read_env_files(paths: list[str]) -> list[tuple[str, list[tuple[str, str]]]]:
    """(path, pairs) of each --set-env-file, read and parsed; UsageError naming the file."""
    out = []
    for p in paths:
        try:
            with open(p) as fh:
                text = fh.read()
        except OSError as e:
            raise UsageError(f"--set-env-file {p}: {e.strerror or e}") from None
        out.append((p, parse_env_file(text, f"--set-env-file {p}")))
    return out


def parse_caps(values: list[str], flag: str) -> list[str]:
    """`CAP_NET_ADMIN,chown` -> ["CAP_NET_ADMIN", "CAP_CHOWN"], checked against the known set."""
    out: list[str] = []
    for v in values:
        for c in v.split(","):
            c = c.strip().upper()
            if not c:
                continue
            bare = c.removeprefix("CAP_")
            if bare not in KNOWN_CAPS:
                raise UsageError(f"{flag}: unknown capability {c!r}")
            if f"CAP_{bare}" not in out:
                out.append(f"CAP_{bare}")
    return out


def check_id_value(v: str, what: str) -> str:
    """A user or group as given: a number in 0..4294967294, or a name (looked up in the image
    later)."""
    if not _USER_RE.match(v):
        raise UsageError(f"{what} {short(v)!r}: expected a number or a name")
    if v.isdigit() and int(v) > MAX_ID:
        raise UsageError(f"{what} {short(v)}: out of range (ids are 0..{MAX_ID})")
    return v


def parse_signal(value: str, what: str = "--stop-signal") -> str:
    """A signal as users write it: SIGTERM, TERM, term, 15, SIGRTMIN+3. Returns the canonical
    form the monitor reads: the signal's name (SIGTERM) or, for real-time signals, its number."""
    from rktnetes.host.signals import canonical

    try:
        return canonical(value)
    except ValueError as e:
        shown = short(value) if value.strip().isdigit() else repr(short(value))
        raise UsageError(f"{what} {shown}: {e}") from None


def short(s: str, n: int = 80) -> str:
    """A value for an error message: at most `n` characters, then an ellipsis."""
    return s if len(s) <= n else s[:n] + "…"


def sanitize_name(raw: str) -> str:
    """An app name from anything: lower-case, [a-z0-9-], no leading/trailing dashes, short
    enough for a `-N` suffix to keep it a valid name (at most 63 characters)."""
    s = re.sub(r"[^a-z0-9]+", "-", raw.lower())[:56].strip("-")
    return s or "app"


def default_app_name(image: str) -> str:
    """The image's base name without registry, tag or digest: `docker.io/library/nginx:1` ->
    `nginx`, `oci:/tmp/layout:v1` -> `layout`, `builtin:busybox` -> `busybox`."""
    s = image.strip()
    if s.startswith("docker://"):
        s = s[len("docker://"):]
    transport, sep, rest = s.partition(":")
    if sep and transport in ("oci", "oci-archive", "docker-archive"):
        path = rest.partition(":")[0].rstrip("/")
        base = posixpath.basename(path)
        for ext in (".tar.gz", ".tgz", ".tar"):
            base = base.removesuffix(ext)
        return sanitize_name(base)
    if sep and transport == "builtin":
        return sanitize_name(rest)
    if re.match(r"^(sha256:)?[0-9a-f]{4,}$", s):
        return "app"  # an image ID says nothing about the app
    s = s.split("@", 1)[0]
    last = s.rsplit("/", 1)[-1]
    return sanitize_name(last.split(":", 1)[0])


def assign_names(flags: list[AppFlags]) -> list[str]:
    """Names for each app: explicit --name values must be unique; defaults get -2, -3 ..."""
    explicit = [f.name for f in flags if f.name]
    for n in explicit:
        check_name(n, "--name")
        if explicit.count(n) > 1:
            raise UsageError(f"app name {n!r} given more than once")
    taken = set(explicit)
    out = []
    for f in flags:
        if f.name:
            out.append(f.name)
            continue
        base = default_app_name(f.image)
        name, i = base, 2
        while name in taken:
            name, i = f"{base}-{i}", i + 1
        taken.add(name)
        out.append(name)
    return out


def image_user(cfg_user: str) -> tuple[str, str]:
    """The image's `User` ("uid", "name", "uid:gid") as (user, group)."""
    user, _, group = (cfg_user or "").partition(":")
    return user or "0", group


def resolve_exec(cfg: ImageConfig, exec_override: str, args: list[str] | None) -> list[str]:
    """Docker/Kubernetes semantics: --exec replaces the entrypoint (and drops the image's Cmd);
    arguments after `--` replace the Cmd."""
    if exec_override:
        argv = [exec_override, *(args or [])]
    else:
        argv = [*cfg.entrypoint, *(cfg.cmd if args is None else args)]
    if not argv or not argv[0]:
        raise UsageError("the image has no command: give one with --exec")
    return argv


def build_env(cfg: ImageConfig, env_files: list[tuple[str, list[tuple[str, str]]]],
              set_env: list[str]) -> dict[str, str]:
    """The image's Env, then env files in order, then --set-env; later wins. PATH always set."""
    env: dict[str, str] = {}
    for item in cfg.env:
        k, sep, v = item.partition("=")
        if sep and k:
            env[k] = v
    for _path, pairs in env_files:
        env.update(pairs)
    for s in set_env:
        k, v = parse_env_pair(s)
        env[k] = v
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def build_app(name: str, image_id: str, image_name: str, cfg: ImageConfig, f: AppFlags,
              env_files: list[tuple[str, list[tuple[str, str]]]]) -> App:
    """The App for one image; env files are already read (this stays pure)."""
    from .volumes import parse_mount

    user, group = image_user(cfg.user)
    workdir = f.working_dir or cfg.working_dir or "/"
    if not posixpath.isabs(workdir):
        if f.working_dir:
            raise UsageError(f"--working-dir {short(workdir)!r}: must be an absolute path")
        raise UsageError(f"image {short(image_name)}: its config's WorkingDir "
                         f"{short(workdir)!r} is not an absolute path")
    mounts: list[Mount] = [parse_mount(m) for m in f.mounts]
    targets = [m.target for m in mounts]
    for t in targets:
        if targets.count(t) > 1:
            raise UsageError(f"app {name}: two mounts on {t}")
    for what, v in (("--user", f.user), ("--group", f.group)):
        if v:
            check_id_value(v, what)
    if not f.user:
        for what, v in (("user", user), ("group", group)):
            if v:
                check_id_value(v, f"image {short(image_name)}: its {what}")
    return App(
        name=name, image_id=image_id, image_name=image_name,
        exec=resolve_exec(cfg, f.exec, f.args),
        env=build_env(cfg, env_files, f.env),
        user=f.user or user, group=f.group or (group if not f.user else ""),
        working_dir=posixpath.normpath(workdir),
        readonly_rootfs=f.readonly_rootfs,
        memory_limit=parse_memory(f.memory) if f.memory else 0,
        cpu_millis=parse_cpu(f.cpu) if f.cpu else 0,
        caps_retain=parse_caps(f.caps_retain, "--caps-retain"),
        caps_remove=parse_caps(f.caps_remove, "--caps-remove"),
        mounts=mounts,
        stop_signal=cfg.stop_signal or "SIGTERM",
    )
