"""The store's temporary files and directories, each locked by the process writing it.

An unpack in `layers/.tmp-*`, a download's `blobs/<algo>/.*.part`, a fetch's staging directory
in `tmp/`: each is made and flocked in one step, under the shared side of the store's
`tmp.lock`, and its writer holds the flock until it renames the result into place or removes
it. A killed writer's flock vanishes with it, so `sweep` (run by `rkt gc` and `rkt image gc`)
removes exactly what no live writer holds, however young: it takes `tmp.lock` exclusively, so
it never sees one between its creation and its flock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from rktnetes.fsutil import FileLock, rmtree
from rktnetes.lazylog import getLogger

LAYER_PREFIX = ".tmp-"
PART_SUFFIX = ".part"
LOCK_NAME = "tmp.lock"


class Held:
    """A temporary path and the flock its writer holds on it (released by close)."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = path, fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Held":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _lock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # new: nobody else can hold it yet


def make_dir(store_root: Path, parent: Path, prefix: str) -> Held:
    """A new private directory in `parent`, flocked."""
    import tempfile  # here: the hot path of a start imports this module, not tempfile

    parent.mkdir(parents=True, exist_ok=True)
    with FileLock(store_root / LOCK_NAME).held(shared=True):
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        _lock(fd)
    return Held(path, fd)


def make_file(store_root: Path, parent: Path, prefix: str, suffix: str) -> Held:
    """A new private file in `parent`, open for writing (Held.fd) and flocked."""
    import tempfile

    parent.mkdir(parents=True, exist_ok=True)
    with FileLock(store_root / LOCK_NAME).held(shared=True):
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=parent)
        _lock(fd)
    return Held(Path(name), fd)


def is_held(path: Path) -> bool:
    """Whether a live writer holds `path`'s flock (True, to be safe, if it cannot be told)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:   # EWOULDBLOCK: held; anything else: cannot tell, so keep it
        return True
    finally:
        os.close(fd)


def sweep(store_root: Path, candidates: list[Path]) -> int:
    """Remove the candidates no live writer holds; returns how many went. Skipped (0) while
    some writer is between making a temporary and locking it."""
    lock = FileLock(store_root / LOCK_NAME)
    if not lock.acquire(blocking=False):
        return 0
    n = 0
    try:
        for p in candidates:
            if is_held(p):
                continue
            try:
                rmtree(p)
                n += 1
            except OSError as e:
                getLogger(__name__).warning("cannot remove %s: %s", p, e)
    finally:
        lock.release()
    return n


def layer_temps(layers_dir: Path) -> list[Path]:
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        return [p for p in layers_dir.iterdir() if p.name.startswith(LAYER_PREFIX)]
    return []
