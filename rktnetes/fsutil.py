"""Atomic writes, locks and small filesystem helpers used by every on-disk module."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Iterator

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds of every `rkt` start; pathlib a megabyte of
    from pathlib import Path  # the lean monitor's, which imports this module: os.path here
    from typing import Any


def _temp_sibling(path: str) -> tuple[int, str]:
    """A new private file `.NAME.RANDOM.tmp` beside `path`, open for writing, as
    `tempfile.mkstemp` would make it (without importing tempfile, and with it shutil, random,
    bz2 and lzma: a few ms of every `rkt` start)."""
    parent, name = os.path.split(path)
    for _ in range(100):
        tmp = os.path.join(parent, f".{name}.{os.urandom(6).hex()}.tmp")
        try:
            return os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", parent)


def atomic_write_bytes(path: str | Path, data: bytes, mode: int = 0o644, mkdir: bool = True,
                       durable: bool = True) -> None:
    """Write to a temporary sibling, fsync, then rename: readers see old or new, never half.
    mkdir=False: the directory must exist (FileNotFoundError otherwise), e.g. inside a pod
    directory that may have been renamed meanwhile, which must never be re-created.
    durable=False: no fsync, for files that matter only while the pod they serve runs (its
    /etc files, an app's OCI config), which a machine crash ends anyway: ~1 ms each here."""
    path = os.fspath(path)
    if mkdir:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = _temp_sibling(path)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, obj: Any, mkdir: bool = True,
                      durable: bool = True) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(),
                       mkdir=mkdir, durable=durable)


def read_json(path: str | Path) -> Any:
    with open(path, "rb") as f:
        return json.load(f)


class FileLock:
    """An flock on a file; shared or exclusive, blocking or not.

    flock locks vanish with their holder, so a crashed process never leaves a stale lock.
    """

    def __init__(self, path: str | Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self, shared: bool = False, blocking: bool = True) -> bool:
        if self.fd is None:
            os.makedirs(os.path.dirname(os.fspath(self.path)), exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        if not blocking:
            op |= fcntl.LOCK_NB
        try:
            fcntl.flock(self.fd, op)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    @contextlib.contextmanager
    def held(self, shared: bool = False) -> Iterator["FileLock"]:
        self.acquire(shared=shared)
        try:
            yield self
        finally:
            self.release()


def ensure_dir(path: Path, mode: int, parents: bool = True) -> None:
    """`path` exists with exactly `mode` (an older, looser one of ours is tightened); its
    missing parents are made with the defaults (FileNotFoundError instead if not `parents`)."""
    try:
        os.mkdir(path, mode)
    except FileNotFoundError:
        if not parents:
            raise
        os.makedirs(os.path.dirname(os.fspath(path)), exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, mode)
    except FileExistsError:
        pass
    st = os.stat(path)
    if st.st_mode & 0o7777 != mode and st.st_uid == os.geteuid():
        os.chmod(path, mode)


def rmtree(path: Path) -> None:
    """Remove a tree that may hold read-only directories or immutable-looking modes."""
    import shutil

    def onerror(func, p, exc_info):
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
        func(p)

    path = os.fspath(path)
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.exists(path):
        shutil.rmtree(path, onerror=onerror)


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total
