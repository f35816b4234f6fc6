"""Building a pod's App from an image config and the app's typed request (AppSpec): the image's
defaults merged with what was asked. Pure functions only."""

from __future__ import annotations

import posixpath
import re

from rktnetes.image.config import ImageConfig
from rktnetes.pod.manifest import App

from .spec import AppSpec, InvalidSpec, check_id, check_name, short

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


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


def assign_names(flags: list[AppSpec]) -> list[str]:
    """Names for each app: explicit --name values must be unique; defaults get -2, -3 ..."""
    explicit = [f.name for f in flags if f.name]
    for n in explicit:
        check_name(n, "app name")
        if explicit.count(n) > 1:
            raise InvalidSpec(f"app name {n!r} given more than once")
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


def resolve_exec(cfg: ImageConfig, command: list[str] | None, args: list[str] | None) -> list[str]:
    """Docker/Kubernetes semantics: a command replaces the entrypoint (and drops the image's
    Cmd); args replace the Cmd."""
    if command:
        argv = [*command, *(args or [])]
    else:
        argv = [*cfg.entrypoint, *(cfg.cmd if args is None else args)]
    if not argv or not argv[0]:
        raise InvalidSpec("the image has no command", hint="command")
    return argv


def build_env(cfg: ImageConfig, pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The image's Env, then the app's pairs in order; later wins. PATH always set."""
    env: dict[str, str] = {}
    for item in cfg.env:
        k, sep, v = item.partition("=")
        if sep and k:
            env[k] = v
    env.update(pairs)
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def build_app(name: str, image_id: str, image_name: str, cfg: ImageConfig, spec: AppSpec) -> App:
    """The App for one image."""
    user, group = image_user(cfg.user)
    workdir = spec.working_dir or cfg.working_dir or "/"
    if not posixpath.isabs(workdir):
        if spec.working_dir:
            raise InvalidSpec(f"working directory {short(workdir)!r}: must be an absolute path")
        raise InvalidSpec(f"image {short(image_name)}: its config's WorkingDir "
                          f"{short(workdir)!r} is not an absolute path")
    if not spec.user:
        for what, v in (("user", user), ("group", group)):
            if v:
                check_id(v, f"image {short(image_name)}: its {what}")
    app = App(
        name=name, image_id=image_id, image_name=image_name,
        exec=resolve_exec(cfg, spec.command, spec.args),
        env=build_env(cfg, spec.env),
        user=spec.user or user, group=spec.group or (group if not spec.user else ""),
        supplementary_gids=list(spec.supplementary_gids),
        working_dir=posixpath.normpath(workdir),
        readonly_rootfs=spec.readonly_rootfs,
        memory_limit=spec.resources.memory_limit,
        cpu_millis=spec.resources.cpu_millis,
        caps_retain=list(spec.caps_retain), caps_remove=list(spec.caps_remove),
        privileged=spec.privileged,
        mounts=list(spec.mounts),
        restart=spec.restart,
        stop_signal=spec.stop_signal or cfg.stop_signal or "SIGTERM",
        annotations=dict(spec.annotations),
        log_path=spec.log_path,
        cpu_shares=spec.resources.cpu_shares, cpu_quota=spec.resources.cpu_quota,
        cpu_period=spec.resources.cpu_period, cpuset_cpus=spec.resources.cpuset_cpus,
        cpuset_mems=spec.resources.cpuset_mems,
        seccomp=spec.seccomp,
        masked_paths=None if spec.masked_paths is None else list(spec.masked_paths),
        readonly_paths=None if spec.readonly_paths is None else list(spec.readonly_paths),
        pid_namespace=spec.pid_namespace,
        stdin=spec.stdin, stdin_once=spec.stdin and spec.stdin_once,
        origin=dict(spec.origin),
    )
    if spec.no_new_privileges is not None:
        app.no_new_privileges = spec.no_new_privileges
    return app
