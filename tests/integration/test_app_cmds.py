"""Mutable pods through the real `rkt app ...` commands: real sandboxes, runc, busybox."""

from __future__ import annotations

import json
from datetime import datetime
import os
import re
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from .pod_helpers import (IMAGE, assert_nothing_left, cgroups_mentioning, log_lines,
                          mounts_mentioning, pod_dir, processes_mentioning, run_detached,
                          runc_containers, status, wait_for, with_image)

pytestmark = [pytest.mark.root, pytest.mark.containers]


@pytest.fixture
def r(rkt):
    yield with_image(rkt)
    # a failed test must not leave pods running (pytest would delete their files under them)
    pods = json.loads(rkt("list", "--format", "json", check=False).stdout or "[]")
    running = [p["uuid"] for p in pods if p["state"] == "running"]
    if running:
        rkt("stop", "--force", *running, check=False, timeout=120)
    rkt("gc", "--grace-period=0", "--expire-prepared=0", check=False, timeout=120)


def sandbox(r, *flags: str) -> str:
    return r("app", "sandbox", "--net=none", *flags).stdout.strip().splitlines()[-1]


def add(r, uuid: str, name: str, script: str, *flags: str) -> str:
    out = r("app", "add", uuid, IMAGE, "--name", name, *flags,
            "--exec", "/bin/sh", "--", "-c", script, "---").stdout.strip()
    assert out == name
    return out


def app(r, uuid: str, name: str) -> dict:
    return json.loads(r("app", "status", uuid, "--app", name, "--format", "json").stdout)


def apps(r, uuid: str) -> dict[str, dict]:
    return {a["name"]: a for a in json.loads(r("app", "list", uuid, "--format", "json").stdout)}


def wait_state(r, uuid: str, name: str, state: str, timeout: float = 30) -> dict:
    return wait_for(lambda: (lambda a: a if a["state"] == state else None)(app(r, uuid, name)),
                    timeout, f"app {name} {state}")


def finish(r, *uuids: str) -> None:
    """Stop and remove the sandboxes; nothing of them may remain."""
    r("stop", "--force", *uuids, timeout=120)
    r("rm", *uuids, timeout=120)
    assert_nothing_left(r, list(uuids))


def no_leftovers_of(uuid: str) -> None:
    with open("/proc/mounts") as f:
        assert not [m for m in f if uuid in m]
    import glob

    assert not glob.glob(f"/sys/fs/cgroup/*/rktnetes/{uuid}")
    assert not processes_mentioning(uuid)


SLEEPER = "trap 'exit 0' TERM; while :; do sleep 0.1; done"
HTTPD = "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www"
WGET = ("for i in $(seq 100); do timeout 5 wget -q -O - http://127.0.0.1:8080/ && exit 0; "
        "sleep 0.1; done; exit 1")


# -- sandbox: two apps over localhost ----------------------------------------------------------

def test_sandbox_two_apps_talk_over_localhost(r, tmp_path):
    ufile = tmp_path / "uuid"
    uuid = sandbox(r, "--uuid-file-save", str(ufile), "--annotation", "team=a", "--label",
                   "tier=web", "--hostname", "sbx", "--dns", "192.0.2.53", "--dns-search",
                   "example.test", "--hosts-entry", "192.0.2.7=db.example.test")
    assert ufile.read_text().strip() == uuid
    st = status(r, uuid, "--wait-ready=30s")
    assert st["state"] == "running" and st["apps"] == []
    m = json.loads(r("cat-manifest", uuid).stdout)
    assert m["sandbox"] and m["annotations"] == {"team": "a"} and m["labels"] == {"tier": "web"}
    assert r("app", "list", uuid, "--format", "json").stdout.strip() == "[]"

    add(r, uuid, "web", HTTPD)
    assert app(r, uuid, "web")["state"] == "created"
    r("app", "start", uuid, "--app", "web")
    web = app(r, uuid, "web")
    assert web["state"] == "running" and web["pid"] > 0
    time.sleep(0.5)  # started at different times
    add(r, uuid, "client", WGET)
    r("app", "start", uuid, "--app", "client")
    c = wait_state(r, uuid, "client", "exited")
    assert c["exit_code"] == 0 and c["reason"] == "Completed", c
    assert any("hello-from-web" in x for x in log_lines(r, uuid, "client"))
    # one app's exit does not end a sandbox
    assert status(r, uuid)["state"] == "running"
    assert app(r, uuid, "web")["state"] == "running"
    assert web["started_at"] < c["started_at"]

    # the apps share the infra's network, IPC and UTS namespaces, as `rkt run` apps do
    infra = json.loads((pod_dir(r, uuid) / "state.json").read_text())["stage1_state"]["infra_pid"]
    out = r("app", "exec", uuid, "--app", "web", "--", "sh", "-c",
            "for n in net ipc uts; do readlink /proc/self/ns/$n; done; hostname; "
            "cat /etc/resolv.conf /etc/hosts").stdout
    for ns in ("net", "ipc", "uts"):
        assert os.readlink(f"/proc/{infra}/ns/{ns}") in out
    assert os.readlink("/proc/self/ns/net") not in out
    assert "sbx" in out and "192.0.2.53" in out and "example.test" in out
    assert "db.example.test" in out
    # each app has its own CRI log
    raw = r("logs", "--cri", "--app", "client", uuid).stdout.splitlines()
    assert raw and all(re.match(r"^\S+ (stdout|stderr) [FP] ", x) for x in raw), raw
    assert (pod_dir(r, uuid) / "apps" / "web" / "log").exists()
    finish(r, uuid)


# -- stop and rm of one app while the other runs ------------------------------------------------

def test_app_stop_and_rm_while_other_keeps_running(r):
    uuid = sandbox(r)
    add(r, uuid, "a", SLEEPER)
    add(r, uuid, "b", SLEEPER)
    r("app", "start", uuid, "--app", "a")
    r("app", "start", uuid, "--app", "b")
    b_pid = app(r, uuid, "b")["pid"]
    assert {f"{uuid}-a", f"{uuid}-b"} <= set(runc_containers(r, uuid))
    r("app", "stop", uuid, "--app", "a", "--timeout", "5s")
    a = app(r, uuid, "a")
    assert a["state"] == "exited" and a["exit_code"] == 0 and a["finished_at"] > 0
    r("app", "rm", uuid, "--app", "a")
    assert list(apps(r, uuid)) == ["b"]
    d = pod_dir(r, uuid)
    assert not (d / "apps" / "a").exists()
    assert not mounts_mentioning(str(d / "apps" / "a"))
    assert not [c for c in cgroups_mentioning(uuid) if c.endswith("/a")]
    assert f"{uuid}-a" not in runc_containers(r, uuid)
    b = app(r, uuid, "b")
    assert b["state"] == "running" and b["pid"] == b_pid
    assert r("app", "exec", uuid, "--app", "b", "--", "echo", "alive").stdout.strip() == "alive"
    # the name is free again
    add(r, uuid, "a", "exit 0")
    r("app", "start", uuid, "--app", "a")
    assert wait_state(r, uuid, "a", "exited")["exit_code"] == 0
    r("app", "rm", uuid, "--app", "a")
    # a running app goes with --force only
    res = r.fails("app", "rm", uuid, "--app", "b")
    assert "running" in res.stderr
    r("app", "rm", uuid, "--app", "b", "--force")
    assert apps(r, uuid) == {}
    assert status(r, uuid)["state"] == "running"
    # stop + gc of the emptied sandbox
    r("stop", uuid)
    r("gc", "--grace-period=0")
    assert_nothing_left(r, [uuid])


# -- exec -------------------------------------------------------------------------------------

def test_app_exec_exit_codes_and_stdin(r):
    uuid = sandbox(r)
    add(r, uuid, "sh", SLEEPER)
    r("app", "start", uuid, "--app", "sh")
    ok = r("app", "exec", uuid, "--app", "sh", "--", "sh", "-c", "echo out; echo err >&2")
    assert ok.returncode == 0 and ok.stdout.strip() == "out" and "err" in ok.stderr
    bad = r("app", "exec", uuid, "--app=sh", "--", "sh", "-c", "exit 3", check=False)
    assert bad.returncode == 3
    res = r("app", "exec", uuid, "--app", "sh", "-i", "--", "sh", "-c", "tr a-z A-Z; exit 5",
            input="piped input\n", check=False)
    assert res.returncode == 5 and res.stdout.strip() == "PIPED INPUT"
    # without -i the command's stdin is empty
    res = r("app", "exec", uuid, "--app", "sh", "--", "cat", input="not passed\n")
    assert res.stdout == ""
    # it runs in the app's mount namespace (its rootfs) and PID namespace
    res = r("app", "exec", uuid, "--app", "sh", "--", "sh", "-c", "cat /proc/1/cmdline")
    assert "while" in res.stdout.replace("\0", " ")
    missing = r("app", "exec", uuid, "--app", "sh", "--", "/no/such/cmd", check=False)
    assert missing.returncode != 0
    add(r, uuid, "idle", "exit 0")
    r.fails("app", "exec", uuid, "--app", "idle", "--", "true")
    r.fails("app", "exec", uuid, "--app", "nope", "--", "true")
    finish(r, uuid)


def test_app_attach_output_stdin_and_exit_code(r):
    uuid = sandbox(r)
    add(r, uuid, "reader", "echo ready; while read l; do echo got $l; echo err $l >&2; done; "
                           "exit 4", "--stdin-once")
    r("app", "start", uuid, "--app", "reader")
    wait_state(r, uuid, "reader", "running")
    res = r("app", "attach", uuid, "--app", "reader", input="one\ntwo\n", check=False,
            timeout=60)
    # what it wrote while attached, then its exit code once our input (its stdin) ended
    assert res.returncode == 4, res.stderr
    assert res.stdout.endswith("got one\ngot two\n") and "err two" in res.stderr
    assert "got two" in r("logs", "--app", "reader", uuid).stdout   # the log has it too
    # an app that has ended, or none of that name: one line, non-zero
    assert "not running" in r.fails("app", "attach", uuid, "--app", "reader").stderr
    r.fails("app", "attach", uuid, "--app", "nope")
    finish(r, uuid)


def test_an_app_that_writes_without_pause_does_not_starve_its_monitor(r):
    """`yes` fills its pipe faster than any log can take it: the monitor must still answer a
    stop request, an attach and the other app's exit (it reads in bounded turns)."""
    uuid = sandbox(r)
    add(r, uuid, "flood", "exec yes")
    add(r, uuid, "short", "sleep 1; exit 3")
    r("app", "start", uuid, "--app", "flood")
    r("app", "start", uuid, "--app", "short")
    wait_state(r, uuid, "short", "exited", timeout=30)
    assert app(r, uuid, "short")["exit_code"] == 3
    r("app", "stop", uuid, "--app", "flood", timeout=60)
    assert app(r, uuid, "flood")["state"] == "exited"
    finish(r, uuid)


# -- exit codes, OOM ----------------------------------------------------------------------------

def test_app_nonzero_exit_and_oom_kill(r):
    uuid = sandbox(r)
    add(r, uuid, "bad", "echo failing; exit 7")
    add(r, uuid, "hog", "echo hogging; exec dd if=/dev/zero of=/dev/null bs=64M count=1",
        "--memory", "32M")
    add(r, uuid, "keeper", SLEEPER)
    r("app", "start", uuid, "--app", "keeper")
    r("app", "start", uuid, "--app", "bad")
    r("app", "start", uuid, "--app", "hog")
    bad = wait_state(r, uuid, "bad", "exited")
    assert bad["exit_code"] == 7 and bad["reason"] == "Error", bad
    assert bad["created_at"] <= bad["started_at"] <= bad["finished_at"]
    # the RFC 3339 twin of each epoch field, as `rkt list/status --format json` give
    assert bad["finished"].endswith("Z") and bad["finished"][:4].isdigit()
    assert datetime.fromisoformat(bad["finished"].replace("Z", "+00:00")).timestamp() == \
        pytest.approx(bad["finished_at"], abs=1e-3)
    hog = wait_state(r, uuid, "hog", "exited")
    assert hog["reason"] == "OOMKilled", hog
    assert hog["exit_code"] == 137 and hog["signal"] == signal.SIGKILL
    text = r("app", "status", uuid, "--app", "hog").stdout
    assert "reason=OOMKilled" in text and "exit_code=137" in text and "finished=" in text
    assert "failing" in "".join(log_lines(r, uuid, "bad"))
    assert any("hogging" in x for x in log_lines(r, uuid, "hog"))
    listing = r("app", "list", uuid).stdout
    assert "OOMKilled" in listing and "Error" in listing
    # neither ended the pod
    assert status(r, uuid)["state"] == "running"
    assert app(r, uuid, "keeper")["state"] == "running"
    # an exited app is not started again; rm is fine
    r.fails("app", "start", uuid, "--app", "bad")
    r("app", "rm", uuid, "--app", "bad")
    finish(r, uuid)


def test_app_start_error_keeps_sandbox(r):
    uuid = sandbox(r)
    add(r, uuid, "ok", SLEEPER)
    # passes every check of `app add` (a user that does not exist no longer would), but the
    # runtime cannot make a file its working directory
    r("app", "add", uuid, IMAGE, "--name", "broken", "--working-dir", "/bin/busybox")
    res = r.fails("app", "start", uuid, "--app", "broken")
    assert "broken" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    a = app(r, uuid, "broken")
    assert a["state"] == "exited" and a["reason"] == "StartError" and a["message"]
    r("app", "start", uuid, "--app", "ok")
    assert status(r, uuid)["state"] == "running"
    finish(r, uuid)


# -- concurrency --------------------------------------------------------------------------------

def test_ten_concurrent_add_and_start(r):
    uuid = sandbox(r)

    def one(i: int) -> str:
        # no --name: the names are chosen under the apps lock, so they must come out unique
        name = r("app", "add", uuid, IMAGE, "--set-env", f"N={i}", "--exec", "/bin/sh", "--",
                 "-c", f"echo app-$N; {SLEEPER}", "---", timeout=120).stdout.strip()
        r("app", "start", uuid, "--app", name, timeout=120)
        return name

    with ThreadPoolExecutor(10) as ex:
        names = list(ex.map(one, range(10)))
    assert len(set(names)) == 10, names
    assert set(names) == {"busybox"} | {f"busybox-{i}" for i in range(2, 11)}
    listing = apps(r, uuid)
    assert set(listing) == set(names)
    assert all(a["state"] == "running" for a in listing.values()), listing
    assert len({a["pid"] for a in listing.values()}) == 10
    seen = set()
    for n in names:
        lines = wait_for(lambda: [x for x in log_lines(r, uuid, n) if "app-" in x], 10,
                         f"{n}'s output")
        seen.add(lines[0].rsplit(" ", 1)[-1])
    assert seen == {f"app-{i}" for i in range(10)}
    # and concurrently stopped and removed again
    with ThreadPoolExecutor(10) as ex:
        list(ex.map(lambda n: r("app", "rm", uuid, "--app", n, "--force", timeout=120), names))
    assert apps(r, uuid) == {}
    finish(r, uuid)


# -- kill -9 -------------------------------------------------------------------------------------

def test_kill_monitor_then_stop_and_rm_leave_nothing(r):
    uuid = sandbox(r)
    add(r, uuid, "running", SLEEPER)
    add(r, uuid, "exited", "exit 2")
    add(r, uuid, "removed", "exit 0")
    add(r, uuid, "created", "exit 0")
    for n in ("running", "exited", "removed"):
        r("app", "start", uuid, "--app", n)
    wait_state(r, uuid, "exited", "exited")
    wait_state(r, uuid, "removed", "exited")
    r("app", "rm", uuid, "--app", "removed")
    d = pod_dir(r, uuid)
    st = json.loads((d / "state.json").read_text())
    os.kill(st["monitor_pid"], signal.SIGKILL)
    wait_for(lambda: not status(r, uuid)["supervised"], 10, "the pod to show as unsupervised")
    # still understood: the app still runs, nobody watches it
    assert status(r, uuid)["state"] == "running"
    listing = apps(r, uuid)
    assert set(listing) == {"running", "exited", "created"}
    assert listing["running"]["state"] == "running"
    assert listing["exited"]["state"] == "exited" and listing["exited"]["exit_code"] == 2
    assert listing["created"]["state"] == "created"
    assert "monitor died" in status(r, uuid)["error"]
    res = r.fails("app", "start", uuid, "--app", "created")
    assert "not running" in res.stderr
    r("stop", uuid, timeout=120)
    assert all(a["state"] == "exited" for a in apps(r, uuid).values())
    r("rm", uuid, timeout=120)
    no_leftovers_of(uuid)
    assert_nothing_left(r, [uuid])


@pytest.mark.parametrize("delay", [0.0, 0.15, 0.3, 0.45])
def test_kill_app_commands_midway(r, delay):
    """kill -9 of `rkt app add`, `app start` and `app rm --force` at several points: the pod
    stays understandable and the next commands work."""
    uuid = sandbox(r)
    for what in ("add", "start", "rm"):
        names = apps(r, uuid)
        if what == "add":
            argv = r.argv("app", "add", uuid, IMAGE, "--name", "x", "--exec", "/bin/sh", "--",
                          "-c", SLEEPER, "---")
        elif what == "start":
            if "x" not in names:
                add(r, uuid, "x", SLEEPER)
            argv = r.argv("app", "start", uuid, "--app", "x")
        else:
            if names["x"]["state"] == "created":
                r("app", "start", uuid, "--app", "x", check=False)  # may be underway already
            wait_state(r, uuid, "x", "running")
            argv = r.argv("app", "rm", uuid, "--app", "x", "--force")
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        listing = apps(r, uuid)
        assert set(listing) <= {"x"}
        assert all(a["state"] in ("created", "running", "exited") for a in listing.values())
        st = status(r, uuid)
        assert st["state"] == "running"
    if "x" in apps(r, uuid):
        r("app", "rm", uuid, "--app", "x", "--force")
    assert apps(r, uuid) == {}
    # (a killed rm may leave the directory of an app pod.json no longer names: a leftover that
    # the next add of that name replaces; never a mount)
    assert not mounts_mentioning(f"{uuid}/apps/x")
    add(r, uuid, "x", "exit 0")  # the name is usable again
    r("app", "start", uuid, "--app", "x")
    assert wait_state(r, uuid, "x", "exited")["exit_code"] == 0
    finish(r, uuid)


# -- bad input ---------------------------------------------------------------------------------

def one_line(res) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_bad_input_one_clear_line(r):
    uuid = sandbox(r)
    add(r, uuid, "web", SLEEPER)
    r("app", "start", uuid, "--app", "web")
    unknown = "00000000-0000-0000-0000-000000000000"
    assert "no pod" in one_line(r.fails("app", "add", unknown, IMAGE))
    assert "no pod" in one_line(r.fails("app", "list", unknown))
    assert "no pod" in one_line(r.fails("app", "start", unknown, "--app", "web"))
    for verb in ("start", "stop", "rm", "status"):
        assert "no app 'nope'" in one_line(r.fails("app", verb, uuid, "--app", "nope"))
    assert "already has an app named 'web'" in one_line(
        r.fails("app", "add", uuid, IMAGE, "--name", "web"))
    assert "already running" in one_line(r.fails("app", "start", uuid, "--app", "web"))
    assert "is running" in one_line(r.fails("app", "rm", uuid, "--app", "web"))
    add(r, uuid, "idle", SLEEPER)
    assert "not been started" in one_line(r.fails("app", "stop", uuid, "--app", "idle"))
    one_line(r.fails("app", "add", uuid, IMAGE, "--restart", "sometimes"))
    one_line(r.fails("app", "add", uuid, IMAGE, "--memory", "lots"))
    one_line(r.fails("app", "add", uuid, IMAGE, "--caps-retain", "CAP_BOGUS"))
    one_line(r.fails("app", "add", uuid, IMAGE, "--name", "Bad_Name"))
    one_line(r.fails("app", "add", uuid, IMAGE, "--exec", "/no/such/binary"))
    one_line(r.fails("app", "add", uuid, IMAGE, "--mount", "volume=nope,target=/x"))
    one_line(r.fails("app", "add", uuid))
    # checked when added, not when started (nothing recorded)
    for sig in ("SIGBOGUS", "99", "0", "-1"):
        assert "--stop-signal" in one_line(r.fails("app", "add", uuid, IMAGE, "--name", "s",
                                                   "--stop-signal", sig))
    assert "user 'nosuchuser' not found" in one_line(
        r.fails("app", "add", uuid, IMAGE, "--name", "u", "--user=nosuchuser"))
    assert "group 'nosuchgroup' not found" in one_line(
        r.fails("app", "add", uuid, IMAGE, "--name", "g", "--group=nosuchgroup"))
    assert "out of range" in one_line(
        r.fails("app", "add", uuid, IMAGE, "--name", "g", "--user=99999999999"))
    assert "0..4294967294" in one_line(
        r.fails("app", "add", uuid, IMAGE, "--name", "g", "--supplementary-gids=4294967295"))
    assert "kind= is required" in one_line(
        r.fails("app", "add", uuid, IMAGE, "--name", "v", "--mnt-volume=v,target=/v"))
    for res in (r.fails("app", "exec", uuid, "--", "true"), r.fails("app", "add", uuid),
                r.fails("app", "add", uuid, "--exec=/bin/true", IMAGE)):
        assert not one_line(res).startswith("rkt: rkt"), res.stderr
    one_line(r.fails("app", "sandbox", "--stage1=fly"))
    # a pod from `rkt run` is not a sandbox
    plain = run_detached(r, "--net=none", IMAGE, "--exec", "/bin/sh", "--", "-c", SLEEPER, "---")
    assert "not a sandbox" in one_line(r.fails("app", "add", plain, IMAGE))
    # the failures changed nothing
    assert set(apps(r, uuid)) == {"web", "idle"}
    r("stop", "--force", plain)
    r("rm", plain)
    finish(r, uuid)


def test_stop_signal_forms(r):
    """--stop-signal as a name, a name without SIG, or a number: the app gets that signal (it
    exits 0 on it) rather than the SIGKILL after the timeout."""
    uuid = sandbox(r)
    for name, sig, trap in (("a", "SIGUSR1", "USR1"), ("b", "USR2", "USR2"), ("c", "15", "TERM")):
        add(r, uuid, name, f"trap 'exit 0' {trap}; while :; do sleep 0.1; done",
            "--stop-signal", sig)
        r("app", "start", uuid, "--app", name)
        r("app", "stop", uuid, "--app", name, "--timeout", "20s")
        a = app(r, uuid, name)
        assert a["state"] == "exited" and a["exit_code"] == 0 and not a["signal"], a
    m = json.loads(r("cat-manifest", uuid).stdout)
    assert [x["stop_signal"] for x in m["apps"]] == ["SIGUSR1", "SIGUSR2", "SIGTERM"]
    finish(r, uuid)


def test_add_options_reach_the_app(r, tmp_path):
    """Volumes added with the app, restart policy, security options."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "f").write_text("from host\n")
    uuid = sandbox(r)
    add(r, uuid, "sec", SLEEPER, "--mnt-volume", f"data,kind=host,source={host},target=/data",
        "--mnt-volume", "scratch,kind=empty,target=/scratch", "--user", "1000", "--group",
        "1000", "--supplementary-gids", "20,30", "--caps-retain", "CAP_NET_BIND_SERVICE",
        "--readonly-rootfs", "--allow-new-privs")
    r("app", "start", uuid, "--app", "sec")
    out = r("app", "exec", uuid, "--app", "sec", "--", "sh", "-c",
            "cat /data/f; id -u; id -G; grep -E 'CapEff|NoNewPrivs' /proc/self/status; "
            "touch /x 2>/dev/null && echo rw || echo ro; ls -d /scratch").stdout
    assert "from host" in out and "1000\n" in out and "20" in out and "30" in out
    assert "NoNewPrivs:\t0" in out and "ro\n" in out and "/scratch" in out
    m = json.loads(r("cat-manifest", uuid).stdout)
    assert {v["name"] for v in m["volumes"]} == {"data", "scratch"}
    add(r, uuid, "again", "exit 1", "--restart", "always")
    r("app", "start", uuid, "--app", "again")
    wait_for(lambda: app(r, uuid, "again")["restarts"] >= 2, 30, "restarts")
    r("app", "stop", uuid, "--app", "again", "--timeout", "0")
    n = app(r, uuid, "again")["restarts"]
    time.sleep(1.5)
    assert app(r, uuid, "again")["restarts"] == n  # stopped on request: stays down
    add(r, uuid, "priv", SLEEPER, "--privileged")
    r("app", "start", uuid, "--app", "priv")
    out = r("app", "exec", uuid, "--app", "priv", "--", "grep", "CapEff", "/proc/self/status")
    with open("/proc/self/status") as f:  # privileged: every capability the host has
        bnd = next(x.split()[1] for x in f if x.startswith("CapBnd:"))
    assert out.stdout.split()[-1] == bnd, out.stdout
    finish(r, uuid)


def test_sandbox_default_network_and_port_added_later(r):
    """Networking as for `rkt run`: the default network, and a --port of the sandbox reaching an
    app added after the pod started."""
    import shutil
    import socket
    import urllib.request

    if not any(shutil.which("bridge", path=d) for d in ("/usr/lib/cni", "/opt/cni/bin")):
        pytest.skip("CNI plugins are not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uuid = r("app", "sandbox", "--port", f"8080/tcp:{port}").stdout.split()[-1]
    st = status(r, uuid)
    assert st["networks"] and st["networks"][0]["name"] == "default"
    add(r, uuid, "web", HTTPD)
    r("app", "start", uuid, "--app", "web")
    body = wait_for(lambda: _get(urllib.request, f"http://127.0.0.1:{port}/"), 20, "the port")
    assert "hello-from-web" in body
    finish(r, uuid)


def _get(urllib_request, url: str) -> str:
    try:
        with urllib_request.urlopen(url, timeout=2) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def test_interrupted_sandbox_start_names_the_pod_it_leaves_running(r):
    """^C while `app sandbox` waits for its pod: the monitor (a session of its own) goes on,
    and the user is told which pod runs. The ^C lands as soon as the pod's directory is in
    `run`: held back until the monitor holds the pod, or during the wait for it; should it
    land after, the UUID is printed as usual: no pod runs unnamed."""
    run_dir = r.paths.pods / "run"
    p = subprocess.Popen(r.argv("app", "sandbox", "--net=none"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    wait_for(lambda: run_dir.is_dir() and any(run_dir.iterdir()), 30, "the pod in run/")
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    (uuid,) = [d.name for d in r.paths.pods.glob("*/*")]
    if p.returncode == 130:
        assert err.strip() == (f"rkt: interrupted; pod {uuid} was already starting and goes on "
                               f"in the background (`rkt stop {uuid}` stops it)"), err
    else:
        assert p.returncode == 0 and out.strip().splitlines()[-1] == uuid, (p.returncode, err)
    wait_for(lambda: status(r, uuid)["state"] == "running", 30, "the pod running")
    r("stop", uuid)
    r("rm", uuid)
    assert_nothing_left(r, [uuid])


def test_a_held_back_interrupt_still_leaves_the_pod_its_monitor(r):
    """The ^C that lands between the move to `run` and the monitor's holding the pod (here:
    sent by the step that makes the lock inheritable, in this very process) is held back,
    then reported with the pod's name once the monitor has it: never a pod in `run` that no
    monitor holds."""
    from rktnetes.errors import StartInterrupted
    from rktnetes.pod.store import PodStore
    from rktnetes.stage0 import run as runmod

    uuid = r("prepare", "--quiet", "--net=none", IMAGE, "--exec", "/bin/sleep", "--", "1000"
             ).stdout.strip()
    pod = PodStore(r.paths.pods).find(uuid)
    lock = pod.lock()
    assert lock.acquire(blocking=False)
    real = lock.inheritable

    def interrupted_meanwhile():
        os.kill(os.getpid(), signal.SIGINT)
        return real()

    lock.inheritable = interrupted_meanwhile
    with pytest.raises(StartInterrupted, match=f"pod {uuid} was already starting"):
        runmod.spawn_detached(r.paths, pod, lock, runmod.InterruptsHeld())  # as the CLI
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # restored
    wait_for(lambda: status(r, uuid)["state"] == "running", 30, "the pod running")
    r("stop", uuid)
    r("rm", uuid)
    assert_nothing_left(r, [uuid])
