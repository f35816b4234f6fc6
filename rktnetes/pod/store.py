"""Pod directories: a pod is `pods/<state>/<uuid>/`, its state the name of the parent directory.

As in rkt, a state change is one rename under the pod's lock, and the lock is an flock on the
pod directory itself: it follows the directory through renames and vanishes with its holder,
so "running and lock free" means the monitor is gone (crash) and the pod can be cleaned up.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rktnetes.errors import (AmbiguousError, Busy, NotFoundError, PodError, RktError,
                             UnreadableManifest, UsageError)
from rktnetes.fsutil import FileLock, atomic_write_json, read_json

from . import protocol
from .manifest import PodManifest
from .protocol import (APPS_LOCK, EMBRYO, EXITED_GARBAGE, GARBAGE, PREPARE,  # noqa: F401
                       PREPARED, RUN, STATES)
from .state import AppState, PodRuntime

CREATING_PREFIX = ".creating-"
CREATING_LOCK = ".creating.lock"
# Mutable pods: the running pod's lock is its monitor's for its whole life, so changes to its set
# of apps (pod.json's app list, per-app requests) are serialized by an flock on this file instead,
# taken by `rkt app ...` (exclusive) and by the monitor while it acts on them (shared).


def new_uuid() -> str:
    """A random (version 4) UUID string, as str(uuid.uuid4()): the `uuid` module imports
    `platform` (~2 ms of every `rkt run`'s start) for what is 16 random bytes and two masks."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class PodLock:
    """An flock on the pod directory's file descriptor."""

    def __init__(self, path: Path):
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def acquire(self, shared: bool = False, blocking: bool = True) -> bool:
        op = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(self.fd, op)
            return True
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise

    def release(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def inheritable(self) -> int:
        """Hand the locked descriptor to a child (the monitor) so it keeps the lock after we exit."""
        os.set_inheritable(self.fd, True)
        return self.fd


class AppsLock:
    """An flock on a pod's apps.lock; a context manager holding it exclusively."""

    def __init__(self, fd: int):
        self.fd = fd

    def acquire(self, shared: bool = False) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "AppsLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Pod:
    """A handle on one pod directory. `path` is where it was when last seen."""

    root: Path          # the pods/ directory
    uuid: str
    state: str

    def _where(self) -> tuple[str, Path, str]:
        """(state, directory, directory as a string), memoized while the state stays (listing
        1,000 pods asks for it several times each)."""
        cached = self.__dict__.get("_memo")
        if cached is None or cached[0] != self.state:
            path = self.root / self.state / self.uuid
            cached = self.__dict__["_memo"] = (self.state, path, str(path))
        return cached

    @property
    def path(self) -> Path:
        return self._where()[1]

    def _file(self, *parts: str) -> str:
        """A file in the pod directory, as a string: the readers below run thousands of times
        in a listing, where building Path objects costs more than reading the files."""
        return os.path.join(self._where()[2], *parts)

    def refresh(self) -> "Pod":
        """Find the pod again (another process may have moved it)."""
        for st in STATES:
            if (self.root / st / self.uuid).is_dir():
                self.state = st
                return self
        raise NotFoundError(f"pod {self.uuid} no longer exists")

    def lock(self) -> PodLock:
        for _ in range(5):
            try:
                return PodLock(self.path)
            except FileNotFoundError:
                self.refresh()
        raise Busy(f"pod {self.uuid} keeps moving; try again")

    def is_locked(self) -> bool:
        """True while some process (the monitor, a stage0 verb) holds the pod's lock."""
        try:
            lk = PodLock(self.path)
        except FileNotFoundError:
            return False
        try:
            if lk.acquire(shared=True, blocking=False):
                return False
            return True
        finally:
            lk.close()

    def apps_lock(self) -> "AppsLock":
        """The lock on the pod's set of apps (see APPS_LOCK), not yet acquired. The file moves
        with the pod, so a holder keeps it across a rename of the pod directory."""
        for _ in range(5):
            try:
                return AppsLock(os.open(self.path / APPS_LOCK,
                                        os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644))
            except FileNotFoundError:  # the pod moved (never re-create its old directory)
                self.refresh()
        raise Busy(f"pod {self.uuid} keeps moving; try again")

    def move(self, new_state: str) -> None:
        """Rename into another state directory. The caller holds the pod's lock."""
        (self.root / new_state).mkdir(parents=True, exist_ok=True)
        os.rename(self.path, protocol.state_path(str(self.root), new_state, self.uuid))
        self.state = new_state

    # -- files inside the pod ---------------------------------------------------------------

    def manifest_for_view(self) -> PodManifest:
        """The manifest, for commands that show the pod: any failure is one PodError line."""
        try:
            return self.manifest()
        except FileNotFoundError:
            raise PodError(f"pod {self.uuid} has no manifest (it is being created or "
                           f"removed)") from None
        except OSError as e:  # (one that does not parse raises UnreadableManifest)
            raise PodError(f"pod {self.uuid}: unreadable manifest: {e}") from None

    def manifest(self) -> PodManifest:
        """FileNotFoundError before it is written; UnreadableManifest if it does not parse."""
        try:
            return PodManifest.from_json(read_json(self._file(protocol.MANIFEST)))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise UnreadableManifest(f"pod {self.uuid}: unreadable manifest: {e}") from None

    def save_manifest(self, m: PodManifest) -> None:
        atomic_write_json(self.path / protocol.MANIFEST, m.to_json())

    def app_dir(self, name: str) -> Path:
        return self.path / protocol.APPS / name

    def watch(self, *apps: str):
        """A DirWatch that wakes on a change to the pod's (or these apps') state files,
        requests, or its move between state directories: for waiting on the monitor."""
        from rktnetes.host.dirwatch import DirWatch

        return DirWatch([self.path, self.root / self.state, self.root / EXITED_GARBAGE,
                         *(self.app_dir(a) for a in apps)])

    def app_state(self, name: str) -> AppState:
        try:
            return AppState.from_json(read_json(self._file(protocol.APPS, name,
                                                           protocol.APP_STATE)))
        except (FileNotFoundError, ValueError):
            # ValueError: empty or torn, as a crash of the machine can leave a state file the
            # monitor had not fsync'd (only exit records are): known as never started
            return AppState(name=name)

    def save_app_state(self, st: AppState) -> None:
        self.app_dir(st.name).mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.app_dir(st.name) / protocol.APP_STATE, st.to_json())

    def log_path(self, name: str) -> Path:
        """The app's CRI log: where its manifest entry says (kubelet's log path), or its
        directory's own."""
        try:
            app = self.manifest().app(name)
        except (OSError, ValueError, RktError):
            app = None
        if app is not None and app.log_path:
            return Path(app.log_path)
        return self.app_dir(name) / protocol.APP_LOG

    def pod_state(self) -> PodRuntime:
        """Pod-wide runtime facts the monitor writes: pid, started/finished times, networks."""
        try:
            return PodRuntime.from_json(read_json(self._file(protocol.STATE)))
        except (FileNotFoundError, NotADirectoryError, ValueError):  # torn by a machine crash
            return PodRuntime()

    def save_pod_state(self, ps: PodRuntime) -> None:
        atomic_write_json(self.path / protocol.STATE, ps.to_json())


class PodStore:
    def __init__(self, root: Path):
        self.root = root

    def create(self, manifest: PodManifest) -> tuple[Pod, PodLock]:
        """A new pod in `embryo`, locked by the caller; the manifest is written inside."""
        manifest.uuid = manifest.uuid or new_uuid()
        (self.root / EMBRYO).mkdir(parents=True, exist_ok=True)
        pod = Pod(self.root, manifest.uuid, EMBRYO)
        # Built under a hidden name and renamed in locked: `rkt gc` removes unlocked embryos,
        # and must never see one between its mkdir and its flock.
        # The shared creation lock covers the gap between mkdir and flock: gc sweeps unlocked
        # `.creating-*` leftovers only while it holds that lock exclusively.
        with self.creation_lock().held(shared=True):
            tmp = self.root / EMBRYO / f"{CREATING_PREFIX}{manifest.uuid}"
            os.mkdir(tmp, 0o711)
            lk = PodLock(tmp)
            lk.acquire()
        atomic_write_json(tmp / protocol.MANIFEST, manifest.to_json())
        os.rename(tmp, pod.path)
        return pod, lk

    def creation_lock(self) -> FileLock:
        return FileLock(self.root / CREATING_LOCK)

    def all(self, states: tuple[str, ...] = STATES) -> Iterator[Pod]:
        for st in states:
            d = self.root / st
            try:
                names = os.listdir(d)
            except FileNotFoundError:
                continue
            for name in names:
                if not name.startswith("."):
                    yield Pod(self.root, name, st)

    def find(self, prefix: str) -> Pod:
        """A pod by full UUID or unique prefix (UUIDs are hex: either case matches)."""
        prefix = prefix.strip()
        if not prefix:
            raise UsageError("empty pod UUID")
        want = prefix.lower()
        matches = {p.uuid: p for p in self.all() if p.uuid.startswith(want)}
        if not matches:
            raise NotFoundError(f"no pod matches {prefix!r}")
        if len(matches) > 1:
            shown = sorted(u[:8] for u in matches)
            more = f", ... ({len(shown) - 5} more)" if len(shown) > 5 else ""
            raise AmbiguousError(f"pod UUID prefix {prefix!r} matches {len(matches)} pods: "
                                 f"{', '.join(shown[:5])}{more}")
        return next(iter(matches.values()))
