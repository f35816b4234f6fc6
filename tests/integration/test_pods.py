"""Real pods through the real `rkt`, for both isolation flavors (root, runc, busybox-static)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from .pod_helpers import (FLAVORS, IMAGE, app_status, assert_nothing_left, log_lines, pod_dir,
                          run_detached, status, wait_for, with_image)

pytestmark = [pytest.mark.root, pytest.mark.containers]

CRI_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d) (stdout|stderr) [FP] ")


@pytest.fixture
def r(rkt):
    return with_image(rkt)


def sh(script: str) -> list[str]:
    return ["--exec", "/bin/sh", "--", "-c", script, "---"]


# -- run: exit codes, output, grammar -------------------------------------------------------

@pytest.mark.parametrize("flavor", FLAVORS)
def test_run_exit_codes(r, flavor):
    ok = r("run", f"--stage1={flavor}", IMAGE, *sh("echo hello from $0"), check=False)
    assert ok.returncode == 0, ok.stderr
    assert "hello from /bin/sh" in ok.stdout
    bad = r("run", f"--stage1={flavor}", "--uuid-file-save", str(r.data / "u"), IMAGE,
            *sh("exit 7"), check=False)
    assert bad.returncode == 7, bad.stderr
    uuid = (r.data / "u").read_text().strip()
    a = app_status(r, uuid)
    assert a["exit_code"] == 7 and a["state"] == "exited" and a["reason"] == "Error"
    st = status(r, uuid)
    assert st["state"] == "exited" and st["stage1"] == flavor
    assert st["created_at"] <= st["started_at"] <= st["finished_at"]


def test_multi_app_first_failure_and_names(r):
    res = r("run", "--uuid-file-save", str(r.data / "u"), IMAGE, *sh("exit 0"), IMAGE,
            *sh("sleep 0.3; exit 4"), IMAGE, "--name", "third", *sh("exit 0"), check=False)
    assert res.returncode == 4, res.stderr
    uuid = (r.data / "u").read_text().strip()
    apps = {a["name"]: a["exit_code"] for a in status(r, uuid)["apps"]}
    assert apps == {"busybox": 0, "busybox-2": 4, "third": 0}


def test_shared_net_ipc_not_pid(r):
    probe = "echo net=$(readlink /proc/self/ns/net) ipc=$(readlink /proc/self/ns/ipc) " \
            "pid=$(readlink /proc/self/ns/pid)"
    server = "nc -l -p 9123 > /tmp/got & " + probe + "; wait; cat /tmp/got"
    client = probe + "; for i in $(seq 100); do echo ping | nc 127.0.0.1 9123 && exit 0; " \
                     "sleep 0.1; done; exit 1"
    res = r("run", "--uuid-file-save", str(r.data / "u"), IMAGE, "--name", "server", *sh(server),
            IMAGE, "--name", "client", *sh(client), check=False, timeout=120)
    assert res.returncode == 0, res.stderr
    uuid = (r.data / "u").read_text().strip()
    s, c = log_lines(r, uuid, "server"), log_lines(r, uuid, "client")
    ns = lambda lines: dict(kv.split("=", 1) for kv in next(x for x in lines if "net=" in x).split()
                            if "=" in kv and kv.split("=")[0] in ("net", "ipc", "pid"))
    ns_s, ns_c = ns(s), ns(c)
    assert ns_s["net"] == ns_c["net"] and ns_s["ipc"] == ns_c["ipc"]
    assert ns_s["pid"] != ns_c["pid"]
    assert any("ping" in x for x in s), s
    host_net = os.readlink("/proc/self/ns/net")
    assert ns_s["net"] != host_net


@pytest.mark.parametrize("flavor", FLAVORS)
def test_env_user_workdir(r, flavor, tmp_path):
    envf = tmp_path / "env"
    envf.write_text("# comment\nFROMFILE=yes\nFOO=overridden\n")
    res = r("run", f"--stage1={flavor}", IMAGE, "--set-env-file", str(envf), "--set-env", "FOO=bar",
            "--user", "1000", "--group", "100", "--working-dir", "/home/user",
            *sh('echo "$FOO $FROMFILE $(id -u) $(id -g) $(pwd)"'), check=False)
    assert res.returncode == 0, res.stderr
    assert "bar yes 1000 100 /home/user" in res.stdout


@pytest.mark.parametrize("flavor", FLAVORS)
def test_readonly_rootfs(r, flavor):
    ro = r("run", f"--stage1={flavor}", IMAGE, "--readonly-rootfs", *sh("touch /newfile"),
           check=False)
    assert ro.returncode != 0
    rw = r("run", f"--stage1={flavor}", IMAGE, *sh("touch /newfile"), check=False)
    assert rw.returncode == 0, rw.stderr


@pytest.mark.parametrize("flavor", FLAVORS)
def test_volumes(r, flavor, tmp_path):
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "in").write_text("from host\n")
    res = r("run", f"--stage1={flavor}", f"--volume=data,kind=host,source={host}",
            f"--volume=ro,kind=host,source={host},readOnly=true", IMAGE,
            "--mount", "volume=data,target=/data", "--mount", "volume=ro,target=/ro",
            *sh("cat /data/in && echo written > /data/out && ! touch /ro/nope"), check=False)
    assert res.returncode == 0, res.stderr
    assert "from host" in res.stdout
    assert (host / "out").read_text() == "written\n"
    assert not (host / "nope").exists()


def test_empty_volume_shared_between_apps(r):
    res = r("run", "--volume", "shared,kind=empty", IMAGE, "--name", "w",
            "--mount", "volume=shared,target=/s", *sh("echo hi > /s/f"),
            IMAGE, "--name", "rd", "--mount", "volume=shared,target=/s",
            *sh("for i in $(seq 100); do [ -s /s/f ] && cat /s/f && exit 0; sleep 0.1; done; exit 1"),
            check=False)
    assert res.returncode == 0, res.stderr
    assert "hi" in res.stdout


# -- resources ------------------------------------------------------------------------------

def test_memory_limit_oomkilled(r):
    res = r("run", "--uuid-file-save", str(r.data / "u"), IMAGE, "--memory=32M",
            "--exec", "/usr/bin/tail", "--", "/dev/zero", "---", check=False, timeout=120)
    assert res.returncode != 0
    uuid = (r.data / "u").read_text().strip()
    a = app_status(r, uuid)
    assert a["reason"] == "OOMKilled", a
    assert "OOMKilled" in r("status", uuid).stdout


def test_cpu_limit_accepted(r):
    assert r("run", IMAGE, "--cpu=250m", *sh("true"), check=False).returncode == 0


# -- detach, stop, restart ------------------------------------------------------------------

@pytest.mark.parametrize("flavor", FLAVORS)
def test_detach_stop_escalates_to_kill(r, flavor):
    uuid = run_detached(r, f"--stage1={flavor}", IMAGE, *sh("trap '' TERM; while :; do sleep 0.1; done"))
    st = status(r, uuid)
    assert st["state"] == "running" and st["apps"][0]["state"] == "running"
    t0 = time.monotonic()
    r("stop", "--timeout=2s", uuid[:8], timeout=60)
    took = time.monotonic() - t0
    assert 1.5 <= took < 30, took
    a = app_status(r, uuid)
    assert a["state"] == "exited" and (a["signal"] == 9 or a["exit_code"] == 137), a
    assert status(r, uuid)["state"] == "exited"


@pytest.mark.parametrize("flavor", FLAVORS)
def test_stop_force_and_plain(r, flavor):
    u1 = run_detached(r, f"--stage1={flavor}", IMAGE, "--exec", "/bin/sleep", "--", "1000")
    u2 = run_detached(r, f"--stage1={flavor}", IMAGE, "--exec", "/bin/sleep", "--", "1000")
    t0 = time.monotonic()
    out = r("stop", u1, timeout=60).stdout
    assert u1 in out
    r("stop", "--force", u2, timeout=60)
    assert time.monotonic() - t0 < 20
    for u in (u1, u2):
        assert status(r, u)["state"] == "exited"
    # stopping an exited pod again is fine
    r("stop", u1)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_restart_on_failure(r, flavor, tmp_path):
    host = tmp_path / "count"
    host.mkdir()
    script = "echo x >> /c/n; [ $(wc -l < /c/n) -ge 3 ] && exit 0; exit 1"
    res = r("run", f"--stage1={flavor}", "--restart=on-failure", "--uuid-file-save",
            str(r.data / "u"), f"--volume=c,kind=host,source={host}", IMAGE,
            "--mount", "volume=c,target=/c", *sh(script), check=False, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (host / "n").read_text().count("x") == 3
    uuid = (r.data / "u").read_text().strip()
    assert app_status(r, uuid)["restarts"] == 2


# -- enter, logs ----------------------------------------------------------------------------

@pytest.mark.parametrize("flavor", FLAVORS)
def test_enter(r, flavor):
    uuid = run_detached(r, f"--stage1={flavor}", "--hostname", "podhost", IMAGE,
                        "--set-env", "MARK=42", "--exec", "/bin/sleep", "--", "1000")
    try:
        res = r("enter", uuid, "/bin/sh", "-c", "echo inside $MARK; ls /proc/1/ >/dev/null",
                input="")
        assert "inside" in res.stdout
        if flavor == "default":
            assert r("enter", uuid, "hostname", input="").stdout.strip() == "podhost"
        bad = r.fails("enter", "--app", "nope", uuid, "true", input="")
        assert "nope" in bad.stderr
    finally:
        r("stop", "--force", uuid)
    assert "not running" in r.fails("enter", uuid, "true", input="").stderr


@pytest.mark.parametrize("flavor", FLAVORS)
def test_logs_cri_format_tail_since(r, flavor):
    r("run", f"--stage1={flavor}", "--uuid-file-save", str(r.data / "u"), IMAGE,
      *sh("echo out1; echo err1 >&2; echo out2; printf partial"))
    uuid = (r.data / "u").read_text().strip()
    raw = (pod_dir(r, uuid) / "apps/busybox/log").read_text().splitlines()
    assert raw and all(CRI_LINE.match(x) for x in raw), raw
    assert any(" stderr F err1" in x for x in raw)
    out = r("logs", uuid).stdout
    for s in ("out1", "err1", "out2", "partial"):
        assert s in out
    assert r("logs", "--tail", "1", uuid).stdout.strip().endswith("partial")
    assert r("logs", "--since", "1h", uuid).stdout.count("out") == 2
    assert r("logs", "--since", "2999-01-01T00:00:00Z", uuid).stdout.strip() == ""


def test_logs_follow(r):
    uuid = run_detached(r, IMAGE, *sh("for i in 1 2 3 4 5 6; do echo line$i; sleep 0.4; done"))
    p = subprocess.Popen(r.argv("logs", "-f", uuid), stdout=subprocess.PIPE, text=True)
    first = p.stdout.readline()
    assert "line" in first
    t_first = time.monotonic()
    rest = p.stdout.read()  # ends when the app has exited
    assert p.wait(timeout=30) == 0
    assert "line6" in rest and time.monotonic() - t_first > 0.5


# -- prepare, run-prepared, list, status, cat-manifest, rm, gc ------------------------------

@pytest.mark.parametrize("flavor", FLAVORS)
def test_prepare_run_prepared_list_status_rm(r, flavor):
    uuid = r("prepare", "--quiet", f"--stage1={flavor}", "--annotation", "a=b", "--label", "l=v",
             IMAGE, *sh("exit 3")).stdout.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", uuid)
    lst = r("list").stdout
    assert uuid[:8] in lst and "prepared" in lst
    m = json.loads(r("cat-manifest", uuid).stdout)
    assert m["annotations"] == {"a": "b"} and m["labels"] == {"l": "v"} and m["stage1"] == flavor
    assert r("cat-manifest", "--pretty-print", uuid).stdout.startswith("{\n")
    (r.data / "uf").write_text(uuid + "\n")
    res = r("run-prepared", "--uuid-file", str(r.data / "uf"), check=False)
    assert res.returncode == 3, res.stderr
    assert "prepared" in r.fails("run-prepared", uuid).stderr
    js = json.loads(r("list", "--format", "json").stdout)
    assert [p["uuid"] for p in js] == [uuid] and js[0]["state"] == "exited"
    full = r("list", "--full", "--no-legend").stdout
    assert uuid in full and "UUID" not in full
    assert "state=exited" in r("status", uuid).stdout
    r("rm", uuid)
    assert_nothing_left(r, [uuid])


def test_status_wait_and_rm_running(r):
    uuid = run_detached(r, IMAGE, *sh("sleep 1; exit 2"))
    assert "running" in r.fails("rm", uuid).stderr
    assert "still" in r.fails("status", "--wait=0.1s", uuid).stderr
    st = status(r, uuid, "--wait")
    assert st["state"] == "exited" and st["apps"][0]["exit_code"] == 2
    r("rm", uuid)
    assert_nothing_left(r, [uuid])


def test_gc_mark_and_sweep(r):
    u1 = r("run", "--detach", IMAGE, *sh("true")).stdout.strip()
    u2 = r("prepare", "-q", IMAGE, *sh("true")).stdout.strip()
    status(r, u1, "--wait")
    out = r("gc", "--mark-only").stdout
    assert u1 in out
    assert (r.paths.pods / "garbage" / u1).is_dir()
    r("gc")  # within the grace period: kept
    assert (r.paths.pods / "garbage" / u1).is_dir()
    r("gc", "--grace-period=0")  # the prepared pod is not expired yet
    assert not (r.paths.pods / "garbage" / u1).exists()
    assert (r.paths.pods / "prepared" / u2).is_dir()
    r("gc", "--grace-period=0", "--expire-prepared=0")
    assert_nothing_left(r, [u1, u2])


# -- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("args,msg", [
    (["builtin:nope"], "nope"),
    ([IMAGE, "--memory=lots"], "--memory"),
    ([IMAGE, "--cpu=x"], "--cpu"),
    ([IMAGE, "--exec", "/bin/nonexistent"], "not found"),
    (["--volume", "v,kind=host,source=/does/not/exist", IMAGE, "--mount", "volume=v,target=/v"],
     "does not exist"),
    ([IMAGE, "--mount", "volume=undefined,target=/v"], "unknown volume"),
    (["--volume", "v,kind=bogus", IMAGE], "kind"),
    (["--restart=sometimes", IMAGE], "restart"),
    (["--stage1=nope", IMAGE], "stage1"),
    ([IMAGE, "--name", "a", IMAGE, "--name", "a"], "more than once"),
    (["--stage1=fly", IMAGE, IMAGE], "one app"),
    ([IMAGE, "--bogus-flag"], "bogus"),
    ([IMAGE, "--set-env", "NOVALUE"], "NAME=VALUE"),
    (["--net=mynet", IMAGE], "unknown network 'mynet'"),
])
def test_bad_input_leaves_nothing(r, args, msg):
    for verb in ("run", "prepare"):
        res = r.fails(verb, *args)
        assert msg in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) <= 3, res.stderr
    assert not any(r.paths.pods.glob("*/*")) if r.paths.pods.exists() else True


def test_bad_uuids(r):
    assert "no pod" in r.fails("status", "ffffffff").stderr
    u1 = r("prepare", "-q", IMAGE).stdout.strip()
    u2 = r("prepare", "-q", IMAGE).stdout.strip()
    common = os.path.commonprefix([u1, u2])
    if common:
        assert "matches 2" in r.fails("status", common).stderr
    assert "no pod" in r.fails("rm", u1, "ffffffff").stderr  # u1 removed, the other reported
    assert not (r.paths.pods / "prepared" / u1).exists()
    assert r.fails("cat-manifest", "--uuid-file", "/nonexistent").returncode != 0
    assert r.fails("stop", u2).returncode != 0  # prepared, not running
    r("rm", u2)


def test_app_that_cannot_start_is_recorded(r):
    # The exec exists at prepare time but is not runnable: a text file without an interpreter.
    res = r("run", "--uuid-file-save", str(r.data / "u"), IMAGE, "--user", "nosuchuser",
            *sh("true"), check=False)
    assert res.returncode != 0
    uuid = (r.data / "u").read_text().strip()
    st = status(r, uuid)
    assert st["state"] == "exited"
    a = st["apps"][0]
    assert a["state"] == "exited" and a["exit_code"] not in (0, None) and (a["message"] or a["reason"])
