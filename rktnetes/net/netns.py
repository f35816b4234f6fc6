"""Named network namespaces: a namespace kept alive by a bind mount of its nsfs file.

Like `ip netns add`, but in our own directory (/run/rktnetes/netns), so no process has to live
for the namespace to exist and cleanup needs only the path. As `ip netns` does, the directory is
made a shared mount of itself: a mount namespace created later (a container's) gets the netns
mounts as peers or slaves, so our umount reaches its copies too and the namespace really dies.
"""

from __future__ import annotations

import os
from pathlib import Path

from rktnetes.errors import NetworkError
from rktnetes.fsutil import FileLock, ensure_dir
from rktnetes.host import mounts

NETNS_DIR = Path("/run/rktnetes/netns")


def netns_path(uuid: str, base: Path = NETNS_DIR) -> Path:
    return base / uuid


def _prepare_dir(base: Path) -> None:
    """Make `base` a shared mount of itself, once (under a lock: concurrent first pods race)."""
    # /run/rktnetes 0711 (its sockets are reachable by name; their own modes decide), the
    # namespaces' directory 0700: only root joins a pod's network namespace.
    ensure_dir(base.parent, 0o711)
    ensure_dir(base, 0o700)
    if mounts.is_mountpoint(str(base)):
        return
    with FileLock(base.parent / ".netns.lock").held():
        if mounts.is_mountpoint(str(base)):
            return
        try:
            mounts.mount(str(base), str(base), "", mounts.MS_BIND | mounts.MS_REC)
            mounts.mount("none", str(base), "", mounts.MS_SHARED | mounts.MS_REC)
        except OSError as e:
            raise NetworkError(f"cannot prepare {base} for network namespaces: "
                               f"{e.strerror}") from None


def is_netns(path: Path) -> bool:
    """True when `path` is a live network namespace mount (not a leftover empty file)."""
    try:
        return os.path.ismount(path) and os.stat(path).st_dev != os.stat(path.parent).st_dev
    except OSError:
        return False


def create(path: Path) -> None:
    """A new, empty network namespace (only `lo`, up) bind-mounted at `path`."""
    _prepare_dir(path.parent)
    if is_netns(path):
        raise NetworkError(f"network namespace {path} already exists")
    path.touch(0o444)
    # Direct syscalls in a forked child instead of `unshare --net=PATH true` + `nsenter ...
    # ip link set lo up` (two execs, ~10-20 ms each on the hot path of every pod): the child
    # unshares its network namespace, bind-mounts it at `path` (same mount namespace as ours,
    # so the mount is visible here) and brings `lo` up with an ioctl in it, then exits; the
    # bind mount keeps the namespace alive. Errors come back through a pipe as "errno text".
    import _socket, fcntl, struct  # noqa: E401,F401 - loopback_up's, loaded before the fork
    from rktnetes.host import namespaces as ns

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no Python-level cleanup, no return into the caller's code
        code = 0
        try:
            os.close(r)
            ns.unshare(ns.CLONE_NEWNET)
            mounts.mount("/proc/self/ns/net", str(path), "", mounts.MS_BIND)
            ns.loopback_up()
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            try:
                os.write(w, str(e).encode()[:1000])
            except BaseException:  # noqa: BLE001
                pass
            code = 1
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        err = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        remove(path)
        raise NetworkError(f"cannot create network namespace {path}: "
                           f"{err or os.waitstatus_to_exitcode(status)}")


def remove(path: Path) -> None:
    """Unmount and unlink; harmless when either is already done (for cleanup after crashes)."""
    try:
        while mounts.umount(str(path)):
            pass   # stacked mounts (a crash between two creates): until none is left
    except OSError as e:
        raise NetworkError(f"cannot unmount network namespace {path}: "
                           f"{os.strerror(e.errno)}") from None
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise NetworkError(f"cannot remove network namespace {path}: {e.strerror}") from None
