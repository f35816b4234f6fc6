"""Real pods under the per-pod monitor, both stage1 flavors (root, runc, overlay, cgroups)."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rktnetes.config import Paths
from rktnetes.image.builder import default_image_spec, manifest_blob
from rktnetes.image.commit import commit_image
from rktnetes.logs import cri
from rktnetes.pod.cleanup import cleanup_from_journal
from rktnetes.pod.manifest import App, Mount, PodManifest, Volume
from rktnetes.pod.store import EXITED_GARBAGE, RUN, Pod, PodStore
from rktnetes.stage1 import get_stage1
from rktnetes.stage1.base import PodContext
from rktnetes.store import Store
from rktnetes.supervise import control

pytestmark = [pytest.mark.root, pytest.mark.containers,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory) -> tuple[Paths, str]:
    """A data dir whose store holds the busybox image; shared by this module's tests."""
    base = tmp_path_factory.mktemp("stage1")
    paths = Paths(base / "data", base / "config")
    paths.config.mkdir(parents=True)
    store = Store(paths.store)
    spec = default_image_spec(base)
    manifest, cfg = manifest_blob(spec)
    store.blobs.put_bytes(cfg)
    for layer in spec.layers:
        store.blobs.put_bytes(layer.blob)
    rec = commit_image(store, store.blobs.put_bytes(manifest), ["busybox"])
    return paths, rec.id


def app(image_id: str, name: str, script: str, **kw) -> App:
    return App(name=name, image_id=image_id, image_name="busybox",
               exec=["/bin/sh", "-c", script], **kw)


class Running:
    def __init__(self, paths: Paths, pod: Pod, proc: subprocess.Popen):
        self.paths, self.pod, self.proc = paths, pod, proc

    def wait(self, timeout: float = 60) -> int:
        rc = self.proc.wait(timeout)
        self.pod.refresh()
        return rc

    def app_state(self, name: str):
        self.pod.refresh()
        return self.pod.app_state(name)

    def log(self, name: str) -> list[cri.Entry]:
        self.pod.refresh()
        return cri.read_entries(self.pod.log_path(name))

    def output(self, name: str, stream: str = "stdout") -> list[str]:
        return [e.content.decode() for e in self.log(name) if e.stream == stream]


def start_pod(paths: Paths, apps: list[App], foreground: bool = False, **kw) -> Running:
    pod, lock = PodStore(paths.pods).create(PodManifest(uuid="", apps=apps, **kw))
    pod.move(RUN)
    fd = lock.inheritable()
    out = subprocess.PIPE if foreground else subprocess.DEVNULL
    if foreground:  # as a foreground `rkt run`: the process itself becomes the monitor
        argv = [sys.executable, "-c", "import sys; from rktnetes.supervise.monitor import "
                "run_foreground as r; sys.exit(r(*sys.argv[1:4], int(sys.argv[4])))",
                str(paths.data), str(paths.config), pod.uuid, str(fd)]
    else:
        argv = control.monitor_argv(paths, pod.uuid, fd)
    proc = subprocess.Popen(argv, pass_fds=(fd,), stdout=out, stderr=out,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    lock.close()  # the monitor holds it now
    assert control.wait_ready(pod, 30), "the pod never became ready"
    return Running(paths, pod, proc)


def assert_clean(r: Running) -> None:
    """Nothing of the pod is left on the host: mounts, cgroups, processes, containers."""
    uuid = r.pod.uuid
    assert r.pod.state == EXITED_GARBAGE
    assert not r.pod.is_locked()
    with open("/proc/self/mountinfo") as f:
        assert uuid not in f.read()
    assert not glob.glob(f"/sys/fs/cgroup/*/rktnetes/{uuid}") + \
        glob.glob(f"/sys/fs/cgroup/rktnetes/{uuid}")
    assert not glob.glob(str(r.paths.data / "runc" / f"{uuid}-*"))
    infra = r.pod.pod_state().stage1_state.get("infra_pid")
    if infra:
        from rktnetes.host.procs import _is_zombie
        from rktnetes.host.procs import starttime

        # dead; a zombie only if its parent was the killed monitor and PID 1 has not reaped it
        assert starttime(infra) != r.pod.pod_state().stage1_state["infra_starttime"] or \
            _is_zombie(infra)


def test_exit_codes_state_and_cri_logs(image_paths):
    paths, img = image_paths
    r = start_pod(paths, [app(img, "ok", "echo out; echo err >&2; exit 0"),
                          app(img, "bad", "sleep 0.3; echo failing; exit 3")], foreground=True)
    assert r.wait() == 3
    ok, bad = r.app_state("ok"), r.app_state("bad")
    assert (ok.state, ok.exit_code, ok.reason) == ("exited", 0, "Completed")
    assert (bad.state, bad.exit_code, bad.reason) == ("exited", 3, "Error")
    assert bad.started_at and bad.finished_at >= bad.started_at and bad.pid
    assert r.output("ok") == ["out"] and r.output("ok", "stderr") == ["err"]
    raw = r.pod.log_path("ok").read_bytes().splitlines()
    assert all(cri.parse_line(line).stream in ("stdout", "stderr") for line in raw)
    assert raw[0].split(b" ")[2] == b"F" and raw[0].split(b" ")[0].endswith(b"Z")
    out = r.proc.stdout.read()
    assert b"out" in out and b"failing" in out  # --foreground copies the raw output
    st = r.pod.pod_state()
    assert st.exit_code == 3 and st.finished_at >= st.started_at
    assert_clean(r)


def test_apps_share_net_ipc_uts_not_pid(image_paths, tmp_path):
    paths, img = image_paths
    ns = "for n in net ipc uts pid; do echo $n $(readlink /proc/self/ns/$n); done; hostname; " \
         "echo procs $(ls -d /proc/[0-9]* | wc -l)"
    srv = app(img, "srv", "mkdir -p /w && echo hello-from-srv > /w/index.html && "
                          "httpd -p 8080 -h /w && " + ns +
                          "; while [ ! -e /shared/done ]; do sleep 0.1; done",
              mounts=[Mount("shared", "/shared")])
    cli = app(img, "cli", ns + "; for i in $(seq 100); do "
                          "wget -q -O- http://127.0.0.1:8080/ && break; sleep 0.1; done; "
                          "touch /shared/done",
              mounts=[Mount("shared", "/shared")])
    r = start_pod(paths, [srv, cli], volumes=[Volume("shared", "empty")], hostname="podhost")
    assert r.wait() == 0
    s, c = r.output("srv"), r.output("cli")
    assert "hello-from-srv" in c
    for kind in ("net", "ipc", "uts"):
        assert next(x for x in s if x.startswith(kind)) == next(x for x in c if x.startswith(kind))
    assert next(x for x in s if x.startswith("pid")) != next(x for x in c if x.startswith("pid"))
    assert "podhost" in s and "podhost" in c
    host_net = os.readlink("/proc/self/ns/net")
    assert f"net {host_net}" not in s
    assert_clean(r)


def test_env_user_workdir_readonly_rootfs_volumes(image_paths, tmp_path):
    paths, img = image_paths
    host = tmp_path / "hostvol"
    host.mkdir()
    (host / "f").write_text("from-host\n")
    script = ("echo FOO=$FOO; echo uid=$(id -u) gid=$(id -g) groups=$(id -G); echo pwd=$(pwd); "
              "echo HOSTNAME=$HOSTNAME; "
              "(touch /rootfile 2>/dev/null && echo rootfs=rw) || echo rootfs=ro; "
              "cat /hostvol/f; (echo x > /hostvol/g 2>/dev/null && echo hostvol=rw) || "
              "echo hostvol=ro; echo y > /data/z && echo empty=rw; "
              "(echo 1 > /proc/sys/kernel/hostname 2>/dev/null && echo procsys=rw) || echo procsys=ro")
    a = app(img, "a", script, env={"FOO": "bar"}, user="user", group="users",
            working_dir="/tmp", readonly_rootfs=True,
            mounts=[Mount("hv", "/hostvol", readonly=True), Mount("data", "/data")])
    r = start_pod(paths, [a], volumes=[Volume("hv", "host", str(host)),
                                       Volume("data", "empty", uid=1000, gid=100)])
    assert r.wait() == 0, r.output("a", "stderr")
    out = r.output("a")
    assert "FOO=bar" in out
    assert "uid=1000 gid=100 groups=100" in out
    assert "pwd=/tmp" in out
    assert any(x.startswith("HOSTNAME=rkt-") for x in out)
    assert "rootfs=ro" in out and "from-host" in out and "hostvol=ro" in out
    assert "empty=rw" in out and "procsys=ro" in out
    assert not (host / "g").exists()
    assert_clean(r)


def test_memory_hog_is_oom_killed(image_paths):
    paths, img = image_paths
    hog = App(name="hog", image_id=img, image_name="busybox", exec=["tail", "/dev/zero"],
              memory_limit=32 * 1024 * 1024)
    r = start_pod(paths, [hog])
    assert r.wait() == 137
    st = r.app_state("hog")
    assert (st.reason, st.signal, st.exit_code) == ("OOMKilled", 9, 137)
    assert_clean(r)


def test_stop_escalates_to_kill_after_grace(image_paths):
    paths, img = image_paths
    stubborn = app(img, "stubborn", "trap '' TERM; echo ready; while true; do sleep 0.1; done")
    polite = app(img, "polite", "trap 'exit 0' TERM; while true; do sleep 0.1; done")
    r = start_pod(paths, [stubborn, polite])
    time.sleep(0.5)
    t = time.monotonic()
    assert control.request_stop(r.pod, timeout=1.5)
    r.wait()
    took = time.monotonic() - t
    assert 1.4 <= took < 8, took
    st = r.app_state("stubborn")
    assert (st.signal, st.exit_code) == (9, 137)
    assert r.app_state("polite").exit_code == 0
    assert_clean(r)


def test_restart_on_failure(image_paths):
    paths, img = image_paths
    flaky = app(img, "flaky", "if [ -e /data/once ]; then echo second; exit 0; fi; "
                              "touch /data/once; echo first; exit 1",
                mounts=[Mount("data", "/data")])
    r = start_pod(paths, [flaky], volumes=[Volume("data", "empty")], restart="on-failure")
    assert r.wait() == 0
    st = r.app_state("flaky")
    assert (st.restarts, st.exit_code, st.reason) == (1, 0, "Completed")
    assert r.output("flaky") == ["first", "second"]
    assert_clean(r)


def test_start_error_ends_pod_cleanly(image_paths):
    paths, img = image_paths
    bad = App(name="bad", image_id=img, image_name="busybox", exec=["/no/such/binary"])
    other = app(img, "other", "sleep 30")
    r = start_pod(paths, [bad, other])
    assert r.wait(30) == 128
    st = r.app_state("bad")
    assert st.reason == "StartError" and "/no/such/binary" in st.message
    assert r.app_state("other").state in ("exited", "created")
    assert_clean(r)


def test_exec_in_app(image_paths, capfd):
    paths, img = image_paths
    r = start_pod(paths, [app(img, "a", "echo hi > /tmp/marker; sleep 30", env={"X": "y"})])
    time.sleep(0.3)
    ctx = PodContext.load(paths, r.pod.refresh())
    s1 = get_stage1("default")
    a = ctx.manifest.app("a")
    assert s1.exec_in_app(ctx, a, ["sh", "-c", "cat /tmp/marker; echo X=$X; exit 7"],
                          False, False) == 7
    out = capfd.readouterr().out
    assert "hi" in out and "X=y" in out
    assert control.request_stop(r.pod, timeout=0, force=True)
    assert r.wait() == 137
    assert_clean(r)


def test_fly_runs_in_host_namespaces(image_paths, tmp_path):
    paths, img = image_paths
    host = tmp_path / "v"
    host.mkdir()
    (host / "f").write_text("vol\n")
    a = app(img, "fly", "readlink /proc/self/ns/net; readlink /proc/self/ns/pid; "
                        "ls /bin/busybox; cat /v/f; echo uid=$(id -u); pwd; exit 5",
            user="1000", working_dir="/tmp", mounts=[Mount("v", "/v")])
    r = start_pod(paths, [a], stage1="fly", volumes=[Volume("v", "host", str(host))])
    assert r.wait() == 5
    out = r.output("fly")
    assert out[0] == os.readlink("/proc/self/ns/net")
    assert out[1] == os.readlink("/proc/self/ns/pid")
    assert "/bin/busybox" in out and "vol" in out and "uid=1000" in out and "/tmp" in out
    assert r.app_state("fly").exit_code == 5
    assert_clean(r)


def test_fly_exec_and_stop(image_paths, capfd):
    paths, img = image_paths
    r = start_pod(paths, [app(img, "fly", "echo here > /tmp/m; sleep 30")], stage1="fly")
    time.sleep(0.3)
    ctx = PodContext.load(paths, r.pod.refresh())
    assert get_stage1("fly").exec_in_app(ctx, ctx.manifest.app("fly"),
                                         ["sh", "-c", "cat /tmp/m; exit 4"], False, False) == 4
    assert "here" in capfd.readouterr().out
    assert control.request_stop(r.pod, timeout=5)
    assert r.wait() == 143
    assert_clean(r)


def test_monitor_killed_then_journal_cleanup(image_paths):
    """kill -9 of the monitor: stop/rm/gc undo the pod from its journal alone."""
    paths, img = image_paths
    r = start_pod(paths, [app(img, "a", "sleep 60"), app(img, "b", "sleep 60")])
    time.sleep(0.3)
    pid = control.monitor_alive(r.pod)
    os.kill(pid, signal.SIGKILL)
    r.proc.wait(10)
    r.pod.refresh()
    assert r.pod.state == RUN and not r.pod.is_locked()
    lock = r.pod.lock()
    assert lock.acquire(blocking=False)
    assert cleanup_from_journal(paths, r.pod) == []
    assert cleanup_from_journal(paths, r.pod) == []   # idempotent
    r.pod.move(EXITED_GARBAGE)
    lock.close()
    assert_clean(r)
    with open("/proc/self/mountinfo") as f:
        assert r.pod.uuid not in f.read()
    from rktnetes.host.procs import _is_zombie

    for cg in glob.glob("/proc/[0-9]*/cgroup"):
        try:  # zombies aside: their parent, the killed monitor, left them to PID 1
            pid = int(cg.split("/")[2])
            assert r.pod.uuid not in Path(cg).read_text() or _is_zombie(pid), pid
        except FileNotFoundError:
            pass
