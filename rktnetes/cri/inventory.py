"""Where the CRI's sandboxes and containers are: pods (and their apps) whose `origin` says
the CRI made them, found on disk. Nothing lives only in memory: a server started after a
`kill -9` finds everything again from the pod directories. An index of container id -> pod
saves a scan per call; a miss rescans (a pod made or removed behind our back).

Ids: a sandbox's is its pod's UUID; a container's is its app's name (32 hex digits, unique
on the node). A unique prefix of either is accepted wherever an id is, as containerd does.
"""

from __future__ import annotations

import threading
from contextlib import suppress
from dataclasses import dataclass

from rktnetes.config import Paths
from rktnetes.errors import AmbiguousError, NotFoundError, RktError
from rktnetes.pod.manifest import App, PodManifest
from rktnetes.pod.store import STATES, Pod, PodStore

# a pod still being prepared has no sandbox to show yet; one being removed no longer does
_VISIBLE = tuple(s for s in STATES if s not in ("embryo", "prepare", "garbage"))


def cri_of(origin: dict, kind: str) -> dict | None:
    d = origin.get("cri") if isinstance(origin, dict) else None
    return d if isinstance(d, dict) and d.get("kind") == kind else None


@dataclass
class Sandbox:
    pod: Pod
    manifest: PodManifest
    record: dict          # origin["cri"]: the config as given, the runtime handler


@dataclass
class Container:
    sandbox: Sandbox
    app: App
    record: dict

    @property
    def id(self) -> str:
        return self.app.name


class Inventory:
    def __init__(self, paths: Paths):
        self.paths = paths
        self.store = PodStore(paths.pods)
        self._mu = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._index: dict[str, str] = {}      # container id -> sandbox (pod) uuid

    # -- per-sandbox serialization, in this process (the pod's own locks guard the disk) --

    def lock(self, sandbox_id: str) -> threading.Lock:
        with self._mu:
            return self._locks.setdefault(sandbox_id, threading.Lock())

    def forget(self, sandbox_id: str) -> None:
        with self._mu:
            self._locks.pop(sandbox_id, None)
            for cid in [c for c, u in self._index.items() if u == sandbox_id]:
                del self._index[cid]

    # -- reading -------------------------------------------------------------------------

    def _load(self, pod: Pod) -> Sandbox | None:
        try:
            m = pod.manifest_for_view()
        except (RktError, OSError, ValueError):
            return None
        rec = cri_of(m.origin, "sandbox")
        return Sandbox(pod, m, rec) if rec is not None else None

    def sandboxes(self) -> list[Sandbox]:
        out = []
        for pod in self.store.all(_VISIBLE):
            sb = self._load(pod)
            if sb is not None:
                out.append(sb)
                self._note(sb)
        return out

    def _note(self, sb: Sandbox) -> None:
        with self._mu:
            for a in sb.manifest.apps:
                if cri_of(a.origin, "container") is not None:
                    self._index[a.name] = sb.pod.uuid

    def sandbox(self, sid: str) -> Sandbox:
        """The sandbox `sid` (an id or unique prefix) names; NotFoundError if none."""
        if not sid:
            raise NotFoundError("no sandbox id given")
        try:
            pod = self.store.find(sid)
        except (NotFoundError, AmbiguousError) as e:
            if isinstance(e, AmbiguousError):
                raise
            raise NotFoundError(f"sandbox {sid!r} not found") from None
        sb = self._load(pod)
        if sb is None:
            raise NotFoundError(f"sandbox {sid!r} not found (pod {pod.uuid} is not a CRI "
                                f"sandbox)")
        self._note(sb)
        return sb

    def containers(self, sandboxes: list[Sandbox] | None = None) -> list[Container]:
        out = []
        for sb in self.sandboxes() if sandboxes is None else sandboxes:
            for a in sb.manifest.apps:
                rec = cri_of(a.origin, "container")
                if rec is not None:
                    out.append(Container(sb, a, rec))
        return out

    def _match(self, cid: str) -> list[str]:
        with self._mu:
            return [c for c in self._index if c.startswith(cid)]

    def container(self, cid: str) -> Container:
        """The container `cid` (an id or unique prefix) names; NotFoundError if none."""
        if not cid:
            raise NotFoundError("no container id given")
        cid = cid.lower()
        for attempt in range(2):
            ids = self._match(cid)
            if len(ids) > 1:
                raise AmbiguousError(f"container id prefix {cid!r} matches {len(ids)} "
                                     f"containers")
            if ids:
                with self._mu:
                    uuid = self._index.get(ids[0])
                sb = None
                if uuid:
                    with suppress(NotFoundError):
                        sb = self.sandbox(uuid)
                app = sb.manifest.app(ids[0]) if sb else None
                if app is not None:
                    return Container(sb, app, cri_of(app.origin, "container"))
                with self._mu:
                    self._index.pop(ids[0], None)
            if attempt == 0:
                self.sandboxes()      # rescan: made or removed behind our back
        raise NotFoundError(f"container {cid!r} not found")
