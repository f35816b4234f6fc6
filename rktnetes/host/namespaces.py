"""Namespaces: unshare(2), setns(2), and bringing up a new network namespace's loopback."""

from __future__ import annotations

import os

from .libc import check, libc

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000


def unshare(flags: int) -> None:
    check(libc.unshare(flags), "unshare")


def setns(path: str, nstype: int = 0) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        check(libc.setns(fd, nstype), f"setns {path}")
    finally:
        os.close(fd)


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


def has_interface(netns_path: str, ifname: str) -> bool:
    """Whether the network namespace at `netns_path` has an interface `ifname`. Looked up from
    a short-lived thread that joins the namespace (setns of a netns is per thread), so the
    caller and the processes it starts stay in theirs."""
    import socket
    import threading

    found: list[bool] = []

    def look() -> None:
        try:
            setns(netns_path, CLONE_NEWNET)
            socket.if_nametoindex(ifname)
            found.append(True)
        except OSError:
            found.append(False)

    t = threading.Thread(target=look, name="netns-lookup")
    t.start()
    t.join()
    return bool(found and found[0])
