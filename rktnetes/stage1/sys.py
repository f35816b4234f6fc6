"""The few Linux syscalls Python 3.11 lacks (mount, umount2, unshare, setns, prctl), via ctypes.

Kept tiny and dependency-free: the per-pod monitor imports it, and so do forked children
right before they exec an app.
"""

from __future__ import annotations

import ctypes
import errno
import os

from rktnetes.host.procs import starttime  # noqa: F401 - re-exported for its callers

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19

MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def mount(source: str, target: str, fstype: str = "", flags: int = 0, data: str = "") -> None:
    _check(_libc.mount(source.encode(), str(target).encode(), fstype.encode() or None,
                       ctypes.c_ulong(flags), data.encode() or None), f"mount {target}")


def umount(target: str, flags: int = MNT_DETACH) -> bool:
    """Unmount; False if it was not mounted or is gone already (undo must be idempotent)."""
    if _libc.umount2(str(target).encode(), flags) == 0:
        return True
    e = ctypes.get_errno()
    if e in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
        return False
    raise OSError(e, f"umount {target}: {os.strerror(e)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(path: str, nstype: int = 0) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, nstype), f"setns {path}")
    finally:
        os.close(fd)


def prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), "prctl")


def set_child_subreaper() -> None:
    """Orphaned descendants (a container's init once `runc run --detach` exits) become our
    children, so the monitor can waitpid them for their exit status."""
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def loopback_up() -> None:
    """`ip link set lo up` in the current network namespace, with one ioctl."""
    import _socket  # not `socket`, which costs milliseconds more to import
    import fcntl
    import struct

    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
    finally:
        s.close()


def mounts_under(prefix: str) -> list[str]:
    """Mount points at or below `prefix` in our mount namespace, deepest first."""
    prefix = prefix.rstrip("/")
    out = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            mp = line.split()[4].decode()
            mp = mp.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
                   .replace("\\134", "\\")
            if mp == prefix or mp.startswith(prefix + "/"):
                out.append(mp)
    return sorted(set(out), key=lambda p: p.count("/"), reverse=True)
