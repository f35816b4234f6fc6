"""`rkt status` and `rkt list`: read-only views of pods, from their directories alone."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from rktnetes.errors import Busy, PodError, RktError, TimedOut, UnreadableManifest
from rktnetes.lazylog import getLogger
from rktnetes.pod.state import EXITED, RUNNING, UNKNOWN, AppState
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
    supervised: bool = True     # False: running, but its monitor is gone (see UNSUPERVISED)

    def to_json(self) -> dict[str, Any]:
        return with_rfc3339(asdict(self))

    @property
    def exited(self) -> bool:
        return self.state in ("exited", "exited garbage")

    @property
    def shown_state(self) -> str:
        """The state as the tables show it: `running, unsupervised` for a pod whose monitor
        died while its apps go on."""
        return self.state if self.supervised else f"{self.state}, unsupervised"


UNSUPERVISED = ("its monitor died; its apps still run, unsupervised: `rkt stop {uuid}` "
                "stops them (or `rkt gc` kills them) and cleans up")
MONITOR_GONE = ("monitor died; apps it had started may still run until `rkt stop` (or "
                "`rkt gc`) ends them and cleans up")


def app_view(a, s: AppState, orphaned: bool) -> AppStatus:
    """One app's status; `orphaned`: its pod is in `run` with no monitor, so its record alone
    says nothing: a recorded running process is checked (pid and start time) and shows as
    running while it is, exited (status unknown) once it is not."""
    state, msg, code, sig = s.state, s.message, s.exit_code, s.signal
    if orphaned and s.state == RUNNING:
        if s.process_alive():
            msg = msg or "unsupervised: its pod's monitor died"
        elif s.stop_signal and s.stop_fatal:   # as `rkt stop` will record it (stop.reap_dead)
            state, code, sig = EXITED, 128 + s.stop_signal, s.stop_signal
            msg = "ended by its stop signal after its pod's monitor died"
        elif s.starttime:
            state, msg = EXITED, "exited unsupervised: its exit status is unknown"
        else:
            state, msg = UNKNOWN, msg or "the pod's monitor is gone"   # an older record
    return AppStatus(a.name, a.image_name, a.image_id, state, s.pid if state == RUNNING else 0,
                     code, sig, s.reason, msg, s.restarts, s.created_at, s.started_at,
                     s.finished_at)


def pod_status(pod: Pod, app_states: bool = True) -> PodStatus:
    """Everything known about a pod; a `run` pod whose lock is free shows as exited.
    app_states=False: the apps' states are not read (they show as unknown)."""
    m = pod.manifest_for_view()
    ps = pod.pod_state()
    state = display_state(pod.state)
    error = ps.error or ps.setup_error
    orphaned = False
    if pod.state == RUN and not pod.is_locked():
        try:
            pod.refresh()
        except RktError:
            pass
        state = display_state(pod.state)
        orphaned = pod.state == RUN
    apps = []
    for a in m.apps:
        s = pod.app_state(a.name) if app_states or orphaned else AppState(a.name, UNKNOWN)
        apps.append(app_view(a, s, orphaned))
    supervised = True
    if orphaned:
        if any(a.state == RUNNING for a in apps):
            supervised, error = False, UNSUPERVISED.format(uuid=pod.uuid)
        else:
            state, error = "exited", error or MONITOR_GONE
    nets = ps.networks or [{"name": n.name} for n in m.networks]
    started_at = ps.started_at
    if app_states and apps and not m.sandbox and not any(a.started_at for a in apps):
        started_at = 0.0  # no app ever started (setup or start failures): not "started"
    return PodStatus(uuid=pod.uuid, state=state,
                     pid=ps.monitor_pid
                     if state == "running" and supervised else 0,
                     stage1=m.stage1, created_at=m.created_at,
                     started_at=started_at,
                     finished_at=ps.finished_at,
                     apps=apps, networks=list(nets), error=error, supervised=supervised)


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
            raise TimedOut(f"pod {pod.uuid} still {s.state} after {timeout:g}s")
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
        return Busy(f"pod {pod.uuid} is still being prepared")
    return Busy(f"pod {pod.uuid} is busy (another rkt command holds it); try again")
