"""What stage0 uses to drive a pod's monitor: the command that starts it, the stop request,
waiting for the end, and a liveness check that survives pid reuse.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import rktnetes
from rktnetes.config import Paths
from rktnetes.fsutil import atomic_write_json
from rktnetes.pod.store import EMBRYO, PREPARE, PREPARED, RUN, Pod

from rktnetes.pod.protocol import STOP_REQUEST, app_request

# -S: no site-packages scan (the monitor needs only the standard library and rktnetes, whose
# directory goes first on sys.path), ~2 MB less per pod and a faster start.
_BOOT = ("import sys; sys.path.insert(0, {root!r}); "
         "from rktnetes.supervise.monitor import main; sys.exit(main())")


def monitor_argv(paths: Paths, uuid: str, lock_fd: int) -> list[str]:
    """The command line of a detached pod's monitor. Spawn it with `pass_fds=(lock_fd,)`,
    /dev/null for stdio and `start_new_session=True` once the pod is in `run` and locked by
    `lock_fd`. (A foreground pod's monitor is `rkt run` itself: monitor.run_foreground.)"""
    root = str(Path(rktnetes.__file__).resolve().parent.parent)
    return [sys.executable, "-S", "-c", _BOOT.format(root=root), *monitor_args(paths, uuid),
            "--lock-fd", str(lock_fd)]


def monitor_args(paths: Paths, uuid: str) -> list[str]:
    """The monitor's own arguments but its lock descriptor (supervise.launcher adds it)."""
    return ["--data-dir", str(paths.data), "--config-dir", str(paths.config), "--uuid", uuid]


def monitor_alive(pod: Pod) -> int:
    """The monitor's pid if it is still running (checked against its start time), else 0."""
    from rktnetes.host.procs import starttime

    st = pod.pod_state()
    pid = st.monitor_pid
    if pid and starttime(pid) == st.monitor_starttime:
        return pid
    return 0


def request_stop(pod: Pod, timeout: float = 10.0, force: bool = False) -> bool:
    """Ask the monitor to stop the pod (TERM, KILL after `timeout`). False if no monitor runs
    (then the caller cleans up with cleanup_from_journal under the pod's lock)."""
    pid = monitor_alive(pod)
    if not pid:
        return False
    atomic_write_json(pod.path / STOP_REQUEST, {"timeout": timeout, "force": force})
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def request_app(pod: Pod, app: str, what: str, timeout: float | None = None,
                wake: bool = True) -> bool:
    """Mutable pods: ask the monitor to start (`what`="start") or stop an app it knows from
    pod.json. The caller holds the pod's apps lock (Pod.apps_lock); the monitor deletes the
    request once it has acted on it. False if no monitor runs. wake=False: the caller SIGHUPs
    the monitor (`notify`) once it has let go of the apps lock, which the monitor takes to act
    on requests: woken while the lock is still held, it would have to try again later."""
    pid = monitor_alive(pod)
    if not pid:
        return False
    path = pod.app_dir(app) / app_request(what)
    atomic_write_json(path, {"timeout": timeout} if timeout is not None else {}, mkdir=False)
    if not wake:
        return True
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return False
    return True


def notify(pod: Pod) -> None:
    """SIGHUP the monitor: pod.json changed (an app added or removed)."""
    pid = monitor_alive(pod)
    if pid:
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            pass


def wait_exited(pod: Pod, timeout: float | None = None, interval: float = 0.05) -> bool:
    """Wait until the monitor is gone (the pod left `run`). True if it did in time."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            pod.refresh()
        except Exception:  # noqa: BLE001 - removed: certainly not running
            return True
        if pod.state != "run" or not pod.is_locked():
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_ready(pod: Pod, timeout: float = 30.0, interval: float = 0.02) -> bool:
    """Wait until the monitor has set the pod up and started its apps (or given up, or the pod
    is gone past running). A pod not started yet (prepared, say) is waited for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pod.refresh()
        except Exception:  # noqa: BLE001
            return False
        if pod.state not in (EMBRYO, PREPARE, PREPARED, RUN):
            return True
        if pod.state == RUN:
            st = pod.pod_state()
            if st.ready or st.finished_at:
                return True
        time.sleep(interval)
    return False
