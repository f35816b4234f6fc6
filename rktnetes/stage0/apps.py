"""Mutable pods (`rkt app ...`): an empty sandbox pod whose apps are added, started, stopped and
removed one at a time while it runs.

The running pod's lock belongs to its monitor for the pod's whole life, so changes to the set of
apps are serialized by a second lock, the pod's apps lock (`apps.lock`, Pod.apps_lock): every
command here takes it exclusively for its short critical section, and the monitor takes it
(shared) while it re-reads pod.json and acts on requests. The protocol, always in this order:

1. under the apps lock: check the pod is a running sandbox; record the change on disk first —
   `apps/<name>/state.json` ("created") and pod.json for `add`, `apps/<name>/start-request` or
   `stop-request` for `start`/`stop` — then SIGHUP the monitor;
2. release the lock (the monitor needs it to act), and wait for the request file to disappear
   (the monitor deletes it once acted on) and the app's state to change.

`rm` refuses a running app (unless forced), makes sure the monitor will never restart it (a stop
request, acknowledged), then under the lock undoes the app's resources through its stage1 (runc
delete, rootfs unmount, cgroup), drops it from pod.json and deletes its directory.

A `kill -9` at any point leaves files the other commands understand: an app directory not named
in pod.json is a leftover (ignored, replaced by a later `add` of that name, removed with the
pod); a request file the monitor has not seen yet is acted on at its next SIGHUP; a pod whose
monitor died is cleaned up by `rkt stop`/`rm`/`gc` from its resource journal as any other pod.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable, Iterator

from rktnetes.config import Paths
from rktnetes.errors import (AlreadyExists, Busy, NotFoundError, NotRunning, PodError, RktError,
                             TimedOut)
from rktnetes.fsutil import atomic_write_json, rmtree
from rktnetes.pod import state as st
from rktnetes.pod.manifest import App, PodManifest, Volume
from rktnetes.pod.protocol import MONITOR_LOG, STOP_REQUEST, app_request
from rktnetes.pod.state import AppState
from rktnetes.pod.store import PREPARED, RUN, Pod
from rktnetes.supervise import control

from . import prepare as prep
from .appspec import default_app_name
from .spec import AppSpec, InvalidSpec, PodSpec, PullOptions, Resources, check_app, check_name
from .status import AppStatus

START_TIMEOUT = 60.0
STOP_MARGIN = 30.0        # beyond the grace period, for the monitor to reap and clean up
STOPPING = STOP_REQUEST


# -- sandbox ------------------------------------------------------------------------------------

def sandbox(paths: Paths, spec: PodSpec, uuid_file: str = "", hold_interrupts=None,
            discard_failed: bool = False, launcher=None) -> Pod:
    """Create and start an empty mutable pod (spec.apps empty); returns once its monitor
    reports it ready. discard_failed: a sandbox that failed to start is removed (the CRI's
    choice: nothing is left of a failed RunPodSandbox); kept for inspection otherwise.
    launcher: a supervise.launcher.Launcher that forks the monitor warm (a long-lived front
    end's)."""
    from dataclasses import replace

    from .run import run_pod

    pod, _ = run_pod(paths, replace(spec, apps=[], sandbox=True), detach=True,
                     uuid_file=uuid_file, hold_interrupts=hold_interrupts,
                     discard_failed=discard_failed, launcher=launcher)
    pod.refresh()
    ps = pod.pod_state()
    if pod.state != RUN or not ps.ready:
        why = ps.setup_error or ps.error or f"see {pod.path / MONITOR_LOG}"
        if discard_failed:
            from .rm import remove_pod   # only on this failure path: `rkt app` stays lean

            remove_pod(paths, pod, force=True)
        raise PodError(f"sandbox {pod.uuid} failed to start: {why}")
    return pod


# -- checks and the apps lock --------------------------------------------------------------------

def monitor_alive(pod: Pod) -> bool:
    """The pod's monitor runs: its pid is still its own, and the pod's lock is held (a killed
    monitor may linger as a zombie, but its lock is gone)."""
    return bool(control.monitor_alive(pod)) and pod.is_locked()


def running(pod: Pod, need_sandbox: bool = True) -> PodManifest:
    """The manifest of `pod` if it is running (monitor alive, not stopping) — and a sandbox."""
    pod.refresh()
    if pod.state != RUN or not monitor_alive(pod):
        raise NotRunning(f"pod {pod.uuid} is not running")
    if (pod.path / STOPPING).exists():
        raise PodError(f"pod {pod.uuid} is stopping")
    m = pod.manifest()
    if need_sandbox and not m.sandbox:
        raise PodError(f"pod {pod.uuid} is not a sandbox: apps are added to and removed from pods "
                       f"made by `rkt app sandbox` only")
    return m


@contextlib.contextmanager
def changing(pod: Pod, need_sandbox: bool = True) -> Iterator[PodManifest]:
    """Hold the pod's apps lock; yields its manifest, checked to be a running sandbox."""
    try:
        lk = pod.apps_lock()
    except NotFoundError:
        raise NotRunning(f"pod {pod.uuid} is not running (it was removed)") from None
    try:
        lk.acquire()
        yield running(pod, need_sandbox)
    finally:
        lk.close()


def find_app(m: PodManifest, name: str) -> App:
    app = m.app(name)
    if app is None:
        have = ", ".join(a.name for a in m.apps) or "none"
        raise NotFoundError(f"pod {m.uuid} has no app {name!r} (apps: {have})")
    return app


def _save_manifest(pod: Pod, m: PodManifest) -> None:
    # mkdir=False: never re-create the directory of a pod that moved meanwhile
    atomic_write_json(pod.path / "pod.json", m.to_json(), mkdir=False)


# -- add ------------------------------------------------------------------------------------------

def _unique_name(m: PodManifest, image: str) -> str:
    base = default_app_name(image)
    name, i = base, 2
    while m.app(name) is not None:
        name, i = f"{base}-{i}", i + 1
    return name


def add(paths: Paths, pod: Pod, spec: AppSpec, pull: PullOptions | None = None,
        volumes: list[Volume] = ()) -> str:
    """Add an app (state `created`) to a running sandbox; returns its name. Nothing starts.
    `volumes`: pod volumes to add with it (for its mounts), unless the pod has them."""
    from rktnetes.store import Store

    m0 = running(pod)
    check_app(spec)
    if spec.name:
        check_name(spec.name, "app name")
    store = Store.open(paths)
    # the shared gc lock keeps the image until pod.json names it (as `rkt prepare`)
    with store.gc_lock.held(shared=True):
        app, _ = prep.app_for(paths, store, spec, spec.name or default_app_name(spec.image),
                              pull or PullOptions(), m0.stage1)
        with changing(pod) as m:
            app.name = spec.name or _unique_name(m, spec.image)
            if m.app(app.name) is not None:
                raise AlreadyExists(f"pod {pod.uuid} already has an app named {app.name!r}")
            have_volumes = list(m.volumes)
            for vol in volumes:
                have = next((v for v in have_volumes if v.name == vol.name), None)
                if have is None:
                    have_volumes.append(vol)
                elif have != vol:
                    raise InvalidSpec(f"volume {vol.name}: the pod already has a different "
                                      f"volume of that name")
            prep.check_volumes([app], have_volumes)
            for vol in have_volumes[len(m.volumes):]:
                if vol.kind == "empty":
                    _make_empty_volume(pod, vol)
            # recorded on disk before it exists for anyone: its directory and state, then pod.json
            d = pod.app_dir(app.name)
            if d.exists():
                _remove_leftover(pod, app.name)
            (pod.path / "apps").mkdir(exist_ok=True)
            d.mkdir()
            atomic_write_json(d / "state.json",
                              AppState(app.name, st.CREATED, created_at=time.time()).to_json(),
                              mkdir=False)
            m.volumes = have_volumes
            m.apps.append(app)
            _save_manifest(pod, m)
    with contextlib.suppress(RktError, OSError):
        store.images.touch(app.image_id)
    control.notify(pod)  # the monitor opens the app's log now, not on its first start
    return app.name


def _make_empty_volume(pod: Pod, vol: Volume) -> None:
    import os

    d = pod.path / "volumes" / vol.name
    (pod.path / "volumes").mkdir(exist_ok=True)
    d.mkdir(exist_ok=True)
    os.chmod(d, int(vol.mode, 8))
    os.chown(d, vol.uid, vol.gid)


def _remove_leftover(pod: Pod, name: str) -> None:
    """An app directory pod.json does not name: a `kill -9`ed `add` or `rm`. Deleted, unless
    something is still mounted in it."""
    from .podfs import mounts_under

    d = pod.app_dir(name)
    if mounts_under(d):
        raise PodError(f"pod {pod.uuid}: a previous app {name!r} still has mounts; "
                       f"try again or use another name")
    rmtree(d)


# -- start / stop / rm ----------------------------------------------------------------------------

def _request_path(pod: Pod, name: str, what: str) -> Path:
    return pod.app_dir(name) / app_request(what)


def _wait(pod: Pod, name: str, what: str, done: Callable[[AppState], bool],
          timeout: float) -> AppState:
    """Until the monitor has acted on `apps/<name>/<what>-request` and `done(state)` holds."""
    deadline = time.monotonic() + timeout
    with pod.watch(name) as changed:
        while True:
            gone = not _request_path(pod, name, what).exists()
            s = pod.app_state(name)
            if gone and done(s):
                return s
            if not pod.app_dir(name).is_dir():
                with contextlib.suppress(RktError, OSError):
                    pod.refresh()
                if pod.state == RUN and pod.manifest().app(name) is None:
                    raise NotFoundError(f"app {name} was removed from pod {pod.uuid} meanwhile")
            if not monitor_alive(pod):
                raise NotRunning(f"pod {pod.uuid} stopped (or its monitor died) before app "
                                 f"{name} {'started' if what == 'start' else 'stopped'}")
            if time.monotonic() > deadline:
                raise TimedOut(f"app {name}: the pod's monitor did not {what} it within "
                               f"{timeout:g}s")
            changed.wait(0.05)   # a dead monitor shows in no file: looked at again soon


def start(paths: Paths, pod: Pod, name: str, timeout: float = START_TIMEOUT) -> AppState:
    with changing(pod) as m:
        find_app(m, name)
        s = pod.app_state(name)
        if s.state == st.RUNNING:
            raise PodError(f"app {name} is already running")
        if s.state == st.EXITED:
            raise PodError(f"app {name} has already run (it exited); remove it and add it again")
        if not control.request_app(pod, name, "start", wake=False):
            raise NotRunning(f"pod {pod.uuid} is not running")
    control.notify(pod)   # once the apps lock is free: the monitor acts under it
    s = _wait(pod, name, "start", lambda s: s.state != st.CREATED, timeout)
    if s.state == st.EXITED and s.reason == st.START_ERROR:
        raise PodError(f"app {name} failed to start: {s.message}")
    return s


def _starting(pod: Pod, name: str) -> bool:
    """A start request the monitor has not acted on yet (a concurrent `rkt app start`)."""
    return _request_path(pod, name, "start").exists()


def _let_start_finish(pod: Pod, name: str) -> None:
    """Wait (without the lock) until a pending start request was acted on: a stop or rm never
    races a start inside the monitor."""
    with contextlib.suppress(PodError):  # its outcome is the other command's to report
        _wait(pod, name, "start", lambda s: s.state != st.CREATED, START_TIMEOUT)


def stop(paths: Paths, pod: Pod, name: str, timeout: float = 10.0) -> AppState:
    """Stop signal, then SIGKILL after `timeout`; returns the exited state. An exited app is
    left as it is (and will not be restarted)."""
    for _ in range(5):
        with changing(pod) as m:
            find_app(m, name)
            starting = _starting(pod, name)
            if not starting:
                if pod.app_state(name).state == st.CREATED:
                    raise PodError(f"app {name} has not been started")
                if not control.request_app(pod, name, "stop", timeout, wake=False):
                    raise NotRunning(f"pod {pod.uuid} is not running")
                break
        _let_start_finish(pod, name)
    else:
        raise Busy(f"app {name} is still being started; try again")
    control.notify(pod)
    return _wait(pod, name, "stop", lambda s: s.state != st.RUNNING, timeout + STOP_MARGIN)


def rm(paths: Paths, pod: Pod, name: str, force: bool = False, timeout: float = 10.0) -> None:
    """Remove an app that is not running (`force`: stop it first)."""
    stopped = False
    for _ in range(5):
        with changing(pod) as m:
            app = find_app(m, name)
            s = pod.app_state(name)
            if s.state == st.RUNNING and not force:
                raise PodError(f"app {name} is running: stop it first "
                               f"(rkt app stop {pod.uuid} --app={name}) or use --force")
            starting = _starting(pod, name)
            if not starting:
                if s.state == st.CREATED or (s.state == st.EXITED and stopped):
                    _remove(paths, pod, m, app)
                    break
                # running (forced) or exited, perhaps due for a restart: a stop request
                # first, so the monitor never starts it again
                if not control.request_app(pod, name, "stop", 0.0 if force else timeout,
                                           wake=False):
                    raise NotRunning(f"pod {pod.uuid} is not running")
        if starting:
            _let_start_finish(pod, name)
            continue
        control.notify(pod)
        _wait(pod, name, "stop", lambda s: s.state != st.RUNNING, timeout + STOP_MARGIN)
        stopped = True
    else:
        raise PodError(f"app {name} keeps running; not removed")
    control.notify(pod)  # the monitor forgets it (closes its log)


def forget(paths: Paths, pod: Pod, name: str) -> None:
    """Remove an app from a pod that no longer runs (its monitor undid what the app had;
    what a killed monitor left, its stage1 undoes here). Busy if another command holds the
    pod."""
    from rktnetes.stage1 import get_stage1
    from rktnetes.stage1.base import PodContext

    pod.refresh()
    if pod.state == RUN and monitor_alive(pod):
        raise PodError(f"pod {pod.uuid} is running: remove its app with `rkt app rm`")
    lock = pod.lock()
    try:
        if not lock.acquire(blocking=False):
            raise Busy(f"pod {pod.uuid} is busy (another rkt command holds it); try again")
        pod.refresh()
        m = pod.manifest()
        app = find_app(m, name)
        ctx = PodContext.load(paths, pod)
        with contextlib.suppress(RktError, OSError):   # undone already, as a rule
            get_stage1(m.stage1).cleanup_app(ctx, app)
        from .podfs import mounts_under

        left = mounts_under(pod.app_dir(name))
        if left:
            raise PodError(f"app {name}: still mounted: {left[0]}")
        m.apps = [a for a in m.apps if a.name != name]
        _save_manifest(pod, m)
        rmtree(pod.app_dir(name))
    finally:
        lock.close()


def _remove(paths: Paths, pod: Pod, m: PodManifest, app: App) -> None:
    """Undo the app's resources, then forget it. Under the apps lock."""
    from rktnetes.stage1 import get_stage1
    from rktnetes.stage1.base import PodContext

    from .podfs import mounts_under

    ctx = PodContext.load(paths, pod)
    try:
        get_stage1(m.stage1).cleanup_app(ctx, app)
    except (RktError, OSError) as e:
        raise PodError(f"app {app.name}: cannot undo its resources: {e}") from None
    d = pod.app_dir(app.name)
    left = mounts_under(d)
    if left:
        raise PodError(f"app {app.name}: still mounted: {left[0]}")
    m.apps = [a for a in m.apps if a.name != app.name]
    _save_manifest(pod, m)   # from here the app is gone; its directory is a leftover
    rmtree(d)


def update_resources(paths: Paths, pod: Pod, name: str, res: Resources) -> None:
    """Change an app's memory and CPU settings: recorded in pod.json (a restart keeps them)
    and applied to it now if it runs."""
    from rktnetes.stage1 import get_stage1
    from rktnetes.stage1.base import PodContext

    from .spec import check_resources

    check_resources(res)
    with changing(pod, need_sandbox=False) as m:
        app = find_app(m, name)
        app.memory_limit, app.cpu_millis = res.memory_limit, res.cpu_millis
        app.cpu_shares, app.cpu_quota, app.cpu_period = res.cpu_shares, res.cpu_quota, \
            res.cpu_period
        app.cpuset_cpus, app.cpuset_mems = res.cpuset_cpus, res.cpuset_mems
        stage1 = get_stage1(m.stage1)
        if not stage1.capabilities.resource_limits:
            raise InvalidSpec(f"the {m.stage1} stage1 applies no resource limits")
        if pod.app_state(name).state == st.RUNNING:
            ctx = PodContext.load(paths, pod)
            ctx.manifest = m
            stage1.update_app(ctx, app)
        _save_manifest(pod, m)


def reopen_log(paths: Paths, pod: Pod, name: str, timeout: float = 10.0) -> None:
    """Have the monitor reopen a running app's log (rotated away by kubelet): new lines go to
    a new file at its path. NotRunning if the app is not running."""
    with changing(pod, need_sandbox=False) as m:
        find_app(m, name)
        if pod.app_state(name).state != st.RUNNING:
            raise NotRunning(f"app {name} is not running")
        if not control.request_app(pod, name, "reopen-log", wake=False):
            raise NotRunning(f"pod {pod.uuid} is not running")
    control.notify(pod)
    _wait(pod, name, "reopen-log", lambda s: True, timeout)


# -- list / status / exec -------------------------------------------------------------------------

def views(pod: Pod) -> list[AppStatus]:
    """Every app of the pod as recorded; apps recorded running in a pod whose monitor is gone
    show as `unknown` (their processes may or may not be there until `rkt stop` cleans up)."""
    from .status import app_view

    pod.refresh()
    m = pod.manifest_for_view()
    orphaned = pod.state == RUN and not monitor_alive(pod)
    return [app_view(a, pod.app_state(a.name), orphaned) for a in m.apps]


def view(pod: Pod, name: str) -> AppStatus:
    for v in views(pod):
        if v.name == name:
            return v
    find_app(pod.manifest(), name)  # raises the "no app" error with the list of apps
    raise NotFoundError(f"pod {pod.uuid} has no app {name!r}")


def exec_in(paths: Paths, pod: Pod, name: str, argv: list[str], tty: bool = False,
            interactive: bool = False, stdio: tuple[int, int, int] | None = None,
            timeout: float | None = None, cancel: int = -1) -> int:
    """Run `argv` in the app's namespaces; returns its exit code. stdio: the (stdin, stdout,
    stderr) descriptors it gets (pipes, a pty: then `tty`); None: ours, with stdin only if
    `interactive`. cancel: an fd that turns readable when the caller gives up (the command
    is killed)."""
    from rktnetes.stage1 import get_stage1
    from rktnetes.stage1.base import PodContext

    if not argv:
        raise InvalidSpec("no command given")
    pod.refresh()
    m = pod.manifest() if pod.state == RUN else running(pod, need_sandbox=False)
    app = find_app(m, name)
    s = pod.app_state(name)
    # a pod whose monitor died: its apps may still run, and what runs can be entered
    if s.state != st.RUNNING or (not monitor_alive(pod) and not s.process_alive()):
        raise NotRunning(f"app {name} is not running")
    ctx = PodContext.load(paths, pod)
    return get_stage1(m.stage1).exec_in_app(ctx, app, argv, tty=tty, interactive=interactive,
                                            stdio=stdio, timeout=timeout, cancel=cancel)
