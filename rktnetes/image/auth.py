"""Registry credentials from `<config-dir>/auth.json`, the shape of ~/.docker/config.json:

    {"auths": {"registry.example.com": {"auth": "<base64 of user:password>"},
               "127.0.0.1:5000/team": {"username": "u", "password": "p"}}}

Keys may carry a scheme or Docker's `/v1/` suffix; a key with a path applies to that namespace
and wins over the bare host (as podman's auth.json does).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path

from rktnetes.errors import AuthError

_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    token: str = ""     # a bearer token to send as it is (a CRI AuthConfig's registry_token)

    def __repr__(self) -> str:  # keep secrets out of debug logs
        return f"Credentials(username={self.username!r}, password=***, token=***)"


def _normalize_key(key: str) -> str:
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme):]
    key = key.rstrip("/")
    for suffix in ("/v1", "/v2"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    host, sep, rest = key.partition("/")
    if host in _HUB_ALIASES:
        host = "docker.io"
    return host + sep + rest


@dataclass
class AuthConfig:
    entries: dict[str, Credentials]

    def lookup(self, registry: str, repository: str = "") -> Credentials | None:
        """The most specific entry: host/a/b, then host/a, then host."""
        parts = [registry, *repository.split("/")] if repository else [registry]
        for n in range(len(parts), 0, -1):
            creds = self.entries.get("/".join(parts[:n]))
            if creds:
                return creds
        return None


def _decode(path: Path, key: str, entry) -> Credentials | None:
    if not isinstance(entry, dict):
        raise AuthError(f"{path}: entry for {key!r} is not an object")
    if entry.get("auth"):
        try:
            user, sep, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, TypeError, ValueError):
            raise AuthError(f"{path}: 'auth' for {key!r} is not base64 of user:password") from None
        if not sep:
            raise AuthError(f"{path}: 'auth' for {key!r} is not base64 of user:password")
        return Credentials(user, password)
    if entry.get("username") is not None:
        return Credentials(str(entry["username"]), str(entry.get("password", "")))
    return None  # e.g. an entry that only names a credential helper


def load(path: Path) -> AuthConfig:
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return AuthConfig({})
    except (OSError, ValueError) as e:
        raise AuthError(f"{path}: cannot read credentials: {str(e).splitlines()[0]}") from None
    auths = doc.get("auths", {}) if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        raise AuthError(f"{path}: 'auths' must be an object")
    entries = {}
    for key, entry in auths.items():
        creds = _decode(path, key, entry)
        if creds:
            entries[_normalize_key(key)] = creds
    return AuthConfig(entries)
