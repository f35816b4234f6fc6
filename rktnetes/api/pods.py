"""Pods as the API sees them: read from pods/<state>/<uuid>/, cached until the files change.

Reading only: the lock is probed with a shared, non-blocking flock (states `prepare` and `run`
only), nothing is moved or written. A pod can vanish or move between any two reads (`rkt gc`,
a pod starting): such a pod is skipped for this answer. A pod whose files are malformed is
skipped and logged once per version of its files, never raised.

The cache key is the pod directory's state and mtime (every pod.json/state.json write is a
rename into it, which changes its mtime), its lock for `prepare`/`run`, and the mtime of each
app directory (app state.json is renamed into apps/<name>/) except for pods already marked
for collection, whose app states are final. An unchanged exited pod costs one stat.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from rktnetes.pod.manifest import PodManifest
from rktnetes.pod.state import AppState
from rktnetes.pod.state import RUNNING
from rktnetes.pod.store import EMBRYO, EXITED_GARBAGE, GARBAGE, PREPARE, RUN, STATES, Pod
from rktnetes.stage0.status import app_view
from rktnetes.proto.v1alpha import api_pb2 as pb

from . import states, wire
from .filters import PodFacts
from .names import split_reference

log = logging.getLogger(__name__)
# Pods marked for collection: every writer (monitor, `rkt stop`, reaping) finishes the app
# states before the rename into these, so only the pod directory itself can still change
# (`rkt gc` writes gc-marked into it), and one stat validates the cache.
SETTLED = frozenset((EXITED_GARBAGE, GARBAGE))
PODS_FIELD = pb.ListPodsResponse.DESCRIPTOR.fields_by_name["pods"].number


@dataclass(frozen=True)
class AppView:
    name: str
    image_id: str
    image_name: str
    annotations: dict[str, str]
    state: AppState


@dataclass(frozen=True)
class NetworkView:
    name: str
    ipv4: str = ""
    ipv6: str = ""


@dataclass
class PodView(wire.CachedMessage):
    """Everything the API reports about one pod, read at one moment."""

    uuid: str
    dir_state: str                     # the pods/<state>/ directory it was found in
    state: int                         # v1alpha.PodState
    path: Path
    manifest: PodManifest | None       # None for embryo/prepare pods not yet written
    manifest_raw: bytes = b""
    apps: list[AppView] = field(default_factory=list)
    pid: int = -1
    networks: list[NetworkView] = field(default_factory=list)
    cgroup: str = ""
    created_at_ns: int = 0
    started_at_ns: int = 0
    finished_at_ns: int = 0
    gc_marked_at_ns: int = 0
    unsupervised: bool = False         # running, its monitor gone (never cached: see get)
    _memo: dict = field(default_factory=dict, repr=False)
    LIST_FIELD = PODS_FIELD

    @property
    def running(self) -> bool:
        return self.state == pb.POD_STATE_RUNNING

    def facts(self) -> PodFacts:
        f = self._memo.get("facts")
        if f is None:
            f = self._memo["facts"] = self._facts()
        return f

    def _facts(self) -> PodFacts:
        m = self.manifest
        return PodFacts(
            id=self.uuid, state=self.state,
            app_names=frozenset(a.name for a in self.apps),
            image_ids=frozenset(a.image_id for a in self.apps),
            network_names=frozenset(n.name for n in self.networks),
            annotations=dict(m.annotations) if m else {}, cgroup=self.cgroup)

    def build(self, detail: bool) -> pb.Pod:
        return _to_message(self, detail)


def _ns(t) -> int:
    """Seconds (as the runtime records them) to nanoseconds; junk counts as unknown."""
    try:
        return int(float(t) * 1e9) if t else 0
    except (TypeError, ValueError):
        return 0


def _kvs(d: dict[str, str]) -> list[pb.KeyValue]:
    return [pb.KeyValue(Key=k, value=str(v)) for k, v in sorted(d.items())]


def _to_message(v: PodView, detail: bool) -> pb.Pod:
    msg = pb.Pod(id=v.uuid, state=v.state, pid=v.pid)
    if v.manifest is None:        # as in rkt: for pods still being made, only id and state
        return msg
    msg.created_at = v.created_at_ns
    msg.started_at = v.started_at_ns
    msg.gc_marked_at = v.gc_marked_at_ns
    msg.cgroup = v.cgroup
    msg.annotations.extend(_kvs(v.manifest.annotations))
    msg.networks.extend(pb.Network(name=n.name, ipv4=n.ipv4, ipv6=n.ipv6) for n in v.networks)
    for a in v.apps:
        app = msg.apps.add(name=a.name)
        app.annotations.extend(_kvs(a.annotations))
        app.image.id = a.image_id
        if detail:
            app.image.name, app.image.version = split_reference(a.image_name)
            app.state = states.app_state(a.state.state, a.state.exit_code, v.running)
            if app.state == pb.APP_STATE_EXITED:
                app.exit_code = int(a.state.exit_code or 0)
    if detail:
        msg.manifest = v.manifest_raw
    return msg


class MalformedPod(Exception):
    """A pod directory whose files cannot be understood."""


def _read_json_file(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise MalformedPod(f"{path.name}: {e}") from None
    if not isinstance(doc, dict):
        raise MalformedPod(f"{path.name}: not a JSON object")
    return doc, raw


def _networks(raw) -> list[NetworkView]:
    """The monitor's record of attached networks, tolerant of how an entry is spelled."""
    out = []
    for n in raw if isinstance(raw, list) else []:
        if not isinstance(n, dict):
            continue
        ip = str(n.get("ipv4") or n.get("ip") or "").split("/")[0]
        out.append(NetworkView(str(n.get("name") or n.get("network") or ""), ip,
                               str(n.get("ipv6") or "").split("/")[0]))
    return out


def probe_lock(root: Path, uuid: str, dir_state: str) -> bool:
    """Whether the pod's lock is held, for the states whose meaning depends on it."""
    return states.needs_lock_probe(dir_state) and Pod(root, uuid, dir_state).is_locked()


def read_pod(root: Path, uuid: str, dir_state: str, st: os.stat_result | None = None,
             locked: bool | None = None) -> PodView:
    """Read one pod. Raises FileNotFoundError if it is gone, MalformedPod if unreadable."""
    pod = Pod(root, uuid, dir_state)
    path = pod.path
    st = st or os.stat(path)
    if locked is None:
        locked = probe_lock(root, uuid, dir_state)
    api_state = states.pod_state(dir_state, locked)
    view = PodView(uuid, dir_state, api_state, path, None)
    if dir_state in (EMBRYO, PREPARE):
        return view             # as rkt: pods still being made report only id and state
    try:
        doc, raw = _read_json_file(path / "pod.json")
    except FileNotFoundError:
        if path.is_dir():       # from `prepared` on, stage0 has written the manifest
            raise MalformedPod("pod.json is missing") from None
        raise
    try:
        m = PodManifest.from_json(doc)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise MalformedPod(f"pod.json: {e}") from None
    view.manifest, view.manifest_raw = m, raw
    ps = pod.pod_state()          # typed and lenient: a torn file reads as no facts
    # the view `rkt status` shows too (stage0.status): an app of a pod whose monitor died is
    # running while its process is, and so is the pod (unsupervised)
    orphaned = dir_state == RUN and not locked
    for a in m.apps:
        try:  # a torn file reads as a default state (Pod.app_state), as in `rkt list`
            app_st = pod.app_state(a.name)
        except (ValueError, TypeError) as e:  # a document of the wrong shape
            raise MalformedPod(f"apps/{a.name}/state.json: {e}") from None
        shown = app_view(a, app_st, orphaned)
        if orphaned:
            app_st = AppState(a.name, shown.state, pid=shown.pid, exit_code=shown.exit_code,
                              signal=shown.signal, reason=shown.reason, message=shown.message,
                              started_at=app_st.started_at, finished_at=app_st.finished_at)
        view.apps.append(AppView(a.name, a.image_id, a.image_name, dict(a.annotations), app_st))
    if orphaned and any(v.state.state == RUNNING for v in view.apps):
        view.state = api_state = pb.POD_STATE_RUNNING
        view.unsupervised = True
    if dir_state in (EXITED_GARBAGE, GARBAGE) or api_state == pb.POD_STATE_RUNNING or ps.started_at:
        view.pid = ps.monitor_pid or -1
    if api_state == pb.POD_STATE_RUNNING:     # rkt reports networks of running pods only
        view.networks = _networks(ps.networks)
    view.cgroup = ps.cgroup if api_state == pb.POD_STATE_RUNNING else ""
    view.created_at_ns = _ns(m.created_at)
    view.started_at_ns = _ns(ps.started_at)
    view.finished_at_ns = _ns(ps.finished_at)
    if dir_state in (EXITED_GARBAGE, GARBAGE):
        view.gc_marked_at_ns = _gc_marked_at(path, st)
    return view


def _gc_marked_at(path: Path, st: os.stat_result) -> int:
    """When `rkt gc` marked the pod (it records that in `gc-marked`); otherwise the time of
    the rename into the garbage state, which set the directory's ctime."""
    try:
        return _ns(json.loads((path / "gc-marked").read_bytes()).get("at")) or st.st_ctime_ns
    except (OSError, ValueError, AttributeError):
        return st.st_ctime_ns


def _app_key(path: str, names: list[str]) -> tuple:
    out = []
    for n in names:
        try:
            out.append(os.stat(f"{path}/apps/{n}").st_mtime_ns)
        except FileNotFoundError:
            out.append(0)
    return tuple(out)


class PodReader:
    """Lists and reads pods, re-reading a pod only when its files changed."""

    def __init__(self, root: Path):
        self.root = root
        self._root = str(root)
        self._cache: dict[str, tuple[tuple, PodView]] = {}
        self._bad: dict[str, tuple] = {}    # uuid -> key of a version already logged
        self._lock = threading.Lock()       # gRPC workers and the event watcher share it

    def locate(self) -> Iterator[tuple[str, str]]:
        """(uuid, dir_state) of every pod directory, in state order."""
        for st in STATES:
            try:
                names = os.listdir(self.root / st)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for name in names:
                if name[0] != ".":
                    yield name, st

    def get(self, uuid: str, dir_state: str) -> PodView | None:
        """The pod, from cache if its files are unchanged; None if gone or malformed."""
        path = f"{self._root}/{dir_state}/{uuid}"     # str, not Path: this loop is hot
        try:
            st = os.stat(path)
            locked = probe_lock(self.root, uuid, dir_state)
        except (FileNotFoundError, NotADirectoryError):
            return None
        cached = self._cache.get(uuid)
        settled = dir_state in SETTLED
        if settled:
            key: tuple = (dir_state, st.st_mtime_ns)
        else:
            names = [a.name for a in cached[1].apps] if cached else []
            key = (dir_state, locked, st.st_mtime_ns, _app_key(path, names))
        if cached and cached[0] == key:
            return cached[1]
        if self._bad.get(uuid) == key:
            return None
        try:
            view = read_pod(self.root, uuid, dir_state, st, locked)
        except (FileNotFoundError, NotADirectoryError):
            return None                 # moved or removed while we read it: not an error
        except (MalformedPod, OSError) as e:
            if os.path.isdir(path):     # still there, so really malformed rather than racing
                with self._lock:
                    self._bad[uuid] = key
                log.warning("skipping malformed pod %s (%s): %s", uuid, dir_state, e)
            return None
        if not settled:
            key = (dir_state, locked, st.st_mtime_ns, _app_key(path, [a.name for a in view.apps]))
        if dir_state == RUN and not locked:
            return view                 # its processes may end without a file changing
        with self._lock:
            self._bad.pop(uuid, None)
            self._cache[uuid] = (key, view)
        return view

    def all(self) -> list[PodView]:
        seen: set[str] = set()
        out = []
        for uuid, dir_state in self.locate():
            if uuid in seen:            # caught mid-rename in two listings: keep the first
                continue
            seen.add(uuid)
            v = self.get(uuid, dir_state)
            if v is not None:
                out.append(v)
        with self._lock:              # forget pods that are gone, so the cache stays bounded
            for gone in self._cache.keys() - seen:
                self._cache.pop(gone, None)
            for gone in self._bad.keys() - seen:
                self._bad.pop(gone, None)
        return out

    def find(self, prefix: str) -> list[PodView]:
        """Pods whose UUID is `prefix` exactly, else those it is a prefix of."""
        located = [(u, s) for u, s in self.locate() if u.startswith(prefix)]
        exact = [(u, s) for u, s in located if u == prefix]
        out = []
        for u, s in exact or located:
            v = self.get(u, s)
            if v is not None and all(o.uuid != v.uuid for o in out):
                out.append(v)
        return out
