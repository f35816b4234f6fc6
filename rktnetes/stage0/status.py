"""`rkt status` and `rkt list`: read-only views of pods, from their directories alone."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from rktnetes.errors import PodError, RktError, UnreadableManifest
from rktnetes.lazylog import getLogger
from rktnetes.pod.state import RUNNING, UNKNOWN, AppState
from rktnetes.pod.store import (EMBRYO, EXITED_GARBAGE, GARBAGE, PREPARE, PREPARED, RUN, Pod,
                                PodStore)

# Directory state -> what users see (rkt's words). Every message naming a pod's state uses
# display_state: the directory names are internal.
DISPLAY = {EMBRYO: "embryo", PREPARE: "preparing", PREPARED: "prepared", RUN: "running",
           EXITED_GARBAGE: "exited", GARBAGE: "exited garbage"}


def display_state(state: str) -> str:
    """A pod's state as users see it (`rkt list`, `rkt status`, error messages)."""
    return DISPLAY.get(state, state)


def rfc3339(ts: float) -> str | None:
    """A Unix time as an RFC 3339 UTC string (microseconds); None for 0 (never)."""
    if not ts:
        return None
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds") \
        .replace("+00:00", "Z")


def with_rfc3339(d: dict[str, Any]) -> dict[str, Any]:
    """Next to each numeric `X_at` field (Unix seconds, kept for compatibility), `X`: the same
    time as an RFC 3339 string, or null for never. Nested dicts and lists too."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            v = with_rfc3339(v)
        elif isinstance(v, list):
            v = [with_rfc3339(x) if isinstance(x, dict) else x for x in v]
        out[k] = v
        if k.endswith("_at") and isinstance(v, (int, float)) and not isinstance(v, bool) \
                and k[:-3] not in d:
            out[k[:-3]] = rfc3339(v)
    return out


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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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
        return with_rfc3339(asdict(self))

    @property
    def exited(self) -> bool:
        return self.state in ("exited", "exited garbage")


def pod_status(pod: Pod, app_states: bool = True) -> PodStatus:
    """Everything known about a pod; a `run` pod whose lock is free shows as exited.
    app_states=False: the apps' states are not read (they show as unknown)."""
    m = pod.manifest_for_view()
    ps = pod.pod_state()
    state = display_state(pod.state)
    error = str(ps.get("error") or ps.get("setup_error") or "")
    orphaned = False
    if pod.state == RUN and not pod.is_locked():
        try:
            pod.refresh()
        except RktError:
            pass
        state = display_state(pod.state)
        if pod.state == RUN:
            orphaned = True
            state, error = "exited", error or (
                "monitor died; apps it had started may still run until `rkt stop` (or "
                "`rkt gc`) ends them and cleans up")
    apps = []
    for a in m.apps:
        s = pod.app_state(a.name) if app_states else AppState(a.name, UNKNOWN)
        if orphaned and s.state == RUNNING:
            s.state = UNKNOWN  # nobody watches it any more: as `rkt app status` says
        apps.append(AppStatus(a.name, a.image_name, a.image_id, s.state, s.pid, s.exit_code,
                              s.signal, s.reason, s.message, s.restarts, s.created_at,
                              s.started_at, s.finished_at))
    nets = ps.get("networks") or [{"name": n.name} for n in m.networks]
    started_at = float(ps.get("started_at") or 0)
    if app_states and apps and not m.sandbox and not any(a.started_at for a in apps):
        started_at = 0.0  # no app ever started (setup or start failures): not "started"
    return PodStatus(uuid=pod.uuid, state=state,
                     pid=int(ps.get("pid") or ps.get("monitor_pid") or 0) if state == "running" else 0,
                     stage1=m.stage1, created_at=m.created_at,
                     started_at=started_at,
                     finished_at=float(ps.get("finished_at") or 0),
                     apps=apps, networks=list(nets), error=error)


def list_pods(store: PodStore, app_states: bool = True) -> list[PodStatus]:
    """Every pod readable right now; pods moving or vanishing meanwhile are skipped, and so
    are pods whose manifest does not parse, with a warning (`rkt rm` still removes them).
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
            except UnreadableManifest as e:
                getLogger(__name__).warning("%s (not listed; `rkt rm` removes it)", e)
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


def not_runnable(pod: Pod) -> PodError:
    """Why a pod that is not `prepared` cannot be run (`rkt run-prepared`), or a prepared one
    whose lock another command holds."""
    try:
        pod.refresh()
    except RktError as e:
        return PodError(str(e))
    if pod.state == RUN:
        if pod.is_locked():
            return PodError(f"pod {pod.uuid} is running")
        return PodError(f"pod {pod.uuid} has already run (its monitor died: it is exited, "
                        "not prepared)")
    if pod.state in (EXITED_GARBAGE, GARBAGE):
        return PodError(f"pod {pod.uuid} has already run (it is {display_state(pod.state)}, "
                        "not prepared)")
    if pod.state in (EMBRYO, PREPARE):
        return PodError(f"pod {pod.uuid} is still being prepared")
    return PodError(f"pod {pod.uuid} is busy (another rkt command holds it); try again")
