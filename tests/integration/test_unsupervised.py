"""Pods whose monitor was killed while their apps run on: status says what is true (running,
unsupervised) and how to recover, `rkt enter` still works, and `rkt stop` stops the apps with
the exit status their stop signal gives them."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from .pod_helpers import (FLAVORS, IMAGE, app_status, assert_nothing_left, pod_dir, status,
                          wait_for, with_image)

pytestmark = [pytest.mark.root, pytest.mark.containers]


@pytest.fixture
def r(rkt):
    return with_image(rkt)


def sleeper_pod(r, flavor: str) -> str:
    return r("run", "--detach", f"--stage1={flavor}", IMAGE, "--exec", "/bin/sleep", "--",
             "600", "---").stdout.strip().splitlines()[-1]


def kill_monitor(r, uuid: str) -> None:
    st = json.loads((pod_dir(r, uuid) / "state.json").read_text())
    os.kill(st["monitor_pid"], signal.SIGKILL)
    wait_for(lambda: not status(r, uuid)["supervised"], 10, "the pod to show as unsupervised")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_unsupervised_pod_is_said_entered_and_stopped(r, flavor):
    uuid = sleeper_pod(r, flavor)
    kill_monitor(r, uuid)
    st = status(r, uuid)
    assert st["state"] == "running" and st["apps"][0]["state"] == "running"
    assert f"rkt stop {uuid}" in st["error"] and "unsupervised" in st["error"]
    assert "state=running, unsupervised" in r("status", uuid).stdout
    listed = [ln for ln in r("list", "--full").stdout.splitlines() if uuid in ln][0]
    assert "running, unsupervised" in listed
    assert r("enter", uuid, "/bin/echo", "inside").stdout.strip() == "inside"
    r("stop", "--timeout=5s", uuid)
    a = app_status(r, uuid)
    # sleep neither catches nor ignores SIGTERM: its stop signal ended it, so 143
    assert (a["state"], a["exit_code"], a["signal"]) == ("exited", 143, 15), a
    assert status(r, uuid)["state"] == "exited"
    r("gc", "--grace-period=0")
    assert_nothing_left(r, [uuid])


def test_killed_foreground_run_then_stop_force(r, tmp_path):
    uuid_file = tmp_path / "uuid"
    p = subprocess.Popen(r.argv("run", f"--uuid-file-save={uuid_file}", IMAGE, "--exec",
                                "/bin/sleep", "--", "600", "---"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: uuid_file.exists() and uuid_file.read_text().strip(), 30, "the pod")
    uuid = uuid_file.read_text().strip()
    wait_for(lambda: app_status(r, uuid)["state"] == "running", 30, "the app to run")
    p.kill()
    p.wait()
    st = status(r, uuid)
    assert (st["state"], st["supervised"], st["apps"][0]["state"]) == ("running", False,
                                                                        "running")
    r("stop", "--force", uuid)
    a = app_status(r, uuid)
    assert (a["state"], a["exit_code"], a["signal"]) == ("exited", 137, 9), a
    r("gc", "--grace-period=0")
    assert_nothing_left(r, [uuid])


def test_monitor_killed_after_it_sent_the_stop_signal(r):
    """The monitor records the stop signal, and whether it is certain to end the app, before
    it sends it; killed before it could reap the app, whoever cleans up reports the app's
    death by that signal (143), not an unknown status. The monitor's death in that window is
    simulated: its state as it writes it, then the kill in place of the TERM a PID namespace's
    init drops."""
    uuid = sleeper_pod(r, "default")
    kill_monitor(r, uuid)
    d = pod_dir(r, uuid)
    path = d / "apps/busybox/state.json"
    a = json.loads(path.read_text())
    a.update(stop_signal=15, stop_fatal=True)
    path.write_text(json.dumps(a))
    os.kill(a["pid"], signal.SIGKILL)
    wait_for(lambda: app_status(r, uuid)["state"] == "exited", 10, "the app to be gone")
    assert app_status(r, uuid)["exit_code"] == 143      # shown so before anyone cleans up
    r("stop", uuid)
    a = app_status(r, uuid)
    assert (a["state"], a["exit_code"], a["signal"]) == ("exited", 143, 15), a
    r("gc", "--grace-period=0")
    assert_nothing_left(r, [uuid])


def test_monitor_killed_status_unknown_is_255(r):
    """An app whose exit nobody saw and no stop signal explains: unknown, 255 (as containerd
    reports a container whose shim died)."""
    uuid = sleeper_pod(r, "default")
    kill_monitor(r, uuid)
    pid = app_status(r, uuid)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: app_status(r, uuid)["state"] == "exited", 10, "the app to be gone")
    assert "unknown" in app_status(r, uuid)["message"]
    r("stop", uuid)
    a = app_status(r, uuid)
    assert (a["state"], a["exit_code"]) == ("exited", 255), a
    r("gc", "--grace-period=0")
    assert_nothing_left(r, [uuid])
