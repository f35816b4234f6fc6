"""containers-registries.conf(5), version 2: where to pull from, and what is allowed.

The same file podman, CRI-O and skopeo read, so a node set up for them works for us:

    [[registry]]
    prefix = "registry.k8s.io"          # defaults to `location`
    location = "registry.k8s.io"
    insecure = false                    # true: plain HTTP and unverified TLS allowed
    blocked = false                     # true: refuse to pull from it
    [[registry.mirror]]                 # tried in order, before `location`
    location = "127.0.0.1:5000"
    insecure = true
    pull-from-mirror = "all"            # or "digest-only", "tag-only"

The longest matching prefix wins; a prefix matches at a `/`, `:` or `@` boundary, and
`*.example.com` matches any subdomain. The repository path after the prefix is kept.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from rktnetes.errors import RegistryError, RktError

from . import reference as refs


class RegistriesConfError(RktError):
    """registries.conf cannot be read or does not make sense."""


@dataclass(frozen=True)
class Mirror:
    location: str
    insecure: bool = False
    pull_from_mirror: str = "all"   # "all", "digest-only", "tag-only"


@dataclass(frozen=True)
class RegistryEntry:
    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirror_by_digest_only: bool = False
    mirrors: tuple[Mirror, ...] = ()


@dataclass(frozen=True)
class PullSource:
    """One place to try: the reference rewritten to that place, and whether HTTP is allowed."""

    ref: refs.Reference
    insecure: bool
    mirror: bool


@dataclass
class RegistriesConf:
    registries: list[RegistryEntry] = field(default_factory=list)
    unqualified_search_registries: list[str] = field(default_factory=list)

    def find(self, ref: refs.Reference) -> RegistryEntry | None:
        """The entry with the longest prefix matching the reference, if any."""
        full = ref.normalized()
        best, best_len = None, -1
        for entry in self.registries:
            n = _match(full, entry.prefix)
            if n > best_len:
                best, best_len = entry, n
        return best

    def pull_sources(self, ref: refs.Reference) -> list[PullSource]:
        """Where to pull `ref` from, in order: mirrors first, then the registry itself."""
        entry = self.find(ref)
        if entry is None:
            return [PullSource(ref, False, False)]
        if entry.blocked:
            raise RegistryError(f"registry {ref.registry} is blocked in registries.conf "
                                f"(prefix {entry.prefix!r})")
        full = ref.normalized()
        rest = full[_match(full, entry.prefix):] if not entry.prefix.startswith("*.") else None
        out = []
        for m in entry.mirrors:
            if (entry.mirror_by_digest_only or m.pull_from_mirror == "digest-only") and not ref.digest:
                continue
            if m.pull_from_mirror == "tag-only" and ref.digest:
                continue
            out.append(PullSource(_relocate(ref, m.location, rest), m.insecure, True))
        out.append(PullSource(_relocate(ref, entry.location, rest), entry.insecure, False))
        return out


def _match(full: str, prefix: str) -> int:
    """Length of the part of `full` that `prefix` covers, or -1 (the man page's rules)."""
    if prefix.startswith("*."):
        host = full.split("/", 1)[0]
        return len(host) if host.endswith(prefix[1:]) else -1
    if not full.startswith(prefix):
        return -1
    if len(full) == len(prefix) or full[len(prefix)] in "/:@":
        return len(prefix)
    return -1


def _relocate(ref: refs.Reference, location: str, rest: str | None) -> refs.Reference:
    """registry.k8s.io/x/y:t, prefix registry.k8s.io, location 127.0.0.1:5000 -> 127.0.0.1:5000/x/y:t."""
    if rest is None or not location:  # wildcard prefixes keep the reference as it is
        return ref
    host, _, path = (location + rest).partition("/")
    # Parse the rest under a placeholder host so a location without a dot is still a host.
    try:
        parsed = refs.parse(f"docker://placeholder.invalid/{path}")
    except RktError as e:
        raise RegistryError(f"registries.conf: cannot rewrite {ref} to {location!r}: {e}") from None
    repo = parsed.repository
    if host == refs.DOCKER_HUB and "/" not in repo:
        repo = f"library/{repo}"
    return ref.with_location(host, repo)


def _bool(v, what: str, path: Path) -> bool:
    if not isinstance(v, bool):
        raise RegistriesConfError(f"{path}: {what} must be true or false")
    return v


def _str(v, what: str, path: Path) -> str:
    if not isinstance(v, str):
        raise RegistriesConfError(f"{path}: {what} must be a string")
    return v


def parse(text: str, path: Path) -> RegistriesConf:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RegistriesConfError(f"{path}: malformed TOML: {e}") from None
    if "registries" in doc:
        raise RegistriesConfError(f"{path}: the version 1 format ([registries.*]) is not supported; "
                                  "use [[registry]] tables")
    entries = doc.get("registry", [])
    if not isinstance(entries, list):
        raise RegistriesConfError(f"{path}: 'registry' must be an array of tables ([[registry]])")
    out = []
    for i, e in enumerate(entries):
        what = f"[[registry]] #{i + 1}"
        if not isinstance(e, dict):
            raise RegistriesConfError(f"{path}: {what} is not a table")
        location = _str(e.get("location", ""), f"{what} location", path).rstrip("/")
        prefix = _str(e.get("prefix", ""), f"{what} prefix", path).rstrip("/") or location
        if not prefix:
            raise RegistriesConfError(f"{path}: {what} needs a location or a prefix")
        if prefix.startswith("*.") and location:
            raise RegistriesConfError(f"{path}: {what}: a wildcard prefix cannot have a location")
        if not location and not prefix.startswith("*."):
            location = prefix
        mirrors = []
        raw_mirrors = e.get("mirror", [])
        if not isinstance(raw_mirrors, list):
            raise RegistriesConfError(f"{path}: {what} mirror must be an array of tables")
        for j, m in enumerate(raw_mirrors):
            mwhat = f"{what} mirror #{j + 1}"
            if not isinstance(m, dict) or not m.get("location"):
                raise RegistriesConfError(f"{path}: {mwhat} needs a location")
            pfm = _str(m.get("pull-from-mirror", "all") or "all", f"{mwhat} pull-from-mirror", path)
            if pfm not in ("all", "digest-only", "tag-only"):
                raise RegistriesConfError(f"{path}: {mwhat}: pull-from-mirror must be all, "
                                          "digest-only or tag-only")
            mirrors.append(Mirror(_str(m["location"], f"{mwhat} location", path).rstrip("/"),
                                  _bool(m.get("insecure", False), f"{mwhat} insecure", path), pfm))
        out.append(RegistryEntry(
            prefix=prefix, location=location,
            insecure=_bool(e.get("insecure", False), f"{what} insecure", path),
            blocked=_bool(e.get("blocked", False), f"{what} blocked", path),
            mirror_by_digest_only=_bool(e.get("mirror-by-digest-only", False),
                                        f"{what} mirror-by-digest-only", path),
            mirrors=tuple(mirrors)))
    search = doc.get("unqualified-search-registries", [])
    if not isinstance(search, list) or not all(isinstance(s, str) for s in search):
        raise RegistriesConfError(f"{path}: unqualified-search-registries must be a list of strings")
    return RegistriesConf(out, list(search))


def load(path: Path) -> RegistriesConf:
    """The configuration at `path`; none at all if the file does not exist."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return RegistriesConf()
    except (OSError, UnicodeDecodeError) as e:
        raise RegistriesConfError(f"{path}: cannot read: {e}") from None
    return parse(text, path)
