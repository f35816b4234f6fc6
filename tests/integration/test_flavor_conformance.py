"""Every stage1 flavor through the Stage1 interface alone, the same checks for each: it declares
what it can do; it sets a pod up, starts an app on given descriptors and says how to watch it,
execs into it with given pipes, signals it, reports its exit, and undoes all of it.

The calls run in a child process that does what a monitor does (a child subreaper, waiting for
the app's process): the test process itself must not become one."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rktnetes.stage1 import FLAVORS

from .pod_helpers import assert_nothing_left, with_image

pytestmark = [pytest.mark.root, pytest.mark.containers]

DRIVER = textwrap.dedent("""
    import json, os, signal, sys
    from rktnetes.config import Paths
    from rktnetes.host import procs
    from rktnetes.pod.cleanup import cleanup_from_journal
    from rktnetes.pod.state import AppState
    from rktnetes.pod.store import EXITED_GARBAGE, RUN
    from rktnetes.stage0 import prepare
    from rktnetes.stage0.spec import AppSpec, PodSpec, PullOptions
    from rktnetes.stage1 import capabilities, get_stage1
    from rktnetes.stage1.base import PodContext
    from rktnetes.supervise import actions

    data, config, flavor = sys.argv[1:]
    paths = Paths.resolve(data, config)
    procs.set_child_subreaper()
    spec = PodSpec([AppSpec("builtin:busybox", name="app", command=["/bin/sh"],
                            args=["-c", "echo started; exec sleep 600"])], stage1=flavor)
    if capabilities(flavor).own_network:
        from rktnetes.pod.manifest import NetworkRequest
        spec.networks = [NetworkRequest("none")]
    pod, lock = prepare.prepare(paths, spec, PullOptions("never"))
    pod.move(RUN)
    s1 = get_stage1(flavor)
    out = {"caps": s1.capabilities == capabilities(flavor), "name": s1.name}
    state = actions.setup(str(paths.data), str(paths.config), pod.uuid, {})
    facts = state.pop(actions.POD_STATE)
    out["cgroup"] = facts["cgroup"]
    ctx = PodContext(paths, pod, pod.manifest(), state, facts["netns_path"])
    app = ctx.manifest.app("app")
    null = os.open(os.devnull, os.O_RDONLY)
    r, w = os.pipe()
    handle = s1.start_app(ctx, app, w, w, null)
    os.close(w)
    out["handle"] = handle.kind
    out["first_line"] = os.read(r, 100).decode()
    pod.save_app_state(AppState("app", "running", pid=handle.pid, starttime=handle.starttime,
                                boot_id=procs.boot_id()))   # as the monitor records it
    er, ew = os.pipe()
    out["exec_code"] = s1.exec_in_app(ctx, app, ["/bin/sh", "-c", "echo exec-ok; exit 5"],
                                      tty=False, interactive=False, stdio=(null, ew, ew))
    os.close(ew)
    out["exec_out"] = os.read(er, 100).decode()
    s1.signal_app(ctx, app, signal.SIGKILL)
    _, status = os.waitpid(handle.pid, 0)
    out["exit_code"] = procs.exit_code(status)
    out["oom"] = s1.app_exited(ctx, app)
    s1.cleanup_app(ctx, app)
    s1.teardown_pod(ctx)
    out["problems"] = cleanup_from_journal(paths, pod)
    pod.move(EXITED_GARBAGE)
    lock.close()
    print(json.dumps(out))
""")


@pytest.mark.parametrize("flavor", sorted(FLAVORS))
def test_flavor_through_the_interface(rkt, flavor):
    r = with_image(rkt)
    res = subprocess.run([sys.executable, "-c", DRIVER, str(r.paths.data), str(r.paths.config),
                          flavor], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parents[2])
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["caps"] and out["name"] == flavor
    assert out["handle"] == "process"
    assert out["first_line"] == "started\n"
    assert (out["exec_code"], out["exec_out"]) == (5, "exec-ok\n")
    assert out["exit_code"] == 137 and out["oom"] is False
    assert out["problems"] == []
    assert bool(out["cgroup"]) == FLAVORS[flavor].resource_limits
    r("gc", "--grace-period=0")
    assert_nothing_left(r)
