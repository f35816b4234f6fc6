"""Helpers for the pod integration tests: a store with the built-in image, pod lookups, and
checks that nothing of a pod is left on the host."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from rktnetes.pod.store import PodStore

IMAGE = "builtin:busybox"
FLAVORS = ["default", "fly"]


def need_root_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for tool in ("runc", "busybox"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")


def with_image(rkt):
    """The rkt fixture, with the built-in busybox image in its store."""
    need_root_tools()
    rkt("fetch", IMAGE)
    return rkt


def pod_dir(rkt, uuid: str) -> Path:
    return PodStore(rkt.paths.pods).find(uuid).refresh().path


def status(rkt, uuid: str, *extra: str) -> dict:
    return json.loads(rkt("status", "--format", "json", *extra, uuid).stdout)


def app_status(rkt, uuid: str, name: str = "busybox") -> dict:
    return next(a for a in status(rkt, uuid)["apps"] if a["name"] == name)


def wait_for(cond, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def log_lines(rkt, uuid: str, app: str = "busybox") -> list[str]:
    return rkt("logs", "--app", app, uuid).stdout.splitlines()


def run_detached(rkt, *args: str) -> str:
    return rkt("run", "--detach", *args).stdout.strip().splitlines()[-1]


# -- leftovers ----------------------------------------------------------------------------

def mounts_mentioning(s: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if s in line]


def cgroups_mentioning(uuid: str) -> list[str]:
    found = []
    for root, dirs, _files in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if uuid in d:
                found.append(os.path.join(root, d))
        if root.count("/") > 6:
            dirs[:] = []
    return found


def processes_mentioning(s: str) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if s.encode() in f.read():
                    out.append(int(pid))
        except OSError:
            pass
    return out


def runc_containers(rkt, uuid: str) -> list[str]:
    """The pod's containers runc still knows: its state directories (`<uuid>-<app>`) under
    the runtime root the default stage1 gives it (none yet: no container ever ran)."""
    from rktnetes.stage1.default import runtime_root

    root = runtime_root(rkt.paths)
    return [c for c in os.listdir(root) if uuid in c] if root.is_dir() else []


def assert_nothing_left(rkt, uuids: list[str] | None = None) -> None:
    """No pod directories, and no mounts, cgroups, processes or containers of `uuids`
    (or of the data directory, if none are named)."""
    left_dirs = [p for p in rkt.paths.pods.glob("*/*")] if rkt.paths.pods.exists() else []
    assert not left_dirs, f"pod directories left: {left_dirs}"
    assert not mounts_mentioning(str(rkt.paths.data)), mounts_mentioning(str(rkt.paths.data))
    for u in uuids or []:
        assert not cgroups_mentioning(u), cgroups_mentioning(u)
        assert not processes_mentioning(u), processes_mentioning(u)
        assert not runc_containers(rkt, u), runc_containers(rkt, u)
    assert not processes_mentioning(str(rkt.paths.data)), "processes of this data dir left"
