"""Looking up a path in an image's merged layers without mounting them.

The layer cache holds each layer unpacked in its own directory; the merged view is what overlayfs
would show, computed the way overlayfs looks a path up: a directory's content comes from the
layers, top down, that hold it as a directory, until one marks it opaque; a whiteout (an OCI
`.wh.NAME` file, or overlay's 0/0 character device) or a non-directory ends the stack below it.
Symlinks are resolved inside the image, never out to the host, and nothing on the host is
followed: each layer's entries are reached through rktnetes.host.inroot without symlinks.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from pathlib import Path

from rktnetes.host import inroot

WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"
_MAX_LINKS = inroot.MAX_SYMLINKS


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


class LayeredFS:
    """The merged view of layer directories, given bottom-up as an image lists them."""

    def __init__(self, layers_bottom_up: list[Path]):
        self.layers = [str(p) for p in reversed(layers_bottom_up)]  # top-down
        self._fds: list[int] | None = None

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._fds or ():
            os.close(fd)
        self._fds = None

    @property
    def fds(self) -> list[int]:
        if self._fds is None:
            self._fds = [inroot.open_root(p) for p in self.layers]
        return self._fds

    # -- one layer ------------------------------------------------------------------------------

    def _lstat(self, i: int, path: str) -> os.stat_result | None:
        """The entry at `path` in layer `i` itself (no symlink followed), or None."""
        try:
            fd = inroot.open_in(self.fds[i], path, follow=False, symlinks=False)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return None
            raise
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def _opaque(self, i: int, path: str) -> bool:
        if self._lstat(i, posixpath.join(path, WH_OPAQUE)) is not None:
            return True
        try:
            fd = inroot.open_in(self.fds[i], path, symlinks=False)
        except OSError:
            return False
        try:
            for attr in ("trusted.overlay.opaque", "user.overlay.opaque"):
                try:
                    if os.getxattr(inroot.fd_path(fd), attr) == b"y":
                        return True
                except OSError:
                    pass
        finally:
            os.close(fd)
        return False

    # -- the merged view --------------------------------------------------------------------------

    def _lookup(self, stack: list[int], parent: str, name: str
                ) -> tuple[int, os.stat_result, list[int]] | None:
        """The entry `name` in the merged directory `parent` whose layers are `stack` (top
        down): (layer, lstat, the child's own stack if it is a directory), or None."""
        path = posixpath.join(parent, name)
        found: tuple[int, os.stat_result] | None = None
        child: list[int] = []
        for i in stack:
            if self._lstat(i, posixpath.join(parent, WH_PREFIX + name)) is not None:
                break
            st = self._lstat(i, path)
            if st is None:
                continue
            if _is_whiteout(st):
                break
            if found is None:
                found = (i, st)
            if not stat.S_ISDIR(st.st_mode) or not stat.S_ISDIR(found[1].st_mode):
                break   # a non-directory hides what lower layers have there
            child.append(i)
            if self._opaque(i, path):
                break
        if found is None:
            return None
        return found[0], found[1], child

    def _walk(self, path: str, follow: bool = True
              ) -> tuple[str, int, os.stat_result | None] | None:
        """Follow `path` inside the image: (its canonical path, its layer, its lstat), with
        layer -1 and lstat None for the root; None if missing, looping, or through a
        non-directory. follow=False: a final symlink is not followed."""
        todo = [c for c in path.split("/") if c]
        # every component walked: (canonical path, its stack of layers, its layer, its lstat)
        walked: list[tuple[str, list[int], int, os.stat_result | None]] = [
            ("/", list(range(len(self.layers))), -1, None)]
        links = 0
        while todo:
            comp = todo.pop(0)
            if comp == ".":
                continue
            if comp == "..":
                if len(walked) > 1:
                    walked.pop()
                continue
            cur, stack, _, st = walked[-1]
            if st is not None and not stat.S_ISDIR(st.st_mode):
                return None   # a path through a file
            got = self._lookup(stack, cur, comp)
            if got is None:
                return None
            i, st, child = got
            if stat.S_ISLNK(st.st_mode) and (todo or follow):
                links += 1
                if links > _MAX_LINKS:
                    return None
                pfd = inroot.open_in(self.fds[i], cur, symlinks=False)
                try:
                    target = os.readlink(comp, dir_fd=pfd)
                finally:
                    os.close(pfd)
                if target.startswith("/"):
                    walked = walked[:1]
                todo = [c for c in target.split("/") if c] + todo
                continue
            walked.append((posixpath.join(cur, comp), child, i, st))
        canon, _, i, st = walked[-1]
        return canon, i, st

    def resolve(self, path: str) -> tuple[str, os.stat_result] | None:
        """(canonical path, lstat) of the entry at `path` after following symlinks, or None.
        The root itself is ("/", its stat)."""
        walked = self._walk(path)
        if walked is None:
            return None
        canon, i, st = walked
        if st is None:
            return ("/", os.fstat(self.fds[0])) if self.layers else None
        return canon, st

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

    def read_file(self, path: str, limit: int) -> bytes | None:
        """The regular file at `path`, as a process in the image would read it (symlinks
        followed inside the image), at most `limit` bytes; None if nothing is there.
        inroot.NotRegularFile, or OSError(EFBIG), as rktnetes.host.inroot.read_file."""
        walked = self._walk(path)
        if walked is None:
            return None
        canon, i, st = walked
        if st is None:
            raise inroot.NotRegularFile(errno.EINVAL, f"{path} is a directory, not a regular file")
        fd = inroot.open_in(self.fds[i], canon, follow=False, symlinks=False)
        try:
            return inroot.read_fd(fd, limit, path)
        finally:
            os.close(fd)
