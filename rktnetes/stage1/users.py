"""Resolving an app's user and group inside its image, from the image's /etc/passwd and /etc/group."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rktnetes.errors import Stage1Error


@dataclass(frozen=True)
class Identity:
    """The uid, gid and groups an app runs as."""
    uid: int
    gid: int
    additional_gids: list[int] = field(default_factory=list)
    home: str = "/"


def _table(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve(user: str, group: str, passwd: str, group_file: str,
            extra_gids: list[int] | None = None) -> Identity:
    """Pure: names are looked up in the given file contents; numbers pass through."""
    user = user or "0"
    pw = _table(passwd)
    grp = _table(group_file)
    entry = None
    if user.isdigit():
        uid = int(user)
        entry = next((e for e in pw if len(e) >= 4 and e[2] == user), None)
    else:
        entry = next((e for e in pw if len(e) >= 4 and e[0] == user), None)
        if entry is None:
            raise Stage1Error(f"user {user!r} not found in the image's /etc/passwd")
        uid = int(entry[2])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = next((e for e in grp if len(e) >= 3 and e[0] == group), None)
            if g is None:
                raise Stage1Error(f"group {group!r} not found in the image's /etc/group")
            gid = int(g[2])
    else:
        gid = int(entry[3]) if entry and entry[3].isdigit() else 0
    extra: list[int] = []
    if entry is not None:  # the user's supplementary groups, as login would set them
        for g in grp:
            if len(g) >= 4 and entry[0] in g[3].split(",") and g[2].isdigit():
                extra.append(int(g[2]))
    for g in extra_gids or []:
        extra.append(g)
    extra = sorted({g for g in extra if g != gid})
    home = entry[5] if entry and len(entry) >= 6 and entry[5] else "/"
    return Identity(uid, gid, extra, home)


ID_FILE_LIMIT = 4 << 20   # bytes of /etc/passwd or /etc/group read at most


def identity_files(read: Callable[[str, int], bytes | None]) -> tuple[str, str]:
    """The image's /etc/passwd and /etc/group, through `read(path, limit)`: an in-root reader
    (rktnetes.host.inroot.read_file on a mounted rootfs, LayeredFS.read_file on the layers),
    so prepare and start read the same files the same way. Missing reads as empty; anything
    but a regular file of sane size is a Stage1Error."""
    texts = []
    for path in ("/etc/passwd", "/etc/group"):
        try:
            data = read(path, ID_FILE_LIMIT)
        except OSError as e:
            raise Stage1Error(f"the image's {e.strerror or e}") from None
        texts.append((data or b"").decode(errors="replace"))
    return texts[0], texts[1]


def resolve_in(rootfs: Path, user: str, group: str, extra_gids: list[int] | None = None) -> Identity:
    """Resolve from the mounted rootfs's passwd/group, each path resolved inside it."""
    from rktnetes.host import inroot

    root = inroot.open_root(rootfs)
    try:
        passwd, grp = identity_files(lambda p, limit: inroot.read_file(root, p, limit))
    finally:
        os.close(root)
    return resolve(user, group, passwd, grp, extra_gids)
