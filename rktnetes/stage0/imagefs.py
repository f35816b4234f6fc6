"""Looking up a path in an image's merged layers without mounting them.

The layer cache holds each layer unpacked in its own directory; the merged view is what overlayfs
would show: upper layers win, whiteouts hide lower entries (both the OCI `.wh.NAME` files and
overlay's 0/0 character devices), opaque directories hide everything below them. Symlinks are
followed inside the image, never out to the host.
"""

from __future__ import annotations

import os
import posixpath
import stat
from pathlib import Path

WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"
_MAX_LINKS = 40


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(d: str) -> bool:
    if os.path.lexists(os.path.join(d, WH_OPAQUE)):
        return True
    for attr in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(d, attr, follow_symlinks=False) == b"y":
                return True
        except OSError:
            pass
    return False


class LayeredFS:
    """The merged view of layer directories, given bottom-up as an image lists them."""

    def __init__(self, layers_bottom_up: list[Path]):
        self.layers = [str(p) for p in reversed(layers_bottom_up)]  # top-down

    def _entry(self, path: str) -> tuple[str, os.stat_result] | None:
        """The top-most layer's entry for an already-resolved parent + name."""
        parent, name = posixpath.split(path)
        for top in self.layers:
            ldir = top + parent
            if os.path.lexists(os.path.join(ldir, WH_PREFIX + name)):
                return None
            full = top + path
            try:
                st = os.lstat(full)
            except (FileNotFoundError, NotADirectoryError):
                if parent != "/" and os.path.isdir(ldir) and _is_opaque(ldir):
                    return None
                continue
            if _is_whiteout(st):
                return None
            return full, st
        return None

    def _walk(self, path: str) -> tuple[str, tuple[str, os.stat_result] | None] | None:
        """Follow `path` inside the image: (its canonical path, the final entry's (host path,
        lstat), None for the root), or None if missing, looping, or through a non-directory."""
        todo = [c for c in path.split("/") if c]
        cur = "/"
        links = 0
        found: tuple[str, os.stat_result] | None = None
        while todo:
            comp = todo.pop(0)
            if comp == ".":
                continue
            if comp == "..":
                cur = posixpath.dirname(cur) or "/"
                continue
            nxt = posixpath.join(cur, comp)
            found = self._entry(nxt)
            if found is None:
                return None
            full, st = found
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    return None
                target = os.readlink(full)
                todo = [c for c in target.split("/") if c] + todo
                cur = "/" if target.startswith("/") else cur
                found = None
                continue
            if todo and not stat.S_ISDIR(st.st_mode):
                return None
            cur = nxt
        return cur, found

    def resolve(self, path: str) -> tuple[str, os.stat_result] | None:
        """(host path, lstat) of the entry at `path` after following symlinks, or None."""
        walked = self._walk(path)
        if walked is None:
            return None
        cur, found = walked
        if found is None and cur == "/":
            return (self.layers[0], os.stat(self.layers[0])) if self.layers else None
        return found

    def is_executable(self, path: str) -> bool:
        r = self.resolve(path)
        return bool(r and stat.S_ISREG(r[1].st_mode) and r[1].st_mode & 0o111)

    def is_dir(self, path: str) -> bool:
        r = self.resolve(path)
        return bool(r and stat.S_ISDIR(r[1].st_mode))

    def which(self, cmd: str, path_env: str) -> str | None:
        """Where an exec would be found: itself if it has a slash, else along PATH."""
        if "/" in cmd:
            p = cmd if cmd.startswith("/") else "/" + cmd
            return p if self.is_executable(p) else None
        for d in path_env.split(":"):
            if d.startswith("/") and self.is_executable(posixpath.join(d, cmd)):
                return posixpath.join(d, cmd)
        return None

    def read_text(self, path: str, limit: int = 4 << 20) -> str:
        """The contents of the regular file at `path` as stage1 would read it from the mounted
        rootfs: the directories on the way are followed (inside the image), a symlink as the
        final component is not (it reads as empty). Missing or not a file: ""."""
        parent, name = posixpath.split(posixpath.normpath("/" + path.lstrip("/")))
        canon = self._canonical(parent)  # the directory, resolved inside the image
        if canon is None or not name:
            return ""
        e = self._entry(posixpath.join(canon, name))
        if e is None or not stat.S_ISREG(e[1].st_mode):
            return ""
        try:
            with open(e[0], "rb") as f:
                return f.read(limit).decode(errors="replace")
        except OSError:
            return ""

    def _canonical(self, path: str) -> str | None:
        """`path` with every symlink resolved inside the image, or None if it is not a
        directory there."""
        walked = self._walk(path)
        if walked is None:
            return None
        cur, found = walked
        if found is not None and not stat.S_ISDIR(found[1].st_mode):
            return None
        return cur
