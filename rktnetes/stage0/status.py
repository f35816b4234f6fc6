"""`rkt status` and `rkt list`: read-only views of pods, from their directories alone."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from rktnetes.errors import PodError, RktError
from rktnetes.pod.state import UNKNOWN, AppState
from rktnetes.pod.store import (EMBRYO, EXITED_GARBAGE, GARBAGE, PREPARE, PREPARED, RUN, Pod,
                                PodStore)

# Directory state -> what users see (rkt's words).
DISPLAY = {EMBRYO: "embryo", PREPARE: "preparing", PREPARED: "prepared", RUN: "running",
           EXITED_GARBAGE: "exited", GARBAGE: "exited garbage"}


@dataclass
class AppStatus:
    name: str
    image: str
    image_id: str
    state: str
    pid: int
    exit_code: int | None
    signal: int
    reason: str
    message: str
    restarts: int
    created_at: float
    started_at: float
    finished_at: float


@dataclass
class PodStatus:
    uuid: str
    state: str
    pid: int
    stage1: str
    created_at: float
    started_at: float
    finished_at: float
    apps: list[AppStatus] = field(default_factory=list)
    networks: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def exited(self) -> bool:
        return self.state in ("exited", "exited garbage")


def pod_status(pod: Pod, app_states: bool = True) -> PodStatus:
    """Everything known about a pod; a `run` pod whose lock is free shows as exited.
    app_states=False: the apps' states are not read (they show as unknown)."""
    try:
        m = pod.manifest()
    except FileNotFoundError:
        raise PodError(f"pod {pod.uuid} has no manifest (it is being created or removed)") from None
    except (OSError, ValueError) as e:
        raise PodError(f"pod {pod.uuid}: unreadable manifest: {e}") from None
    ps = pod.pod_state()
    state = DISPLAY.get(pod.state, pod.state)
    error = str(ps.get("error") or ps.get("setup_error") or "")
    if pod.state == RUN and not pod.is_locked():
        try:
            pod.refresh()
        except RktError:
            pass
        state = DISPLAY.get(pod.state, pod.state)
        if pod.state == RUN:
            state, error = "exited", error or "monitor died"
    apps = []
    for a in m.apps:
        s = pod.app_state(a.name) if app_states else AppState(a.name, UNKNOWN)
        apps.append(AppStatus(a.name, a.image_name, a.image_id, s.state, s.pid, s.exit_code,
                              s.signal, s.reason, s.message, s.restarts, s.created_at,
                              s.started_at, s.finished_at))
    nets = ps.get("networks") or [{"name": n.name} for n in m.networks]
    return PodStatus(uuid=pod.uuid, state=state,
                     pid=int(ps.get("pid") or ps.get("monitor_pid") or 0) if state == "running" else 0,
                     stage1=m.stage1, created_at=m.created_at,
                     started_at=float(ps.get("started_at") or 0),
                     finished_at=float(ps.get("finished_at") or 0),
                     apps=apps, networks=list(nets), error=error)


def list_pods(store: PodStore, app_states: bool = True) -> list[PodStatus]:
    """Every pod readable right now; pods moving or vanishing meanwhile are skipped.
    app_states=False spares a file per app where they are not shown (`rkt list`'s table)."""
    out = []
    seen = set()
    for pod in store.all():
        if pod.uuid in seen:
            continue
        try:
            out.append(pod_status(pod, app_states))
            seen.add(pod.uuid)
        except (RktError, OSError):
            try:
                pod.refresh()
                out.append(pod_status(pod, app_states))
                seen.add(pod.uuid)
            except (RktError, OSError):
                continue
    out.sort(key=lambda s: s.created_at)
    return out


def wait_exited(pod: Pod, timeout: float | None) -> PodStatus:
    """Block until the pod has exited (or `timeout` seconds pass)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            pod.refresh()
        except RktError:
            raise PodError(f"pod {pod.uuid} was removed while waiting") from None
        s = pod_status(pod)
        if s.exited:
            return s
        if deadline is not None and time.monotonic() >= deadline:
            raise PodError(f"pod {pod.uuid} still {s.state} after {timeout:g}s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)
