"""kill -9 of `rkt` and of the pod's monitor at several points of run, stop and rm; afterwards
`rkt gc --grace-period=0` must leave no mounts, cgroups, processes or pod directories."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid as uuidlib

import pytest

from .pod_helpers import FLAVORS, IMAGE, assert_nothing_left, run_detached, wait_for, with_image

pytestmark = [pytest.mark.root, pytest.mark.containers]


@pytest.fixture
def r(rkt):
    return with_image(rkt)


def marked_processes(mark: str) -> list[int]:
    """Processes whose environment carries our mark: every app process inherits it."""
    out = []
    needle = f"FAULTMARK={mark}".encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle in f.read():
                    out.append(int(pid))
        except OSError:
            pass
    return out


def all_uuids(r) -> list[str]:
    if not r.paths.pods.exists():
        return []
    return [p.name for p in r.paths.pods.glob("*/*")]


def monitor_pid(r, uuid: str) -> int:
    def pid():
        for st in ("run",):
            try:
                return json.loads((r.paths.pods / st / uuid / "state.json").read_text()).get(
                    "monitor_pid") or 0
            except (OSError, ValueError):
                return 0
    return wait_for(pid, 30, "the monitor's pid")


def app_running(r, uuid: str) -> bool:
    try:
        st = json.loads(r("status", "--format", "json", uuid, check=False).stdout or "{}")
    except ValueError:
        return False
    return bool(st.get("apps")) and all(a["state"] == "running" for a in st["apps"])


def sleeper(flavor: str, mark: str) -> list[str]:
    return [f"--stage1={flavor}", IMAGE, "--set-env", f"FAULTMARK={mark}",
            "--exec", "/bin/sh", "--", "-c", "trap '' TERM; while :; do sleep 0.2; done", "---"]


def gc_and_check(r, mark: str) -> None:
    """Pods whose monitor got going before the kill are legitimately running: stop them (that
    exercises stop on half-started pods too), then collect everything."""
    uuids = all_uuids(r)
    running = [p["uuid"] for p in json.loads(r("list", "--format", "json").stdout)
               if p["state"] == "running"]
    if running:
        r("stop", "--force", *running, timeout=120)
    res = r("gc", "--grace-period=0", "--expire-prepared=0", check=False, timeout=120)
    assert "Traceback" not in res.stderr, res.stderr
    assert_nothing_left(r, uuids)
    assert wait_for(lambda: not marked_processes(mark), 10, "app processes to go") 


@pytest.mark.parametrize("flavor", FLAVORS)
def test_kill_foreground_run_at_points(r, flavor):
    mark = uuidlib.uuid4().hex
    for delay in (0.05, 0.2, 0.5, 1.0, None):
        p = subprocess.Popen(r.argv("run", *sleeper(flavor, mark)), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        if delay is None:  # once the app runs: the process is the monitor by then
            wait_for(lambda: any(app_running(r, u) for u in all_uuids(r)), 60, "app running")
        else:
            time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
    gc_and_check(r, mark)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_kill_detached_run_and_monitor(r, flavor):
    mark = uuidlib.uuid4().hex
    for delay in (0.05, 0.3, 0.8):
        p = subprocess.Popen(r.argv("run", "--detach", *sleeper(flavor, mark)),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
    # a pod whose monitor is killed while its app runs
    uuid = run_detached(r, *sleeper(flavor, mark))
    os.kill(monitor_pid(r, uuid), signal.SIGKILL)
    time.sleep(0.2)
    st = json.loads(r("status", "--format", "json", uuid).stdout)
    # its monitor is gone but its app runs on: said as it is, with the way out
    assert st["state"] == "running" and st["supervised"] is False
    assert [a["state"] for a in st["apps"]] == ["running"]
    assert "monitor died" in st["error"] and "rkt stop" in st["error"]
    assert "running, unsupervised" in r("list").stdout
    gc_and_check(r, mark)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_kill_during_stop(r, flavor):
    mark = uuidlib.uuid4().hex
    # rkt stop killed while waiting for the grace period: the monitor goes on and stops the pod
    u1 = run_detached(r, *sleeper(flavor, mark))
    p = subprocess.Popen(r.argv("stop", "--timeout=2s", u1))
    time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.wait()
    wait_for(lambda: not (r.paths.pods / "run" / u1).exists(), 30, "the pod to stop")
    # the monitor killed in the middle of stopping: `rkt stop` finishes the job itself
    u2 = run_detached(r, *sleeper(flavor, mark))
    mpid = monitor_pid(r, u2)
    p = subprocess.Popen(r.argv("stop", "--timeout=5s", u2), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    os.kill(mpid, signal.SIGKILL)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert not marked_processes(mark) or wait_for(lambda: not marked_processes(mark), 10, "apps")
    # both killed
    u3 = run_detached(r, *sleeper(flavor, mark))
    mpid = monitor_pid(r, u3)
    p = subprocess.Popen(r.argv("stop", "--timeout=5s", u3))
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    os.kill(mpid, signal.SIGKILL)
    p.wait()
    gc_and_check(r, mark)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_kill_during_rm(r, flavor):
    mark = uuidlib.uuid4().hex
    for delay in (0.0, 0.05, 0.15, 0.3):
        uuid = run_detached(r, *sleeper(flavor, mark))
        r("stop", "--force", uuid)
        p = subprocess.Popen(r.argv("rm", uuid), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
    gc_and_check(r, mark)
