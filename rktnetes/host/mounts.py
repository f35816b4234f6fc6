"""Mounts: mount(2), umount2(2), and the one reader of /proc/self/mountinfo.

Kept tiny and dependency-free: the per-pod monitor imports it, and so do forked children
right before they exec an app.
"""

from __future__ import annotations

import ctypes
import errno
import os

from .libc import check, libc

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20

MNT_DETACH = 2


def mount(source: str, target: str, fstype: str = "", flags: int = 0, data: str = "") -> None:
    check(libc.mount(source.encode(), str(target).encode(), fstype.encode() or None,
                     ctypes.c_ulong(flags), data.encode() or None), f"mount {target}")


def umount(target: str, flags: int = MNT_DETACH) -> bool:
    """Unmount; False if it was not mounted or is gone already (undo must be idempotent)."""
    if libc.umount2(str(target).encode(), flags) == 0:
        return True
    e = ctypes.get_errno()
    if e in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
        return False
    raise OSError(e, f"umount {target}: {os.strerror(e)}")


def unescape(field: str) -> str:
    """A mountinfo path field: the kernel writes space, tab, newline and backslash as \\ooo."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points() -> list[str]:
    """Every mount point in our mount namespace, in mountinfo's order (stacked ones repeat)."""
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            lines = f.read().decode(errors="surrogateescape").splitlines()
    except OSError:
        return []
    return [unescape(line.split()[4]) for line in lines if line]


def is_mountpoint(path: str) -> bool:
    return os.path.realpath(path) in mount_points()


def mounts_under(path: str | os.PathLike) -> list[str]:
    """Mount points at or below `path` (its real path), deepest first."""
    prefix = os.path.realpath(path).rstrip("/") or "/"
    under = prefix.rstrip("/") + "/"
    found = {mp for mp in mount_points() if mp == prefix or mp.startswith(under)}
    return sorted(found, key=lambda p: (-p.count("/"), p))


def unmount_all(path: str | os.PathLike) -> list[str]:
    """Lazily unmount everything at or under `path`; returns what is still mounted."""
    for _ in range(3):
        left = mounts_under(path)
        if not left:
            return []
        for mp in left:
            try:
                umount(mp)
            except OSError:
                pass   # reported by what stays mounted
    return mounts_under(path)
