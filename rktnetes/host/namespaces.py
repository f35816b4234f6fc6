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


def in_netns(netns_path: str, fn):
    """fn() called in the network namespace at `netns_path`, from a short-lived thread that
    joins it (setns of a netns is per thread), so the caller and the processes it starts stay
    in theirs. Sockets fn creates stay in that namespace wherever they are used afterwards.
    Its result, or its exception raised here."""
    import threading

    out: list = []

    def run() -> None:
        try:
            if netns_path:
                setns(netns_path, CLONE_NEWNET)
            out.append((True, fn()))
        except BaseException as e:   # handed to the caller's thread
            out.append((False, e))

    t = threading.Thread(target=run, name="in-netns")
    t.start()
    t.join()
    ok, value = out[0]
    if not ok:
        raise value
    return value


def has_interface(netns_path: str, ifname: str) -> bool:
    """Whether the network namespace at `netns_path` has an interface `ifname`."""
    import socket

    try:
        return bool(in_netns(netns_path, lambda: socket.if_nametoindex(ifname)))
    except OSError:
        return False


def connect_tcp(netns_path: str, port: int, timeout: float = 10.0):
    """A TCP connection to `port` on the loopback of the network namespace at `netns_path`
    ("": ours), as kubelet's port forwarding reaches a pod's port: IPv4 first, then IPv6."""
    import socket

    def dial():
        err: OSError | None = None
        for host in ("127.0.0.1", "::1"):
            try:
                return socket.create_connection((host, port), timeout)
            except OSError as e:
                err = err or e
        raise err

    return in_netns(netns_path, dial)
