"""stage0 as a library, as a gRPC server will call it: typed entries, from several worker threads
at once, stdio handed in as descriptors, errors told apart by their kind. Real pods, no CLI."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from rktnetes import errors
from rktnetes.pod.manifest import NetworkRequest
from rktnetes.pod.store import PodStore
from rktnetes.stage0 import apps, fetch, rm, stop
from rktnetes.stage0.spec import AppSpec, PodSpec, PullOptions

from .pod_helpers import IMAGE, assert_nothing_left, need_root_tools

pytestmark = [pytest.mark.root, pytest.mark.containers]

NONE = [NetworkRequest("none")]
NEVER = PullOptions("never")


@pytest.fixture
def paths(rkt):
    need_root_tools()
    fetch.fetch(rkt.paths, IMAGE, "new")
    return rkt.paths


def exec_captured(paths, pod, name: str, argv: list[str]) -> tuple[int, bytes, bytes]:
    """Run argv in the app with pipes for its stdio (as ExecSync will)."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    os.close(in_w)
    result: dict[str, bytes] = {}

    def drain(fd: int, key: str) -> None:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        os.close(fd)
        result[key] = b"".join(chunks)

    readers = [threading.Thread(target=drain, args=(out_r, "out")),
               threading.Thread(target=drain, args=(err_r, "err"))]
    for t in readers:
        t.start()
    try:
        code = apps.exec_in(paths, pod, name, argv, stdio=(in_r, out_w, err_w))
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    for t in readers:
        t.join(30)
    return code, result["out"], result["err"]


def one_pod_life(paths, n: int, launcher=None) -> str:
    pod = apps.sandbox(paths, PodSpec(apps=[], networks=NONE), launcher=launcher)
    name = apps.add(paths, pod, AppSpec(IMAGE, name=f"app{n}", command=["/bin/sleep"],
                                        args=["600"]), NEVER)
    apps.start(paths, pod, name)
    code, out, err = exec_captured(paths, pod, name, ["/bin/sh", "-c",
                                                      f"echo out-{n}; echo err-{n} >&2; exit 3"])
    assert (code, out, err) == (3, f"out-{n}\n".encode(), f"err-{n}\n".encode())
    st = apps.stop(paths, pod, name, timeout=2)
    assert st.state == "exited"
    apps.rm(paths, pod, name)
    stop.stop(paths, pod, timeout=5)
    rm.rm(paths, pod)
    return pod.uuid


def test_pods_made_used_and_removed_from_many_threads_at_once(paths):
    with ThreadPoolExecutor(4) as ex:
        uuids = list(ex.map(lambda n: one_pod_life(paths, n), range(4)))
    assert len(set(uuids)) == 4
    assert_nothing_left(type("R", (), {"paths": paths})(), uuids)


def test_error_kinds(paths):
    with pytest.raises(errors.RktError) as e:
        PodStore(paths.pods).find("00000000-dead-beef")
    assert e.value.kind == errors.NOT_FOUND
    pod = apps.sandbox(paths, PodSpec(apps=[], networks=NONE))
    try:
        spec = AppSpec(IMAGE, name="web", command=["/bin/sleep"], args=["600"])
        apps.add(paths, pod, spec, NEVER)
        with pytest.raises(errors.RktError) as e:      # the same name twice
            apps.add(paths, pod, spec, NEVER)
        assert e.value.kind == errors.ALREADY_EXISTS
        with pytest.raises(errors.RktError) as e:      # a bad spec, refused before any image
            apps.add(paths, pod, AppSpec(IMAGE, name="x", working_dir="relative"), NEVER)
        assert e.value.kind == errors.INVALID_ARGUMENT
        with pytest.raises(errors.RktError) as e:
            apps.add(paths, pod, AppSpec("docker.io/library/not-here:1", name="y"), NEVER)
        assert e.value.kind == errors.NOT_FOUND
        with pytest.raises(errors.RktError) as e:
            apps.exec_in(paths, pod, "web", ["/bin/true"])  # created, never started
        assert e.value.kind == errors.FAILED_PRECONDITION
    finally:
        stop.stop(paths, pod, timeout=5)
    with pytest.raises(errors.RktError) as e:          # a stopped pod
        apps.add(paths, pod, AppSpec(IMAGE, name="late", command=["/bin/true"]), NEVER)
    assert e.value.kind == errors.FAILED_PRECONDITION
    rm.rm(paths, pod)


def test_a_sandbox_from_a_thread_installs_no_signal_handler(paths):
    """A sandbox's start used to install a SIGINT handler, which Python allows in the main
    thread only: from a worker thread it failed."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    with ThreadPoolExecutor(1) as ex:
        pod = ex.submit(apps.sandbox, paths, PodSpec(apps=[], networks=NONE)).result()
    assert signal.getsignal(signal.SIGINT) is before
    stop.stop(paths, pod, timeout=5)
    rm.rm(paths, pod)


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rpartition(")")[2].split()[1])


def test_monitors_forked_by_a_launcher_live_without_it(paths):
    """A long-lived front end's launcher forks the monitors (supervise.launcher): from many
    threads at once; a monitor it forked runs its pod's calls itself and outlives a `kill -9`
    of the launcher, which the next sandbox starts again."""
    import signal

    from rktnetes.supervise.launcher import Launcher

    launcher = Launcher()
    try:
        with ThreadPoolExecutor(4) as ex:
            uuids = list(ex.map(lambda n: one_pod_life(paths, n, launcher), range(4)))
        assert len(set(uuids)) == 4
        pod = apps.sandbox(paths, PodSpec(apps=[], networks=NONE), launcher=launcher)
        monitor = pod.pod_state().monitor_pid
        first = launcher._proc.pid
        assert parent_of(monitor) == first
        os.kill(first, signal.SIGKILL)
        launcher._proc.wait(10)
        name = apps.add(paths, pod, AppSpec(IMAGE, name="after", command=["/bin/sleep"],
                                            args=["600"]), NEVER)
        apps.start(paths, pod, name)                       # the orphaned monitor still acts
        assert exec_captured(paths, pod, name, ["/bin/echo", "on"])[:2] == (0, b"on\n")
        other = apps.sandbox(paths, PodSpec(apps=[], networks=NONE), launcher=launcher)
        assert launcher._proc.pid != first
        assert parent_of(other.pod_state().monitor_pid) == launcher._proc.pid
        for p in (pod, other):
            stop.stop(paths, p, timeout=5)
            rm.rm(paths, p)
        uuids += [pod.uuid, other.uuid]
    finally:
        launcher.close()
    assert_nothing_left(type("R", (), {"paths": paths})(), uuids)
