"""Listening for the gRPC front ends (the API service, the CRI server): a --listen value
checked before gRPC sees it, a unix socket's directory and stale file handled, a TCP port in
use reported in one line."""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

import grpc

from rktnetes.errors import RktError, UsageError

RUN_DIR = Path("/run/rktnetes")   # the one socket directory a service may create itself
_MAX_SUN_PATH = 107                 # sockaddr_un.sun_path holds 108 bytes with the NUL
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")


@dataclass(frozen=True)
class Listen:
    """A parsed --listen: a unix socket path, or a TCP host (brackets stripped) and port."""
    unix: str = ""
    host: str = ""
    port: int = 0


def parse_listen(listen: str) -> Listen:
    """Check --listen before gRPC sees it: gRPC would take port 99999 modulo 65536 and
    report a bad address only through its own log."""
    if listen.startswith("unix:"):
        path = listen[len("unix://"):] if listen.startswith("unix://") else listen[len("unix:"):]
        if not path.startswith("/"):
            raise UsageError(f"--listen={listen}: a unix socket needs an absolute path")
        if len(os.fsencode(path)) > _MAX_SUN_PATH:
            raise UsageError(f"--listen={listen}: socket path longer than {_MAX_SUN_PATH} bytes")
        return Listen(unix=path)
    usage = f"--listen={listen}: expected HOST:PORT, [IPV6]:PORT or unix:///PATH"
    host, sep, port = listen.rpartition(":")
    if not sep or not host:
        raise UsageError(usage)
    if not re.fullmatch(r"[0-9]{1,5}", port) or int(port) > 65535:
        raise UsageError(f"--listen={listen}: port {port!r} is not a number from 0 to 65535")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise UsageError(f"--listen={listen}: {host[1:-1]!r} is not an IPv6 address") from None
        return Listen(host=host[1:-1], port=int(port))
    if ":" in host:
        raise UsageError(f"{usage} (an IPv6 address goes in brackets)")
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise UsageError(f"--listen={listen}: {host!r} is not an IPv4 address") from None
    elif not _HOSTNAME.fullmatch(host):
        raise UsageError(f"--listen={listen}: {host!r} is not a host name or address")
    return Listen(host=host, port=int(port))


def can_listen(where: Listen, listen: str) -> None:
    """Bind every address the host resolves to, as gRPC will, and let go: a port in use is
    then one clear line instead of gRPC's C log and a generic failure."""
    try:
        infos = socket.getaddrinfo(where.host, where.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise RktError(f"cannot listen on {listen}: cannot resolve {where.host}: "
                       f"{e.strerror}") from None
    for family, kind, proto, _, addr in infos:
        try:
            with socket.socket(family, kind, proto) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as gRPC does
                s.bind(addr)
        except OSError as e:
            reason = {errno.EADDRINUSE: "address already in use",
                      errno.EADDRNOTAVAIL: "address not available on this host",
                      errno.EACCES: "permission denied"}.get(e.errno, e.strerror or str(e))
            raise RktError(f"cannot listen on {listen}: {reason}") from None


def bind(server: grpc.Server, listen: str, mode: int | None = None) -> str:
    """Bind `listen` (unix:///PATH or HOST:PORT); the address clients dial. mode: a unix
    socket's permissions (set once bound, before the server starts)."""
    where = parse_listen(listen)
    if where.unix:
        clear_stale_socket(Path(where.unix))
        target, shown = f"unix://{where.unix}", f"unix://{where.unix}"
    else:
        can_listen(where, listen)
        host = f"[{where.host}]" if ":" in where.host else where.host
        target, shown = f"{host}:{where.port}", ""
    try:
        bound = server.add_insecure_port(target)
    except RuntimeError:
        bound = 0
    if not bound:
        # the checks above passed, so something took the address meanwhile (or gRPC disagrees)
        raise RktError(f"cannot listen on {listen}: gRPC could not bind it (address in use?)")
    if where.unix and mode is not None:
        os.chmod(where.unix, mode)
    return shown or f"{host}:{bound}"


def clear_stale_socket(path: Path) -> None:
    """A socket file left by a killed service would make bind fail; one still answered is not
    stale, and anything that is not a socket is not ours to remove. The socket's directory must
    exist, except /run/rktnetes itself (on tmpfs, gone after a reboot), which is created."""
    parent = path.parent
    if parent == RUN_DIR:
        try:
            from rktnetes.fsutil import ensure_dir

            # searchable: a socket's own mode says who connects; not parents: /run must exist
            ensure_dir(parent, 0o711, parents=False)
        except OSError as e:
            raise RktError(f"cannot create {parent}: {e.strerror or e}") from None
    if not parent.is_dir():
        if os.path.lexists(parent):
            raise RktError(f"cannot listen on unix://{path}: {parent} is not a directory")
        raise RktError(f"cannot listen on unix://{path}: parent directory {parent} does not exist")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise RktError(f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except ConnectionRefusedError:
            path.unlink()
            return
        except OSError:
            return
    raise RktError(f"another service is listening on {path}")
