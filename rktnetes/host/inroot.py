"""Paths inside a root directory (an image's rootfs, one layer of it), resolved as a process
chrooted there would resolve them: symlinks, absolute ones included, and `..` never leave it.

This is the one place rktnetes resolves a path it got from an image. The kernel does the walk
(openat2 with RESOLVE_IN_ROOT, Linux 5.6); where openat2 is refused (an older kernel, a seccomp
filter) the same walk is done here one component at a time with O_PATH|O_NOFOLLOW. Every
result is an O_PATH descriptor, which opens nothing (a FIFO cannot block, a device is never
touched) and pins the inode: what is checked through it is what is used.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

O_PATH = os.O_PATH | os.O_CLOEXEC
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_RESOLVE_IN_ROOT = 0x10
_SYS_OPENAT2 = 437       # the same number on every architecture (a syscall added in 5.6)
MAX_SYMLINKS = 40        # as the kernel's own limit

_libc = ctypes.CDLL(None, use_errno=True)
_openat2_works: bool | None = None


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


class NotRegularFile(OSError):
    """A path that must name a plain file names something else (a FIFO, a device...)."""


def kind(mode: int) -> str:
    """What a file of this mode is, in words, for error messages."""
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISREG, "regular file")):
        if test(mode):
            return name
    return "special file"


def fd_path(fd: int) -> str:
    """A path naming exactly the inode behind `fd` (for mount(2), getxattr, reopening)."""
    return f"/proc/self/fd/{fd}"


def open_root(path: str | os.PathLike) -> int:
    """An O_PATH descriptor of the root directory itself (the caller closes it)."""
    return os.open(path, O_PATH | os.O_DIRECTORY)


def open_in(root_fd: int, path: str, *, follow: bool = True, symlinks: bool = True) -> int:
    """An O_PATH descriptor of `path` inside the root `root_fd` (the caller closes it).

    symlinks=True: symlinks are resolved inside the root, as a chrooted process sees them;
    False: any symlink on the way fails with ELOOP (for a layer directory, whose paths the
    merged view already resolved). follow=False: a symlink as the last component is opened
    itself. Raises FileNotFoundError, NotADirectoryError, OSError(ELOOP) as the kernel does."""
    global _openat2_works
    rel = path.lstrip("/") or "."
    if _openat2_works is not False:
        resolve = _RESOLVE_NO_MAGICLINKS | (_RESOLVE_IN_ROOT if symlinks else
                                            _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS)
        how = _OpenHow(O_PATH | (0 if follow else os.O_NOFOLLOW), 0, resolve)
        for _ in range(8):
            fd = _libc.syscall(_SYS_OPENAT2, root_fd, rel.encode(), ctypes.byref(how),
                               ctypes.sizeof(how))
            if fd >= 0:
                _openat2_works = True
                return fd
            e = ctypes.get_errno()
            if e != errno.EAGAIN:
                break
            # EAGAIN: a rename or mount somewhere raced a lookup through `..`: try again
        else:
            return _walk(root_fd, rel, follow, symlinks)
        if e not in (errno.ENOSYS, errno.EPERM) or _openat2_works:
            raise OSError(e, os.strerror(e), path)
        _openat2_works = False
    return _walk(root_fd, rel, follow, symlinks)


def _walk(root_fd: int, rel: str, follow: bool, symlinks: bool) -> int:
    """open_in without openat2: one component at a time, never following a link blindly,
    with the kernel's rules: a trailing `/` or `.` wants a directory (a final link is then
    followed), and without symlinks a `..` above the root is EXDEV, as RESOLVE_BENEATH."""
    if rel.endswith("/") or rel.endswith("/.") or rel == ".":
        follow = True
        rel = rel.rstrip("/") + "/."
    todo = [c for c in rel.split("/") if c not in ("", ".")]
    want_dir = rel.endswith("/.")
    stack = [os.dup(root_fd)]          # the directories walked, root first
    links = 0
    try:
        while todo:
            comp = todo.pop(0)
            if comp == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                elif not symlinks:
                    raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), rel)
                continue
            fd = os.open(comp, O_PATH | os.O_NOFOLLOW, dir_fd=stack[-1])
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode) and (todo or follow):
                if not symlinks:
                    os.close(fd)
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), rel)
                target = os.readlink("", dir_fd=fd)
                os.close(fd)
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), rel)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo = [c for c in target.split("/") if c not in ("", ".")] + todo
                continue
            if (todo or want_dir) and not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), rel)
            stack.append(fd)
        return stack.pop()
    finally:
        for fd in stack:
            os.close(fd)


def lstat_in(root_fd: int, path: str, *, symlinks: bool = True) -> os.stat_result | None:
    """What is at `path` inside the root (a final symlink not followed); None if missing."""
    try:
        fd = open_in(root_fd, path, follow=False, symlinks=symlinks)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None
        raise
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def read_fd(fd: int, limit: int, what: str) -> bytes:
    """The contents of the regular file behind the O_PATH descriptor `fd`, at most `limit`
    bytes. NotRegularFile for anything else (never opened: a FIFO would block, a device may
    act on open); OSError(EFBIG) past the limit."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(errno.EINVAL, f"{what} is a {kind(st.st_mode)}, not a regular file")
    if st.st_size > limit:
        raise OSError(errno.EFBIG, f"{what} is larger than {limit} bytes")
    rfd = os.open(fd_path(fd), os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        chunks, n = [], 0
        while n <= limit:
            chunk = os.read(rfd, min(1 << 20, limit + 1 - n))
            if not chunk:
                break
            chunks.append(chunk)
            n += len(chunk)
    finally:
        os.close(rfd)
    if n > limit:
        raise OSError(errno.EFBIG, f"{what} is larger than {limit} bytes")
    return b"".join(chunks)


def read_file(root: str | os.PathLike | int, path: str, limit: int) -> bytes | None:
    """The regular file at `path` inside `root` (a directory or an O_PATH fd of one),
    symlinks followed inside it; None if nothing is there. NotRegularFile, or OSError(EFBIG)
    past `limit`, both with the image path in their message."""
    root_fd = root if isinstance(root, int) else open_root(root)
    try:
        try:
            fd = open_in(root_fd, path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:   # a loop of links: nothing readable there
                return None
            raise
        try:
            return read_fd(fd, limit, path)
        finally:
            os.close(fd)
    finally:
        if not isinstance(root, int):
            os.close(root_fd)


def _make_path(root_fd: int, path: str, mode: int, file_last: bool) -> int:
    """Walk `path` inside the root as open_in does (symlinks resolved inside it), making what
    is missing: directories, and the last component a file if file_last. Returns an O_PATH
    fd of the result. Every component walked is a real directory, reached without links."""
    todo = [c for c in path.split("/") if c not in ("", ".")]
    done: list[str] = []
    links = 0
    root_dev = os.fstat(root_fd).st_dev
    while todo:
        comp = todo.pop(0)
        if comp == "..":
            if done:
                done.pop()
            continue
        last = not todo
        parent = open_in(root_fd, "/".join(done), symlinks=False)
        try:
            try:
                st = os.stat(comp, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                if os.fstat(parent).st_dev != root_dev:
                    # a host mount already in the rootfs (/dev, a volume): never made into
                    raise PermissionError(errno.EXDEV, f"/{'/'.join(done + [comp])} would "
                                          f"be made on a mount that is not the image's")
                try:
                    if last and file_last:
                        os.close(os.open(comp, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                                         os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=parent))
                    else:
                        os.mkdir(comp, mode, dir_fd=parent)
                except FileExistsError:
                    pass   # made meanwhile: looked at below
                st = os.stat(comp, dir_fd=parent, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, f"/{'/'.join(done + [comp])}: too many symlinks")
                target = os.readlink(comp, dir_fd=parent)
                if target.startswith("/"):
                    done = []
                todo = [c for c in target.split("/") if c not in ("", ".")] + todo
                continue
        finally:
            os.close(parent)
        here = "/" + "/".join(done + [comp])
        if last and file_last:
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, f"{here} is a directory in the image")
        elif not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, f"{here} is not a directory in the image")
        done.append(comp)
    if file_last and not done:
        raise IsADirectoryError(errno.EISDIR, "/ is a directory")
    return open_in(root_fd, "/".join(done), symlinks=False)


def make_dirs_in(root_fd: int, path: str, mode: int = 0o755) -> int:
    """An O_PATH descriptor of the directory `path` inside the root, made (with its missing
    parents, symlinks on the way resolved inside the root) where it is missing.
    NotADirectoryError, naming the path in the image, if something else is in the way."""
    return _make_path(root_fd, path, mode, file_last=False)


def make_file_in(root_fd: int, path: str) -> int:
    """An O_PATH descriptor of a non-directory at `path` inside the root (an empty file made
    if nothing is there), for a bind mount of a file. IsADirectoryError if a directory is."""
    return _make_path(root_fd, path, 0o755, file_last=True)
