"""Image references as users type them, parsed into one typed value.

Transports:
  docker://[REGISTRY/]NAME[:TAG|@DIGEST]   a registry image (also written bare, without `docker://`)
  oci:DIR[:REF]                            an OCI image layout directory
  oci-archive:PATH[:REF]                   a tar of an OCI image layout
  docker-archive:PATH[:REF]                `docker save` output
  builtin:busybox                          the built-in default image, built locally

Bare names follow Docker Hub's defaults: registry `docker.io`, `library/` for one-component
names, tag `latest`. A first component with a `.` or `:`, or `localhost`, is a registry.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace

from rktnetes.errors import ReferenceError_

DOCKER_HUB = "docker.io"
DEFAULT_TAG = "latest"
BUILTINS = ("busybox",)
TRANSPORTS = ("docker", "oci", "oci-archive", "docker-archive", "builtin")

# The grammar of github.com/distribution/reference, kept as close as Python's re allows.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
# Compiled (and cached by `re`) at first use: builtin:, oci: and the like never need them.
_COMPONENT_RE = rf"^{_COMPONENT}$"
_DOMAIN_RE = rf"^{_DOMAIN}$"
_TAG_RE = r"^[\w][\w.-]{0,127}$"
_DIGEST_RE = r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$"
_MAX_SHOWN = 80


def _short(s: str) -> str:
    """A user's value for an error message: at most 80 characters, then an ellipsis."""
    return s if len(s) <= _MAX_SHOWN else s[:_MAX_SHOWN] + "\u2026"


@dataclass(frozen=True)
class Reference:
    """An image reference, parsed; which fields are set depends on the transport."""

    transport: str                 # one of TRANSPORTS
    registry: str = ""             # docker: "docker.io", "127.0.0.1:5000"
    repository: str = ""           # docker: "library/busybox"
    tag: str = ""                  # docker: "latest" unless a digest was given alone
    digest: str = ""               # docker: "sha256:..."
    path: str = ""                 # oci / oci-archive / docker-archive: absolute path
    ref: str = ""                  # oci / oci-archive / docker-archive: the optional :REF
    builtin: str = ""              # builtin: the image's name ("busybox")
    original: str = ""             # the string as the user typed it

    @property
    def is_registry(self) -> bool:
        return self.transport == "docker"

    @property
    def name(self) -> str:
        """`registry/repository` for registry images, without tag or digest."""
        if self.is_registry:
            return f"{self.registry}/{self.repository}"
        return self.normalized()

    def normalized(self) -> str:
        """The canonical string an image record carries: `docker.io/library/busybox:latest`,
        `127.0.0.1:5000/x/y@sha256:...`, `oci:/abs/dir:ref`, `builtin:busybox`."""
        if self.is_registry:
            if self.digest:
                return f"{self.name}@{self.digest}"
            return f"{self.name}:{self.tag or DEFAULT_TAG}"
        if self.transport == "builtin":
            return f"builtin:{self.builtin}"
        return f"{self.transport}:{self.path}" + (f":{self.ref}" if self.ref else "")

    def with_tag(self, tag: str) -> "Reference":
        return replace(self, tag=tag, digest="")

    def with_digest(self, digest: str) -> "Reference":
        return replace(self, digest=digest)

    def with_location(self, registry: str, repository: str) -> "Reference":
        """The same tag/digest at another place (a mirror, or a registries.conf `location`)."""
        return replace(self, registry=registry, repository=repository)

    @property
    def manifest_ref(self) -> str:
        """What goes after `/manifests/` in a registry URL."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        return self.normalized()


def parse(s: str) -> Reference:
    """Parse any reference a user may type; a ReferenceError_ with one line if it is not one."""
    if not isinstance(s, str) or not s.strip():
        raise ReferenceError_("empty image reference")
    s = s.strip()
    if s.startswith("docker://"):
        return _parse_docker(s[len("docker://"):], s)
    transport, sep, rest = s.partition(":")
    if sep and transport in ("oci", "oci-archive", "docker-archive"):
        return _parse_path_transport(transport, rest, s)
    if sep and transport == "builtin":
        if rest not in BUILTINS:
            raise ReferenceError_(f"unknown built-in image {_short(rest)!r} (known: {', '.join(BUILTINS)})")
        return Reference("builtin", builtin=rest, original=s)
    if sep and "/" not in transport and not rest[:1].isdigit() and re.match(r"^[a-z][a-z0-9+.-]*$", transport) \
            and (rest.startswith("//") or transport in _KNOWN_FOREIGN):
        # `http://...`, `dir:...`, `containers-storage:...`: a transport we do not speak.
        raise ReferenceError_(f"unsupported transport {_short(transport)!r} in {_short(s)!r} "
                              f"(use docker://, oci:, oci-archive:, docker-archive: or builtin:)")
    if s.startswith(("/", "./", "../", "~")):  # no registry reference starts so
        p = _short(s)
        raise ReferenceError_(f"{p!r} is a path, not an image reference: name its format, "
                              f"oci:{p} (an OCI layout directory), oci-archive:{p} or "
                              f"docker-archive:{p} (a tar)")
    return _parse_docker(s, s)


# Transports other tools know; named so `dir:/x` is not mistaken for image `dir` with tag `/x`.
_KNOWN_FOREIGN = ("dir", "containers-storage", "docker-daemon", "ostree", "sif", "tarball")


def _parse_path_transport(transport: str, rest: str, original: str) -> Reference:
    # Like containers/image: the path ends at the first colon; what follows is the REF.
    path, _, ref = rest.partition(":")
    if not path:
        raise ReferenceError_(f"{transport}: reference {_short(original)!r} has no path")
    if transport == "oci" and ref and not re.match(r"^[A-Za-z0-9._/:@+-]+$", ref):
        raise ReferenceError_(f"invalid image name {_short(ref)!r} in {_short(original)!r}")
    return Reference(transport, path=os.path.abspath(path), ref=ref, original=original)


def _parse_docker(s: str, original: str) -> Reference:
    def bad(why: str) -> ReferenceError_:
        return ReferenceError_(f"invalid image reference {_short(original)!r}: {why}")

    if not s:
        raise bad("no image name")
    name, digest = s, ""
    if "@" in s:
        name, _, digest = s.partition("@")
        if not re.match(_DIGEST_RE, digest):
            raise bad(f"bad digest {_short(digest)!r} (expected sha256: and 64 hex digits)")
    tag = ""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:  # a colon in the last path component is the tag (one earlier is a port)
        name, _, tag = name.rpartition(":")
        if not re.match(_TAG_RE, tag):
            raise bad(f"bad tag {_short(tag)!r}")
    if not name:
        raise bad("no image name")
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"
                           or parts[0].startswith("[")):
        registry, repo_parts = parts[0], parts[1:]
        if not re.match(_DOMAIN_RE, registry):
            raise bad(f"bad registry host {_short(registry)!r}")
    else:
        registry, repo_parts = DOCKER_HUB, parts
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    for comp in repo_parts:
        if not comp:
            raise bad("empty path component")
        if not re.match(_COMPONENT_RE, comp):
            if comp.lower() != comp and re.match(_COMPONENT_RE, comp.lower()):
                raise bad("repository names must be lowercase")
            raise bad(f"bad name component {_short(comp)!r}")
    if registry == DOCKER_HUB and len(repo_parts) == 1:
        repo_parts = ["library", *repo_parts]
    repository = "/".join(repo_parts)
    if len(registry) + 1 + len(repository) > 255:
        raise bad("name longer than 255 characters")
    if not tag and not digest:
        tag = DEFAULT_TAG
    return Reference("docker", registry=registry, repository=repository, tag=tag,
                     digest=digest, original=original)


def candidates(s: str) -> list[str]:
    """The normalized names a user's IMAGE argument may mean, for ImageStore.find.

    `busybox` may mean `docker.io/library/busybox:latest`; a string that is no reference
    (an ID prefix, say) means none, and the store falls back to matching IDs.
    """
    try:
        ref = parse(s)
    except ReferenceError_:
        return []
    return [ref.normalized()]


def local_candidates(s: str) -> list[str]:
    """What a user's IMAGE argument may mean in the store, in the order podman resolves a
    short name locally: `localhost/NAME:TAG` (what an archive's bare ref name is stored as)
    first, then the `candidates`."""
    short = short_name(s)
    return [f"localhost/{short}", *candidates(s)] if short else candidates(s)


def short_name(s: str) -> str:
    """`NAME[:TAG]` (tag `latest` added) when `s` is a short registry name, one that names no
    registry (`myimg`, `team/app:1`), else ""."""
    s = s.strip()
    if s.startswith("docker://") or "@" in s:
        return ""
    try:
        ref = parse(s)
    except ReferenceError_:
        return ""
    if ref.transport != "docker" or s.split("/", 1)[0] == ref.registry:
        return ""
    repo = ref.repository.removeprefix("library/") if "/" not in s.split(":")[0] \
        else ref.repository
    return f"{repo}:{ref.tag or DEFAULT_TAG}"
