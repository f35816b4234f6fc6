"""Wake when something changes in a few directories (inotify), so a waiter sees the monitor's
state write or a pod's move at once rather than at its next poll.

Every state change rktnetes makes on disk is a rename into a directory (atomic writes), a
removal (a request acted on), or a pod directory's move between state directories: each is
an entry event of a directory watched here. A waiter watches, then checks its condition, then
waits: a change between the check and the wait is queued, never lost. What no file shows (a
process that died) is seen at the latest after `wait`'s timeout, which the caller keeps short.
Without inotify (no instance left: fs.inotify.max_user_instances), `wait` just sleeps.

Closing an inotify descriptor that has had a watch waits for the kernel's SRCU grace period
(7-16 ms measured here), more than most waits last: a watch's descriptor is not closed but
kept, its watches removed, for the next watch of this process.
"""

from __future__ import annotations

import ctypes
import os
import select
import threading
import time

from .libc import libc

IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

ENTRY_EVENTS = (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE
                | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

libc.inotify_add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
libc.inotify_rm_watch.argtypes = (ctypes.c_int, ctypes.c_int)

POOL_MAX = 32             # idle descriptors kept (one per thread that waited at once)
_pool: list[int] = []
_pool_lock = threading.Lock()


def _forget_pool() -> None:   # a forked child must not share its parent's instances
    global _pool, _pool_lock
    _pool, _pool_lock = [], threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


class DirWatch:
    """`with DirWatch([dir, ...]) as w: while not done(): w.wait(0.05)`. Directories that do
    not exist (yet, or any more) are skipped: their parent's watch sees them come and go. A
    wake may be spurious (an event of a change already seen): the caller looks again."""

    def __init__(self, dirs):
        self.fd = -1
        self.wds: list[int] = []
        with _pool_lock:
            if _pool:
                self.fd = _pool.pop()
        if self.fd >= 0:
            _drain(self.fd)      # an IN_IGNORED of its last use may come late
        else:
            try:
                self.fd = _init()
            except OSError:
                return  # no inotify: wait() sleeps
        for d in dirs:
            wd = libc.inotify_add_watch(self.fd, os.fsencode(str(d)), ENTRY_EVENTS)
            if wd >= 0:         # -1: a directory not there, skipped
                self.wds.append(wd)

    def wait(self, timeout: float) -> bool:
        """Until a change (True) or `timeout` seconds (False); drains what was queued."""
        if self.fd < 0:
            time.sleep(timeout)
            return False
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0.0))
        if not ready:
            return False
        _drain(self.fd)
        return True

    def close(self) -> None:
        if self.fd < 0:
            return
        fd, self.fd = self.fd, -1
        for wd in self.wds:
            libc.inotify_rm_watch(fd, wd)
        self.wds = []
        _drain(fd)     # what was queued, and the IN_IGNORED of each removed watch
        with _pool_lock:
            if len(_pool) < POOL_MAX:
                _pool.append(fd)
                return
        os.close(fd)

    def __enter__(self) -> "DirWatch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except BlockingIOError:
        pass


def _init() -> int:
    fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return fd
