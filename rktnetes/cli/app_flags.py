"""An app's flags (`rkt run`'s after each image, `rkt app add`'s) as the user typed them, and
their turning into the typed request stage0 takes (rktnetes.stage0.spec.AppSpec). All flag
syntax lives here; errors name the flag."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rktnetes.errors import UsageError
from rktnetes.pod.manifest import Volume
from rktnetes.stage0.spec import (MAX_ID, AppSpec, InvalidSpec, Resources, check_id,
                                  normalize_caps, short)

_BIN_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DEC_UNITS = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
              "E": 10**18, "": 1}
# compiled (and cached by `re`) at first use: only --memory and --set-env* need them
_QUANTITY = r"^([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)$"
_ENV_KEY = r"^[A-Za-z_][A-Za-z0-9_.-]*$"


@dataclass
class AppFlags:
    """What the user said about one app (the flags after its image on the command line)."""

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
    # `rkt app add` only
    mnt_volumes: list[str] = field(default_factory=list)   # NAME,kind=...,target=PATH
    restart: str = ""
    supplementary_gids: list[str] = field(default_factory=list)
    no_new_privileges: bool | None = None
    privileged: bool = False
    stop_signal: str = ""
    stdin: bool = False
    stdin_once: bool = False
    annotations: list[str] = field(default_factory=list)
    pull_policy: str = "new"
    insecure_options: list[str] = field(default_factory=list)


# -- values -----------------------------------------------------------------------------------

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
    return normalize_caps([c for v in values for c in v.split(",")], flag)


def check_id_value(v: str, what: str) -> str:
    """A user or group as given: a number in 0..4294967294, or a name."""
    return check_id(v, what)


def parse_signal(value: str, what: str = "--stop-signal") -> str:
    """A signal as users write it: SIGTERM, TERM, term, 15, SIGRTMIN+3. Returns the canonical
    form the monitor reads: the signal's name (SIGTERM) or, for real-time signals, its number."""
    from rktnetes.host.signals import canonical

    try:
        return canonical(value)
    except ValueError as e:
        shown = short(value) if value.strip().isdigit() else repr(short(value))
        raise UsageError(f"{what} {shown}: {e}") from None


def _split(values: list[str]) -> list[str]:
    return [x.strip() for v in values for x in v.split(",") if x.strip()]


def parse_gids(values: list[str]) -> list[int]:
    out = []
    for g in _split(values):
        if not g.isdigit() or int(g) > MAX_ID:
            raise UsageError(f"--supplementary-gids {short(g)!r}: expected numbers in "
                             f"0..{MAX_ID} (comma list)")
        if int(g) not in out:
            out.append(int(g))
    return out


def parse_kv_list(values: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        k, sep, val = v.partition("=")
        if not sep or not k.strip():
            raise UsageError(f"{flag} {v!r}: expected KEY=VALUE")
        out[k.strip()] = val
    return out


# -- the typed request --------------------------------------------------------------------------

def to_spec(f: AppFlags, env_files: list[tuple[str, list[tuple[str, str]]]] | None = None
            ) -> tuple[AppSpec, list[Volume]]:
    """The AppSpec the flags ask for, and the pod volumes its --mnt-volume flags add. Every
    check the flags allow without the image is made here: UsageError naming the flag."""
    from rktnetes.stage0.spec import check_name

    from .volume_flags import parse_mnt_volume, parse_mount

    if f.name:
        check_name(f.name, "--name")
    env: list[tuple[str, str]] = []
    for _path, pairs in env_files if env_files is not None else read_env_files(f.env_files):
        env += pairs
    env += [parse_env_pair(s) for s in f.env]
    if f.working_dir and not f.working_dir.startswith("/"):
        raise UsageError(f"--working-dir {short(f.working_dir)!r}: must be an absolute path")
    mounts = [parse_mount(m) for m in f.mounts]
    mnt = [parse_mnt_volume(v) for v in f.mnt_volumes]
    mounts += [m for _, m in mnt]
    targets = [m.target for m in mounts]
    for t in targets:
        if targets.count(t) > 1:
            raise UsageError(f"app {f.name or f.image}: two mounts on {t}")
    for what, v in (("--user", f.user), ("--group", f.group)):
        if v:
            check_id_value(v, what)
    if f.restart and f.restart not in ("never", "on-failure", "always"):
        raise UsageError(f"--restart={f.restart}: use never, on-failure or always")
    spec = AppSpec(
        image=f.image, name=f.name, command=[f.exec] if f.exec else None, args=f.args,
        env=env, user=f.user, group=f.group, supplementary_gids=parse_gids(f.supplementary_gids),
        working_dir=f.working_dir, readonly_rootfs=f.readonly_rootfs,
        resources=Resources(parse_memory(f.memory) if f.memory else 0,
                            parse_cpu(f.cpu) if f.cpu else 0),
        caps_retain=parse_caps(f.caps_retain, "--caps-retain"),
        caps_remove=parse_caps(f.caps_remove, "--caps-remove"),
        privileged=f.privileged, no_new_privileges=f.no_new_privileges, mounts=mounts,
        restart=f.restart, stop_signal=parse_signal(f.stop_signal) if f.stop_signal else "",
        annotations=parse_kv_list(f.annotations, "--annotation"),
        stdin=f.stdin or f.stdin_once, stdin_once=f.stdin_once)
    return spec, [v for v, _ in mnt]


__all__ = ["AppFlags", "InvalidSpec", "to_spec", "parse_memory", "parse_cpu", "parse_caps",
           "parse_env_pair", "parse_env_file", "read_env_files", "parse_signal", "parse_gids",
           "parse_kv_list", "check_id_value"]
