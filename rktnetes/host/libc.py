"""The C library, for the few Linux syscalls Python 3.11 lacks (mount, umount2, unshare, setns,
prctl, openat2): loaded once, already mapped (find_library would run ldconfig)."""

from __future__ import annotations

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)


def check(ret: int, what: str) -> None:
    """OSError (errno and a message naming `what`) for a failed call's return value."""
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
