"""Unpack one layer tar into a directory, following the OCI image spec's layer rules.

Two modes:
  OVERLAY  each layer in its own directory (the layer cache); whiteouts become overlayfs
           whiteouts (a 0/0 char device) and opaque markers the `trusted.overlay.opaque`
           xattr, so a pod rootfs is an overlay mount of the layer directories.
  APPLY    layers rendered in order into one rootfs: whiteouts delete, opaque markers clear
           what earlier layers put in the directory.

Nothing is ever written outside the target. Every entry's parent is reached by walking
from the target's fd one component at a time with O_NOFOLLOW, and every file is created
relative to its parent's fd, so a symlink (from this layer or an earlier one) is never
followed. `..` that climbs above the target is refused; a leading `/` is taken as relative,
as the spec and tar do. Hard links must name something already inside the target.

The tar is read as a stream ('r|'), and the sha256 of the uncompressed bytes is returned,
so the caller can check it against the image config's diff_id.
"""

from __future__ import annotations

import base64
import errno
import gzip
import hashlib
import logging
import os
import shutil
import stat
import tarfile
import urllib.parse
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from rktnetes.errors import ManifestError, RktError, StoreError, UnsafeLayerError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rktnetes.store.limits import ExpansionBudget

log = logging.getLogger(__name__)

OVERLAY = "overlay"
APPLY = "apply"

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"

_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_CACHED_FDS = 256


@dataclass(frozen=True)
class UnpackResult:
    diff_id: str   # "sha256:..." of the uncompressed tar stream
    size: int      # bytes of the uncompressed tar stream
    entries: int


class _HashingReader:
    """A read-only file object that hashes everything that passes through it, and charges
    it to the unpack's budget (a decompression bomb stops at its first byte past the limit)."""

    def __init__(self, raw: BinaryIO, budget: ExpansionBudget | None = None):
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0
        self.budget = budget

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > _CHUNK:
            n = _CHUNK   # never ask a decompressor for everything at once
        data = self.raw.read(n)
        if self.budget is not None:
            self.budget.charge(len(data))
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read to the end: the diff_id covers the tar's trailing padding too."""
        while self.read(_CHUNK):
            pass


def decompressed(src: BinaryIO, compression: str) -> BinaryIO:
    """A stream of the uncompressed tar, for compression '', 'gzip' or 'zstd'."""
    if compression == "gzip":
        return gzip.GzipFile(fileobj=src, mode="rb")
    if compression == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True)
    if compression:
        raise ManifestError(f"unsupported layer compression {compression!r}")
    return src


def unpack_layer(src: BinaryIO, dest: Path, compression: str = "", mode: str = APPLY,
                 what: str = "layer", budget: ExpansionBudget | None = None) -> UnpackResult:
    """Unpack the (possibly compressed) tar stream `src` into the existing directory `dest`.
    `budget` bounds what it may expand to (the uncompressed stream, and what sparse entries
    add on disk): LayerTooLarge past it, with what was unpacked so far left for the caller
    to remove."""
    if mode not in (OVERLAY, APPLY):
        raise ValueError(f"unknown unpack mode {mode!r}")
    reader = _HashingReader(decompressed(src, compression), budget)
    unpacker = _Unpacker(dest, mode, what, budget)
    name = ""
    try:
        with tarfile.open(fileobj=reader, mode="r|", errorlevel=2) as tf:  # type: ignore[call-overload]
            for member in tf:
                name = member.name
                unpacker.entry(tf, member)
        reader.drain()
        unpacker.finish()
    except RktError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, zstandard.ZstdError) as e:
        raise ManifestError(f"{what}: corrupt or truncated tar ({_oneline(e)})") from None
    except OSError as e:
        where = f" at entry {name!r}" if name else ""
        raise StoreError(f"{what}: unpacking failed{where}: {e.strerror or _oneline(e)}") from None
    finally:
        unpacker.close()
    return UnpackResult(f"sha256:{reader.hash.hexdigest()}", reader.size, unpacker.count)


def unpack_file(path: Path, dest: Path, compression: str = "", mode: str = APPLY,
                what: str = "layer") -> UnpackResult:
    with open(path, "rb") as f:
        return unpack_layer(f, dest, compression, mode, what)


def _oneline(e: BaseException) -> str:
    return " ".join(str(e).split()) or e.__class__.__name__


def split_entry_path(name: str, what: str = "layer") -> tuple[str, ...]:
    """The components of a tar entry's path relative to the target.

    A leading `/` and `.` components are dropped; `..` is resolved lexically and refused if it
    climbs above the target (lexical is safe here because parents are never symlinks)."""
    parts: list[str] = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                raise UnsafeLayerError(f"{what}: unsafe entry {name!r}: '..' leads outside the target")
            parts.pop()
        else:
            parts.append(comp)
    return tuple(parts)


class _Unpacker:
    def __init__(self, dest: Path, mode: str, what: str, budget: ExpansionBudget | None = None):
        self.mode = mode
        self.what = what
        self.budget = budget
        self.root_fd = os.open(dest, _DIR_FLAGS)
        self._fds: dict[tuple[str, ...], int] = {}
        self.touched: set[tuple[str, ...]] = set()   # paths this layer itself wrote
        self.dir_times: list[tuple[tuple[str, ...], int]] = []
        self.count = 0
        self.privileged = os.geteuid() == 0

    # ---- fd bookkeeping -------------------------------------------------------------------

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def _forget(self, parts: tuple[str, ...], keep_self: bool = False) -> None:
        """Drop cached fds at or under `parts` (a directory there was removed or replaced)."""
        n = len(parts)
        for key in [k for k in self._fds if k[:n] == parts and (len(k) > n or not keep_self)]:
            os.close(self._fds.pop(key))

    def _dir_fd(self, parts: tuple[str, ...], entry: str, create: bool = True,
                strict: bool = True) -> int | None:
        """An fd of directory `parts`, reached without following any symlink.

        With `create`, missing directories are made (tar entries need not list their parents),
        else None is returned for them. With `strict`, a symlink or non-directory on the way
        is an error, else None is returned."""
        if not parts:
            return self.root_fd
        if parts in self._fds:
            return self._fds[parts]
        i = len(parts) - 1
        while i > 0 and parts[:i] not in self._fds:
            i -= 1
        fd = self._fds[parts[:i]] if i else self.root_fd
        for j in range(i, len(parts)):
            comp, here = parts[j], parts[:j + 1]
            try:
                nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    return None
                try:
                    os.mkdir(comp, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                self.touched.add(here)
                nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                os.chmod(nfd, 0o755)   # whatever the umask: apps of any uid must traverse it
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                if not strict:
                    return None
                st = os.lstat(comp, dir_fd=fd)
                if stat.S_ISLNK(st.st_mode):
                    raise UnsafeLayerError(
                        f"{self.what}: unsafe entry {entry!r}: its path passes through the "
                        f"symlink {'/'.join(here)!r}") from None
                raise ManifestError(f"{self.what}: entry {entry!r}: {'/'.join(here)!r} "
                                    f"is not a directory") from None
            self._fds[here] = nfd
            fd = nfd
        return fd

    # ---- entries --------------------------------------------------------------------------

    def entry(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        self.count += 1
        if self.budget is not None:
            self.budget.charge_entry()   # each entry costs an inode and a block on disk
        if len(self._fds) > _MAX_CACHED_FDS:
            # Evict between entries only: an fd handed out within an entry must stay valid.
            self._forget(())
        parts = split_entry_path(m.name, self.what)
        if not parts:
            if m.isdir():   # "./": the target itself
                self._dir_meta(self.root_fd, (), m)
                return
            raise UnsafeLayerError(f"{self.what}: unsafe entry {m.name!r}: names the target itself")
        base = parts[-1]
        parent = parts[:-1]
        pfd = self._dir_fd(parent, m.name)
        assert pfd is not None
        if base == OPAQUE_MARKER:
            self._opaque(pfd, parent, m.name)
            return
        if base.startswith(WHITEOUT_PREFIX):
            hidden = base[len(WHITEOUT_PREFIX):]
            if hidden in ("", ".", ".."):
                raise UnsafeLayerError(f"{self.what}: unsafe entry {m.name!r}: bad whiteout name")
            self._whiteout(pfd, parent + (hidden,), hidden, m.name)
            return
        self.touched.add(parts)

        if m.isdir():
            fd = self._make_dir(pfd, parts, base)
            self._dir_meta(fd, parts, m)
        elif m.isreg():
            self._make_file(tf, m, pfd, parts, base)
        elif m.issym():
            self._clear(pfd, parts, base)
            os.symlink(m.linkname, base, dir_fd=pfd)
            self._path_meta(pfd, base, m, chmod=False)
        elif m.islnk():
            self._make_hardlink(m, pfd, parts, base)
        elif m.ischr() or m.isblk() or m.isfifo():
            self._make_node(m, pfd, parts, base)
        else:
            log.debug("%s: skipping entry %r of unsupported type %r", self.what, m.name, m.type)

    def _make_dir(self, pfd: int, parts: tuple[str, ...], base: str) -> int:
        try:
            st = os.lstat(base, dir_fd=pfd)
        except FileNotFoundError:
            st = None
        replaces_whiteout = st is not None and _is_whiteout(st)
        if st is not None and not stat.S_ISDIR(st.st_mode):
            self._clear(pfd, parts, base)
            st = None
        if st is None:
            os.mkdir(base, 0o700, dir_fd=pfd)
        fd = self._dir_fd(parts, base)
        assert fd is not None
        if replaces_whiteout and self.mode == OVERLAY:
            # `.wh.d` and `d/` in one layer: the new directory replaces the lower one, not merges.
            os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
        return fd

    def _make_file(self, tf: tarfile.TarFile, m: tarfile.TarInfo, pfd: int,
                   parts: tuple[str, ...], base: str) -> None:
        # Unlink first, never write in place: the old file may be a hard link shared with
        # another path, or a symlink pointing anywhere.
        self._clear(pfd, parts, base)
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=pfd)
        try:
            if self.budget is not None and m.sparse:
                # the stream charged what it stores; the holes it leaves are written too
                self.budget.charge(max(0, m.size - sum(n for _, n in m.sparse)))
            src = tf.extractfile(m)
            if src is not None:
                with open(fd, "wb", closefd=False) as out:
                    shutil.copyfileobj(src, out, _CHUNK)
            self._owner(fd, m)
            os.chmod(fd, m.mode & 0o7777)      # after chown, which clears setuid/setgid
            self._xattrs(fd, None, m)
            os.utime(fd, ns=(_ns(m.mtime), _ns(m.mtime)))
        finally:
            os.close(fd)

    def _make_hardlink(self, m: tarfile.TarInfo, pfd: int, parts: tuple[str, ...],
                       base: str) -> None:
        try:
            target = split_entry_path(m.linkname, self.what)
        except UnsafeLayerError:
            raise UnsafeLayerError(f"{self.what}: unsafe entry {m.name!r}: hard link target "
                                   f"{m.linkname!r} leads outside the target") from None
        if not target:
            raise UnsafeLayerError(f"{self.what}: unsafe entry {m.name!r}: hard link to the target itself")
        if target[:len(parts)] == parts and target != parts:
            raise ManifestError(f"{self.what}: entry {m.name!r}: hard link into itself")
        tfd = self._dir_fd(target[:-1], m.name, create=False)
        try:
            st = os.lstat(target[-1], dir_fd=tfd) if tfd is not None else None
        except FileNotFoundError:
            st = None
        if st is None:
            raise UnsafeLayerError(f"{self.what}: unsafe entry {m.name!r}: hard link target "
                                   f"{m.linkname!r} is not inside the target")
        if stat.S_ISDIR(st.st_mode):
            raise ManifestError(f"{self.what}: entry {m.name!r}: hard link to a directory")
        if stat.S_ISLNK(st.st_mode):
            value = os.readlink(target[-1], dir_fd=tfd)
            if value.startswith("/") or not _stays_inside(target[:-1], value):
                raise UnsafeLayerError(f"{self.what}: unsafe entry {m.name!r}: hard link to "
                                       f"the symlink {m.linkname!r} that leads outside")
        if target == parts:
            return
        self._clear(pfd, parts, base)
        # linkat without AT_SYMLINK_FOLLOW: a symlink target is linked itself, never followed.
        os.link(target[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)

    def _make_node(self, m: tarfile.TarInfo, pfd: int, parts: tuple[str, ...], base: str) -> None:
        self._clear(pfd, parts, base)
        kind = stat.S_IFIFO if m.isfifo() else stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        dev = 0 if m.isfifo() else os.makedev(m.devmajor, m.devminor)
        try:
            os.mknod(base, kind | 0o600, dev, dir_fd=pfd)
        except PermissionError:
            # Without CAP_MKNOD (rootless) device nodes cannot exist; runtimes bind-mount /dev.
            log.warning("%s: skipping device node %r: not permitted", self.what, m.name)
            return
        self._path_meta(pfd, base, m, chmod=True)

    # ---- whiteouts ------------------------------------------------------------------------

    def _whiteout(self, pfd: int, parts: tuple[str, ...], name: str, entry: str) -> None:
        # Whiteouts hide what lower layers hold, never this layer's own entries.
        if parts in self.touched:
            return
        self._clear(pfd, parts, name)
        if self.mode == OVERLAY:
            os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)

    def _opaque(self, pfd: int, parts: tuple[str, ...], entry: str) -> None:
        if self.mode == OVERLAY:
            os.setxattr(pfd, OVERLAY_OPAQUE_XATTR, b"y")
            return
        self._forget(parts, keep_self=True)
        self._clear_lower(pfd, parts)

    def _clear_lower(self, fd: int, parts: tuple[str, ...]) -> None:
        """Remove everything under a directory that this layer did not write itself."""
        with os.scandir(fd) as it:
            children = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for name, is_dir in children:
            child = parts + (name,)
            if child not in self.touched:
                self._remove(fd, name, is_dir)
            elif is_dir:
                cfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                try:
                    self._clear_lower(cfd, child)
                finally:
                    os.close(cfd)

    # ---- helpers --------------------------------------------------------------------------

    def _clear(self, pfd: int, parts: tuple[str, ...], base: str) -> None:
        """Remove whatever is at `base` in `pfd` (a directory with all it holds)."""
        try:
            st = os.lstat(base, dir_fd=pfd)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            self._forget(parts)
        self._remove(pfd, base, stat.S_ISDIR(st.st_mode))

    @staticmethod
    def _remove(pfd: int, name: str, is_dir: bool) -> None:
        if is_dir:
            shutil.rmtree(name, dir_fd=pfd)   # fd-based: does not follow symlinks inside
        else:
            try:
                os.unlink(name, dir_fd=pfd)
            except FileNotFoundError:
                pass

    def _dir_meta(self, fd: int, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        self._owner(fd, m)
        os.chmod(fd, m.mode & 0o7777)
        self._xattrs(fd, None, m)
        # Creating the directory's content changes its mtime: set it once the layer is done.
        self.dir_times.append((parts, _ns(m.mtime)))

    def _path_meta(self, pfd: int, base: str, m: tarfile.TarInfo, chmod: bool) -> None:
        """Metadata of a symlink, device or fifo, which must not be opened."""
        if self.privileged:
            try:
                os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
            except PermissionError:
                pass
        if chmod:
            os.chmod(_proc_path(pfd, base), m.mode & 0o7777)
        self._xattrs(None, _proc_path(pfd, base), m)
        os.utime(base, ns=(_ns(m.mtime), _ns(m.mtime)), dir_fd=pfd, follow_symlinks=False)

    def _owner(self, fd: int, m: tarfile.TarInfo) -> None:
        if not self.privileged:
            return  # an unprivileged unpack keeps the caller's uid/gid
        try:
            os.chown(fd, m.uid, m.gid)
        except PermissionError:
            pass

    def _xattrs(self, fd: int | None, path: str | None, m: tarfile.TarInfo) -> None:
        for key, value in _entry_xattrs(m).items():
            if key.startswith("trusted.overlay."):
                # Only the layer format's .wh. entries may produce overlay metadata.
                log.debug("%s: dropping xattr %s on %r", self.what, key, m.name)
                continue
            try:
                if fd is not None:
                    os.setxattr(fd, key, value)
                else:
                    os.setxattr(path, key, value, follow_symlinks=False)  # type: ignore[arg-type]
            except OSError as e:
                # Filesystems without xattrs, or namespaces we may not write (user.* on symlinks).
                log.debug("%s: xattr %s on %r not kept: %s", self.what, key, m.name, e.strerror)

    def finish(self) -> None:
        for parts, ns in reversed(self.dir_times):
            if len(self._fds) > _MAX_CACHED_FDS:
                self._forget(())   # a layer of many directories: stay within RLIMIT_NOFILE
            fd = self._dir_fd(parts, "/".join(parts), create=False, strict=False)
            if fd is not None:  # gone: a later whiteout or entry replaced it
                os.utime(fd, ns=(ns, ns))


def _entry_xattrs(m: tarfile.TarInfo) -> dict[str, bytes]:
    """xattrs from PAX records: SCHILY.xattr.NAME (GNU tar, Go) and LIBARCHIVE.xattr.NAME."""
    out: dict[str, bytes] = {}
    for key, value in m.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            out[key[len("SCHILY.xattr."):]] = value.encode("utf-8", "surrogateescape")
        elif key.startswith("LIBARCHIVE.xattr."):
            name = urllib.parse.unquote(key[len("LIBARCHIVE.xattr."):])
            try:
                out.setdefault(name, base64.b64decode(value + "=" * (-len(value) % 4)))
            except ValueError:
                pass
    return out


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _stays_inside(parent: tuple[str, ...], link: str) -> bool:
    """Whether a relative symlink in directory `parent` resolves lexically inside the target."""
    depth = len(parent)
    for comp in link.split("/"):
        if comp == "..":
            depth -= 1
            if depth < 0:
                return False
        elif comp not in ("", "."):
            depth += 1
    return True


def _proc_path(dir_fd: int, name: str) -> str:
    # The magic link resolves the directory; `name` itself is looked up without following.
    return f"/proc/self/fd/{dir_fd}/{name}"


def _ns(mtime: float | int) -> int:
    return int(round(float(mtime) * 1_000_000_000))
