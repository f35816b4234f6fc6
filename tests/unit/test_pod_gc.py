"""Pod garbage collection and the read-only views, on pod directories without containers."""

from __future__ import annotations

import time

import pytest

from rktnetes.config import Paths
from rktnetes.fsutil import atomic_write_json
from rktnetes.pod.manifest import App, PodManifest
from rktnetes.pod.state import PodRuntime, RUNNING, AppState
from rktnetes.pod.store import (CREATING_PREFIX, EMBRYO, EXITED_GARBAGE, GARBAGE, PREPARED, RUN,
                                PodLock, PodStore)
from rktnetes.stage0 import gc as gcmod
from rktnetes.stage0.status import list_pods, pod_status
from rktnetes.store.gc import images_in_use


@pytest.fixture
def paths(tmp_path) -> Paths:
    return Paths(tmp_path / "data", tmp_path / "config")


def make_pod(paths: Paths, state: str, keep_lock: bool = False, image: str = "sha256:" + "a" * 64,
             created_at: float | None = None):
    m = PodManifest(uuid="", apps=[App("app", image, "img", ["/bin/true"])],
                    created_at=time.time() if created_at is None else created_at)
    pod, lock = PodStore(paths.pods).create(m)
    if state != EMBRYO:
        pod.move(state)
    if keep_lock:
        return pod, lock
    lock.close()
    return pod, None


def test_mark_then_sweep_after_grace(paths):
    pod, _ = make_pod(paths, EXITED_GARBAGE)
    rep = gcmod.gc(paths, grace_period=3600)
    assert rep.marked == [pod.uuid] and not rep.removed
    assert (paths.pods / GARBAGE / pod.uuid / gcmod.MARK_FILE).exists()
    gcmod.gc(paths, grace_period=3600)
    assert (paths.pods / GARBAGE / pod.uuid).is_dir()  # within the grace period
    atomic_write_json(paths.pods / GARBAGE / pod.uuid / gcmod.MARK_FILE, {"at": time.time() - 7200})
    rep = gcmod.gc(paths, grace_period=3600)
    assert rep.removed == [pod.uuid] and not (paths.pods / GARBAGE / pod.uuid).exists()


def test_mark_only_and_zero_grace(paths):
    p1, _ = make_pod(paths, EXITED_GARBAGE)
    gcmod.gc(paths, grace_period=0, mark_only=True)
    assert (paths.pods / GARBAGE / p1.uuid).is_dir()
    assert gcmod.gc(paths, grace_period=0).removed == [p1.uuid]


def test_locked_pods_are_left_alone(paths):
    pod, lock = make_pod(paths, RUN, keep_lock=True)
    e, elock = make_pod(paths, EMBRYO, keep_lock=True)
    rep = gcmod.gc(paths, grace_period=0, expire_prepared=0)
    assert not rep.removed and not rep.marked
    assert pod_status(pod).state == "running"
    lock.close()
    elock.close()


def test_dead_monitor_run_pod_is_reaped(paths):
    pod, _ = make_pod(paths, RUN)
    pod.save_app_state(AppState("app", state=RUNNING, pid=1, started_at=time.time()))
    assert pod_status(pod).state == "exited"
    rep = gcmod.gc(paths, grace_period=3600)
    assert rep.marked == [pod.uuid]
    a = pod.refresh().app_state("app")
    assert a.state == "exited" and a.reason == "Error" and a.message == "monitor died"


def test_prepared_expiry_and_abandoned_embryos(paths):
    old, _ = make_pod(paths, PREPARED, created_at=time.time() - 7200)
    new, _ = make_pod(paths, PREPARED)
    emb, _ = make_pod(paths, EMBRYO)
    leftover = paths.pods / EMBRYO / f"{CREATING_PREFIX}dead"
    leftover.mkdir()
    rep = gcmod.gc(paths, grace_period=0, expire_prepared=3600)
    assert set(rep.removed) == {old.uuid, emb.uuid}
    assert (paths.pods / PREPARED / new.uuid).is_dir()
    assert not leftover.exists()


def test_creating_dir_in_progress_is_kept(paths):
    leftover = paths.pods / EMBRYO / f"{CREATING_PREFIX}busy"
    leftover.mkdir(parents=True)
    creation = PodStore(paths.pods).creation_lock()
    creation.acquire(shared=True)   # a creator between mkdir and flock
    gcmod.gc(paths)
    assert leftover.exists()
    creation.release()
    lk = PodLock(leftover)           # a creator that holds its pod's lock
    lk.acquire()
    gcmod.gc(paths)
    assert leftover.exists()
    lk.close()
    gcmod.gc(paths)
    assert not leftover.exists()


def test_images_in_use_and_list(paths):
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    make_pod(paths, PREPARED, image=a)
    make_pod(paths, GARBAGE, image=b)
    assert images_in_use(paths) == {a, b}
    assert sorted(s.state for s in list_pods(PodStore(paths.pods))) == ["exited garbage",
                                                                          "prepared"]
    assert images_in_use(Paths(paths.data / "nope", paths.config)) == set()


def test_torn_state_files_read_as_missing(paths):
    """The monitor fsyncs only exit records: after a crash of the machine a state file may be
    empty. Listing, status and gc must still work: the pod reads as having no runtime facts
    and its app as never started."""
    pod, _ = make_pod(paths, RUN)
    (pod.path / "state.json").write_bytes(b"")
    (pod.path / "apps" / "app").mkdir(parents=True)
    (pod.path / "apps" / "app" / "state.json").write_bytes(b'{"name": "app", "sta')
    assert pod.pod_state() == PodRuntime()   # no runtime facts
    assert pod.app_state("app") == AppState(name="app")
    st = pod_status(pod)  # its lock is free: the monitor is gone
    assert st.state == "exited" and st.apps[0].state == "created"
    assert [p.uuid for p in list_pods(PodStore(paths.pods))] == [pod.uuid]
