"""Real pods through the real `rkt`, for both isolation flavors (root, runc, busybox-static)."""

from __future__ import annotations

import json
import os
import re
import signal
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


def unrunnable_image(r, tmp_path) -> str:
    """An image whose /bad is an executable file no kernel can run (not ELF, no `#!`): it passes
    every check before the pod exists and fails when the app starts."""
    import tarfile

    from rktnetes.image import builder

    ti = tarfile.TarInfo("bad")
    ti.mode = 0o755
    layer = builder.tar_entries([(ti, b"\x00\x01 not a program\n")])
    layout = builder.OCILayout(tmp_path / "unrunnable")
    layout.add_image(builder.ImageSpec(layers=[layer], config={"Cmd": ["/bad"]}), "v1")
    ref = f"oci:{layout.path}:v1"
    r("fetch", ref)
    return ref


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


@pytest.mark.parametrize("flavor", FLAVORS)
def test_apps_get_default_signal_dispositions(r, flavor):
    """Python ignores SIGPIPE and SIGXFSZ, and exec keeps ignored dispositions: an app must
    not inherit them (`yes | head -1` must end `yes` by SIGPIPE)."""
    res = r("run", f"--stage1={flavor}", IMAGE, *sh("grep SigIgn /proc/self/status"))
    ignored = int(res.stdout.split()[-1], 16)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        assert not ignored & (1 << (sig - 1)), (sig, res.stdout)


def test_interactive_stdin_and_tty(r):
    """--interactive: the app reads rkt's stdin; on a terminal it gets one (a pty from
    script(1) stands in for the user's), and its exit code is rkt's."""
    res = r("run", "--interactive", IMAGE, *sh("tr a-z A-Z; exit 4"), input="hello\n",
            check=False)
    assert (res.returncode, res.stdout.strip()) == (4, "HELLO"), res
    cmd = " ".join(r.argv("run", "--interactive", IMAGE, "--exec", "/bin/sh", "--", "-c",
                          "'test -t 0 && echo IS-A-TTY; exit 6'"))
    p = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 6 and "IS-A-TTY" in p.stdout, (p.returncode, p.stdout, p.stderr)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_descriptors_open_in_rkt_do_not_reach_apps(r, flavor, tmp_path):
    """A foreground `rkt run` is its pod's monitor; what its caller left open (a file here)
    must not leak to what it starts."""
    secret = tmp_path / "secret"
    secret.write_text("x")
    with open(secret) as f:
        res = subprocess.run(r.argv("run", f"--stage1={flavor}", IMAGE,
                                    *sh("ls -l /proc/self/fd")),
                             capture_output=True, text=True, pass_fds=(f.fileno(),), timeout=120)
    assert res.returncode == 0, res.stderr
    assert "secret" not in res.stdout, res.stdout
    fds = {int(line.split()[-3]) for line in res.stdout.splitlines() if "->" in line}
    assert fds <= {0, 1, 2, 3}, res.stdout  # 3: the directory `ls` reads


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
    # each restart is said, with its delay (the backoff doubles)
    said = [line for line in res.stderr.splitlines() if "restarting it in" in line]
    assert said == [
        "rkt: app busybox exited with 1; restarting it in 0.1s (--restart=on-failure, restart #1)",
        "rkt: app busybox exited with 1; restarting it in 0.2s (--restart=on-failure, restart #2)",
    ], res.stderr


# -- enter, logs ----------------------------------------------------------------------------

@pytest.mark.parametrize("flavor", FLAVORS)
def test_enter(r, flavor):
    # (fly keeps the host's name: it refuses --hostname)
    named = ["--hostname", "podhost"] if flavor == "default" else []
    uuid = run_detached(r, f"--stage1={flavor}", *named, IMAGE,
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
    res = r("logs", uuid)
    out = res.stdout + res.stderr  # stderr lines go to stderr, as podman logs
    for s in ("out1", "err1", "out2", "partial"):
        assert s in out
    assert "err1" in res.stderr and "err1" not in res.stdout
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
    # checked before the pod exists (they used to fail only at start, leaving an exited pod)
    ([IMAGE, "--user=nosuchuser"], "user 'nosuchuser' not found"),
    ([IMAGE, "--group=nosuchgroup"], "group 'nosuchgroup' not found"),
    ([IMAGE, "--user=user", "--group=nosuchgroup"], "group 'nosuchgroup' not found"),
    ([IMAGE, "--user=99999999999"], "out of range"),
    (["--stage1=fly", IMAGE, "--user=nosuchuser"], "user 'nosuchuser' not found"),
    (["--uuid-file-save=/nonexistent/dir/u", IMAGE], "does not exist"),
    (["--uuid-file-save=/etc", IMAGE], "is a directory"),
    (["--volume=bad", IMAGE], "kind= is required"),
    (["--volume=v,kind=host", IMAGE], "source="),
    (["--volume=v,kind=empty,bogus=1", IMAGE], "unknown option"),
    (["--stage1=fly", IMAGE, "--memory=32M"], "fly applies no resource limits"),
    (["--stage1=fly", IMAGE, "--cpu=1"], "fly applies no resource limits"),
    (["--memory=abc", IMAGE], "--memory is an app flag: put it after the image"),
    (["a" * 5000], "\u2026"),
])
def test_bad_input_leaves_nothing(r, args, msg):
    for verb in ("run", "prepare"):
        res = r.fails(verb, *args)
        assert msg in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) <= 3, res.stderr
        assert res.stdout == "", res.stdout  # no UUID: there is no pod
        assert "unrecognized arguments" not in res.stderr, res.stderr
        assert not any(x.startswith("rkt: rkt") for x in res.stderr.splitlines()), res.stderr
        assert len(res.stderr) < 400, res.stderr[:500]
    assert not any(r.paths.pods.glob("*/*")) if r.paths.pods.exists() else True
    assert_nothing_left(r)


def test_valid_users_and_groups_pass(r):
    res = r("run", IMAGE, "--user=user", "--group=user", *sh("id -u; id -g"))
    assert res.stdout.split()[:2] == ["1000", "1000"], res.stdout
    res = r("run", IMAGE, "--user=4321", "--group=2147483647", *sh("id -u; id -g"))
    assert res.stdout.split()[:2] == ["4321", "2147483647"], res.stdout
    # the kernel's ids go up to 4294967294: fly takes them, runc stops at 2^31-1 (said before
    # the pod exists, not by runc when it starts)
    res = r("run", "--stage1=fly", IMAGE, "--user=4321", "--group=4294967294",
            *sh("id -u; id -g"))
    assert res.stdout.split()[:2] == ["4321", "4294967294"], res.stdout
    assert "runc takes 0..2147483647" in r.fails("run", IMAGE, "--group=2147483648",
                                                 *sh("true")).stderr
    r("gc", "--grace-period=0")
    assert_nothing_left(r)


def test_prepare_quiet_prints_only_the_uuid(r):
    loud = r("prepare", IMAGE, *sh("true"))
    uuid = loud.stdout.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", uuid), loud.stdout
    assert uuid in loud.stderr  # a human line on stderr
    quiet = r("prepare", "--quiet", IMAGE, *sh("true"))
    assert re.fullmatch(r"[0-9a-f-]{36}\n", quiet.stdout) and quiet.stderr == "", quiet
    # --quiet also quiets a fetch (the image is not in this store yet)
    (r.data / "u").unlink(missing_ok=True)
    q2 = r("prepare", "-q", "--uuid-file-save", str(r.data / "u"), "--pull-policy=update", IMAGE,
           *sh("true"))
    assert q2.stderr == "" and q2.stdout.strip() == (r.data / "u").read_text().strip()
    r("rm", uuid, quiet.stdout.strip(), q2.stdout.strip())
    assert_nothing_left(r)


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


@pytest.mark.parametrize("flavor", FLAVORS)
def test_app_that_cannot_start_is_recorded(r, flavor, tmp_path):
    # The exec exists at prepare time but is not runnable: a file without an interpreter.
    image = unrunnable_image(r, tmp_path)
    res = r("run", f"--stage1={flavor}", "--uuid-file-save", str(r.data / "u"), image,
            "--exec", "/bad", check=False)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    for line in res.stderr.splitlines():  # one prefix: `rkt: app bad: ...`
        assert not re.search(r"app (\S+): app \1:", line), res.stderr
    uuid = (r.data / "u").read_text().strip()
    st = status(r, uuid)
    assert st["state"] == "exited"
    a = st["apps"][0]
    assert a["state"] == "exited" and a["exit_code"] not in (0, None) and (a["message"] or a["reason"])
    r("rm", uuid)


# -- review fixes: clear errors, exit codes, Ctrl-C, list, logs ------------------------------

def _one_line(res) -> str:
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_uuid_file_garbage_and_empty_uuids_are_usage_errors(r, tmp_path):
    rand = tmp_path / "rand"
    rand.write_bytes(os.urandom(200) + b"\xff")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    for verb in ("status", "stop", "rm", "cat-manifest", "logs", "enter", "run-prepared"):
        for f, msg in ((rand, "not a text file"), (empty, "empty"),
                       (tmp_path / "missing", "No such file")):
            res = r.fails(verb, "--uuid-file", str(f), input="")
            assert res.returncode == 2 and msg in _one_line(res), (verb, res.stderr)
    for verb in ("status", "stop", "rm", "cat-manifest", "logs", "enter"):
        res = r.fails(verb, "", input="")
        assert res.returncode == 2 and "empty pod UUID" in _one_line(res), (verb, res.stderr)


def test_enter_usage_and_uuid_file(r):
    res = r.fails("enter")
    assert res.returncode == 2 and "CMD" not in res.stderr and "no pod UUID" in _one_line(res)
    uuid = run_detached(r, IMAGE, "--exec", "/bin/sleep", "--", "1000")
    try:
        (r.data / "uf").write_text(uuid + "\n")
        out = r("enter", "--uuid-file", str(r.data / "uf"), "/bin/echo", "via-file", input="")
        assert out.stdout.strip() == "via-file"
    finally:
        r("stop", "--force", uuid)
    r("rm", uuid)
    assert_nothing_left(r, [uuid])


@pytest.mark.parametrize("flavor", FLAVORS)
def test_enter_and_exec_missing_command_127_126(r, flavor):
    uuid = run_detached(r, f"--stage1={flavor}", IMAGE, "--exec", "/bin/sleep", "--", "1000")
    try:
        for argv in (["enter", uuid, "/nonexistent"], ["enter", uuid, "nosuchcmd", "x"],
                     ["app", "exec", uuid, "--app=busybox", "--", "/nonexistent"]):
            res = r.fails(*argv, input="")
            line = _one_line(res)
            assert res.returncode == 127, (argv, res.returncode, res.stderr)
            assert line.startswith("rkt: ") and "not found" in line and "level=" not in line
        res = r.fails("enter", uuid, "/etc/passwd", input="")
        assert res.returncode == 126 and "permission denied" in _one_line(res)
        # commands found through PATH, and absolute links inside the image, still run
        assert r("enter", uuid, "sh", "-c", "exit 0", input="").returncode == 0
        assert r("enter", uuid, "/bin/sh", "-c", "exit 5", input="", check=False).returncode == 5
    finally:
        r("stop", "--force", uuid)
    r("rm", uuid)
    assert_nothing_left(r, [uuid])


def test_run_prepared_running_or_exited_pod_says_so(r):
    uuid = run_detached(r, IMAGE, "--exec", "/bin/sleep", "--", "1000")
    try:
        line = _one_line(r.fails("run-prepared", uuid))
        assert f"pod {uuid} is running" in line and "busy" not in line, line
    finally:
        r("stop", "--force", uuid)
    line = _one_line(r.fails("run-prepared", uuid))
    assert "already run" in line and "exited-garbage" not in line, line
    r("gc", "--mark-only")
    line = _one_line(r.fails("run-prepared", uuid))
    assert "exited garbage" in line and "exited-garbage" not in line, line
    assert "exited garbage" in r("list").stdout
    r("rm", uuid)
    assert_nothing_left(r, [uuid])


def test_network_setup_failure_exits_1(r):
    """A /30 network holds one pod: the second fails in its monitor's setup, which is a
    failure of rkt's (exit 1, one line), not an app's exit code."""
    import shutil

    net_d = r.paths.net_d
    net_d.mkdir(parents=True, exist_ok=True)
    (net_d / "10-pt30.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": "pt30", "plugins": [
            {"type": "bridge", "bridge": "rktpt30", "isGateway": True, "ipam": {
                "type": "host-local", "ranges": [[{"subnet": "10.88.230.0/30"}]],
                "dataDir": str(r.data / "ipam")}}]}))
    first = run_detached(r, "--net=pt30", IMAGE, "--exec", "/bin/sleep", "--", "1000")
    try:
        for detach in ([], ["--detach"]):
            res = r.fails("run", *detach, "--net=pt30", IMAGE, *sh("true"), timeout=120)
            assert res.returncode == 1, (detach, res.returncode, res.stderr)
            line = _one_line(res)
            assert line.startswith("rkt: pod ") and "pt30" in line, line
    finally:
        r("stop", "--force", first)
        r("gc", "--grace-period=0", "--expire-prepared=0")
        if shutil.which("ip"):
            subprocess.run(["ip", "link", "del", "rktpt30"], capture_output=True)
    assert_nothing_left(r, [first])


def _run_in_foreground(r, *args: str, **popen) -> tuple[subprocess.Popen, str]:
    """A foreground `rkt run ARGS` in the background, once its first app runs, and its UUID."""
    p = subprocess.Popen(r.argv("run", "--uuid-file-save", str(r.data / "u"), *args),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    try:
        wait_for(lambda: (r.data / "u").exists() and
                 status(r, (r.data / "u").read_text().strip())["apps"][0]["state"] == "running",
                 60, "the app running")
    except BaseException:
        p.kill()
        raise
    return p, (r.data / "u").read_text().strip()


def _run_and_interrupt(r, *args: str, twice: bool = False):
    p, uuid = _run_in_foreground(r, *args, start_new_session=True)
    t0 = time.monotonic()
    os.killpg(p.pid, signal.SIGINT)   # ^C at the terminal: the whole process group
    if twice:
        time.sleep(0.5)
        os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    return p.returncode, err, time.monotonic() - t0, uuid


@pytest.mark.parametrize("flavor", FLAVORS)
def test_ctrl_c_stops_at_once_with_term(r, flavor):
    rc, err, took, uuid = _run_and_interrupt(r, f"--stage1={flavor}", IMAGE,
                                             "--exec", "/bin/sleep", "--", "30", "---")
    assert f"rkt: stopping pod {uuid} (Ctrl-C again to kill)" in err, err
    assert rc == 143 and took < 5, (rc, took, err)
    a = app_status(r, uuid)
    assert (a["exit_code"], a["signal"], a["reason"]) == (143, 15, "Error"), a
    r("rm", uuid)
    assert_nothing_left(r, [uuid])


@pytest.mark.parametrize("force", [False, True])
def test_stop_of_a_foreground_pod(r, force):
    """`rkt stop` from another process finds a foreground `rkt run` (its pod's monitor by pid
    and start time, as its command line does not name the pod) and stops it."""
    p, uuid = _run_in_foreground(r, IMAGE, "--exec", "/bin/sleep", "--", "600")
    try:
        assert status(r, uuid)["pid"] == p.pid  # the rkt process is the monitor
        r("stop", *(["--force"] if force else []), uuid, timeout=60)
        assert p.wait(30) == (137 if force else 143)
    finally:
        if p.poll() is None:
            p.kill()
    assert status(r, uuid)["state"] == "exited"
    r("rm", uuid)
    assert_nothing_left(r, [uuid])


def test_second_ctrl_c_kills(r):
    rc, err, took, uuid = _run_and_interrupt(
        r, IMAGE, *sh("trap '' TERM INT; while :; do sleep 0.1; done"), twice=True)
    assert "Ctrl-C again to kill" in err and f"killing pod {uuid}" in err, err
    assert rc == 137 and took < 5, (rc, took, err)
    r("rm", uuid)
    assert_nothing_left(r, [uuid])


def test_list_shows_each_apps_state_full_columns_and_times(r):
    # the second app cannot start: its working directory is a file
    res = r("run", "--uuid-file-save", str(r.data / "u1"), IMAGE, "--working-dir", "/etc/passwd",
            *sh("true"), check=False)
    assert res.returncode == 128
    failed = (r.data / "u1").read_text().strip()
    uuid = run_detached(r, IMAGE, "--exec", "/bin/sleep", "--", "1000", "---",
                        IMAGE, "--working-dir", "/etc/passwd", *sh("true"))
    try:
        status(r, uuid, "--wait=30s")  # the failed start ends the pod
        rows = [line.split("\t") for line in r("list", "--no-legend").stdout.splitlines()]
        by_uuid = {}
        cur = None
        for row in rows:
            cur = row[0] or cur
            by_uuid.setdefault(cur, []).append(row)
        one = by_uuid[failed[:8]]
        assert len(one) == 1 and one[0][4] == "start failed" and one[0][6] == "-", one
        two = by_uuid[uuid[:8]]
        assert [x[1] for x in two] == ["busybox", "busybox-2"]
        assert two[1][4] == "start failed" and two[0][4] != "running", two
        assert two[0][5] in ("just now",) or "second" in two[0][5], two
        head = r("list", "--full").stdout.splitlines()[0].split()
        assert head[:6] == ["UUID", "APP", "IMAGE", "NAME", "IMAGE", "ID"], head
        full = [line.split("\t") for line in r("list", "--full", "--no-legend").stdout.splitlines()]
        assert any(x[2] == IMAGE and x[3].startswith("sha256:") for x in full), full
        js = {p["uuid"]: p for p in json.loads(r("list", "--format", "json").stdout)}
        p = js[uuid]
        assert isinstance(p["created_at"], float) and p["created"].endswith("Z")
        assert p["apps"][0]["started"].startswith(p["created"][:4])
        assert js[failed]["started"] is None and js[failed]["started_at"] == 0
        st = status(r, failed)
        assert st["finished"] and st["apps"][0]["started"] is None
        assert "started=-" in r("status", failed).stdout
    finally:
        r("stop", "--force", uuid)
    r("rm", uuid, failed)
    assert_nothing_left(r, [uuid, failed])


def test_logs_split_streams_in_time_order(r):
    r("run", "--uuid-file-save", str(r.data / "u"), IMAGE,
      *sh("echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo out2; sleep 0.2; echo err2 >&2"))
    uuid = (r.data / "u").read_text().strip()
    res = r("logs", uuid)
    assert res.stdout.splitlines() == ["out1", "out2"], res
    assert res.stderr.splitlines() == ["err1", "err2"], res
    p = subprocess.run(r.argv("logs", uuid), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    assert p.stdout.splitlines() == ["out1", "err1", "out2", "err2"], p.stdout
    raw = r("logs", "--cri", uuid).stdout.splitlines()
    assert [x.split(" ", 3)[1] for x in raw] == ["stdout", "stderr", "stdout", "stderr"]
    r("rm", uuid)


# -- second review: what a podman/rkt user ran into -------------------------------------------

def test_dir_that_is_a_file_and_corrupt_manifest_are_one_line(r, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    for verb in (("list",), ("gc",), ("status", "abc")):
        res = r.fails("--dir", str(afile), *verb)
        assert "Not a directory" in _one_line(res), (verb, res.stderr)
    uuid = r("prepare", "--quiet", IMAGE, "--exec", "/bin/true").stdout.strip()
    (pod_dir(r, uuid) / "pod.json").write_text('{"bad\x01')
    for verb in ("cat-manifest", "status"):
        res = r.fails(verb, uuid)
        assert f"pod {uuid}: unreadable manifest" in _one_line(res), (verb, res.stderr)
    for fmt in ("table", "json"):  # not listed, but not hidden either
        res = r("list", "--format", fmt)
        assert uuid not in res.stdout
        assert f"pod {uuid}: unreadable manifest" in _one_line(res) and "rkt rm" in res.stderr
    r("rm", uuid)
    assert r("list", "--format", "json").stdout.strip() == "[]"


def test_wait_ready_waits_for_a_prepared_pod_to_start(r):
    uuid = r("prepare", "--quiet", IMAGE, "--exec", "/bin/sleep", "--", "1000").stdout.strip()
    t = time.monotonic()
    res = r.fails("status", "--wait-ready=1s", uuid)
    assert time.monotonic() - t >= 1.0
    assert "not ready after 1s" in _one_line(res)
    waiter = subprocess.Popen(r.argv("status", "--wait-ready=60s", "--format", "json", uuid),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        assert waiter.poll() is None, "returned before the pod was started"
        r("run-prepared", "--detach", uuid)
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, err
        st = json.loads(out)
        assert st["state"] == "running" and st["apps"][0]["state"] == "running"
    finally:
        if waiter.poll() is None:
            waiter.kill()
        r("stop", "--force", uuid, check=False)
        r("rm", uuid, check=False)


def test_interactive_pods_never_run_detached(r):
    plain = r("prepare", "--quiet", IMAGE, "--exec", "/bin/cat").stdout.strip()
    res = r.fails("run-prepared", "--interactive", "--detach", plain)
    assert res.returncode == 2 and "--interactive and --detach" in _one_line(res)
    inter = r("prepare", "--quiet", "--interactive", IMAGE, "--exec", "/bin/cat").stdout.strip()
    before = json.loads(r("cat-manifest", inter).stdout)["networks"]
    res = r.fails("run-prepared", "--detach", "--net=host", inter)
    assert res.returncode == 2 and "cannot run detached" in _one_line(res)
    assert json.loads(r("cat-manifest", inter).stdout)["networks"] == before != [{"name": "host"}]
    two = r("prepare", "--quiet", IMAGE, "--exec", "/bin/true", IMAGE, "--exec", "/bin/true"
            ).stdout.strip()
    res = r.fails("run-prepared", "--interactive", two)
    assert res.returncode == 2 and "exactly one app" in _one_line(res)
    # refused before anything ran: each is still prepared, and runs in the foreground
    states = {p["uuid"]: p["state"] for p in json.loads(r("list", "--format", "json").stdout)}
    assert states == {plain: "prepared", inter: "prepared", two: "prepared"}
    res = r("run-prepared", inter, input="typed in\n")
    assert res.stdout.strip().endswith("typed in")


def test_fly_refuses_a_hostname_and_uuid_prefixes_ignore_case(r):
    res = r.fails("run", "--stage1=fly", "--hostname", "podhost", IMAGE, "--exec", "/bin/true")
    assert res.returncode == 2 and "--hostname" in _one_line(res)
    uuid = r("prepare", "--quiet", IMAGE, "--exec", "/bin/true").stdout.strip()
    assert json.loads(r("status", "--format", "json", uuid[:8].upper()).stdout)["uuid"] == uuid
