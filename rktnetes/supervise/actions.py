"""The stage1 calls the monitor makes, each run in a short-lived worker forked by the
monitor's helper (rktnetes.supervise.helper).

This module (and the typed pod, store, image and OCI-spec modules it pulls in) is only ever
imported in the helper, so the long-lived monitor stays a small process. Arguments and
results are plain JSON values; errors are RktError with a one-line message.
"""

from __future__ import annotations

import importlib

from rktnetes.config import Paths
from rktnetes.errors import NotFoundError
from rktnetes.pod.store import RUN, Pod
from rktnetes.stage1 import FLAVORS, capabilities, get_stage1
from rktnetes.stage1.base import PodContext

# What the calls import on demand: the helper loads them once, before forking its workers.
# (rktnetes.net loads its submodules lazily, for the CLI's sake: name the ones setup uses.)
_PRELOAD = ("rktnetes.net", "rktnetes.net.setup", "rktnetes.net.dns", "rktnetes.net.status",
            "rktnetes.pod.cleanup", "rktnetes.fsutil", "rktnetes.store",
            "rktnetes.stage1.ocispec", "rktnetes.stage1.podfiles", "rktnetes.stage1.rootfs",
            "rktnetes.stage1.users")
# The CNI machinery, for pods on CNI networks only: a `--net=none` or `host` pod never calls it.
_PRELOAD_CNI = ("rktnetes.net.attach",)


def preload(flavor: str | None = None, cni: bool = True) -> None:
    """Import what the calls need: for every flavor, or for the one named (Stage1Error if it
    is unknown); with `cni`, what attaching to CNI networks needs too."""
    for name in _PRELOAD + (_PRELOAD_CNI if cni else ()):
        importlib.import_module(name)
    if flavor is None:
        for name in FLAVORS:
            get_stage1(name)
    else:
        get_stage1(flavor)


def _ctx(data: str, config: str, uuid: str, state: dict):
    paths = Paths.resolve(data, config)
    pod = Pod(paths.pods, uuid, RUN)
    ctx = PodContext(paths, pod, pod.manifest(), state, pod.pod_state().netns_path)
    return ctx, get_stage1(ctx.manifest.stage1)


def _app(ctx: PodContext, name: str):
    app = ctx.manifest.app(name)
    if app is None:
        raise NotFoundError(f"app {name!r} is not in pod {ctx.manifest.uuid}")
    return app


# The key of setup's result under which it hands the monitor facts for the top level of the
# pod's state.json (`netns_path`, `networks`); the rest of the result is the stage1's state.
POD_STATE = "_pod_state"


def setup(data: str, config: str, uuid: str, state: dict) -> dict:
    """The pod's networks (CNI, in a netns of its own unless it uses the host's), its
    /etc/resolv.conf, hosts and hostname, then the flavor's setup_pod. A network that fails
    leaves nothing (setup_networks undoes its own work); a failure after it is undone by
    the journal cleanup of `teardown`."""
    from rktnetes.net import NetworkStatus, pod_dns_files, setup_networks, status_entries

    ctx, s1 = _ctx(data, config, uuid, state)
    m = ctx.manifest
    if m.host_network or not capabilities(m.stage1).own_network:
        st = NetworkStatus("host")
    else:
        st = setup_networks(ctx.paths, ctx.dir, uuid, m.networks, m.ports)
    ctx.netns_path = st.netns
    pod_dns_files(ctx.dir, m, st)
    s1.setup_pod(ctx)
    return {**ctx.state, POD_STATE: {"netns_path": st.netns, "networks": status_entries(st),
                                     "cgroup": s1.pod_cgroup(ctx)}}


def start(data: str, config: str, uuid: str, state: dict, name: str,
          stdout_fd: int, stderr_fd: int, stdin_fd: int) -> dict:
    """The app's AppHandle, as JSON."""
    ctx, s1 = _ctx(data, config, uuid, state)
    return s1.start_app(ctx, _app(ctx, name), stdout_fd, stderr_fd, stdin_fd).to_json()


def signal(data: str, config: str, uuid: str, state: dict, name: str, sig: int) -> None:
    ctx, s1 = _ctx(data, config, uuid, state)
    s1.signal_app(ctx, _app(ctx, name), sig)


def exited(data: str, config: str, uuid: str, state: dict, name: str) -> bool:
    """After the app's process was reaped: was it OOM-killed? Then undo its per-run resources."""
    ctx, s1 = _ctx(data, config, uuid, state)
    app = _app(ctx, name)
    try:
        oom = s1.app_exited(ctx, app)
    except OSError:
        oom = False
    s1.cleanup_app(ctx, app)
    return oom


def teardown(data: str, config: str, uuid: str, state: dict) -> list[str]:
    """Undo the pod: the flavor's teardown, then whatever the journal still lists."""
    from rktnetes.pod.cleanup import cleanup_from_journal

    ctx, s1 = _ctx(data, config, uuid, state)
    try:
        s1.teardown_pod(ctx)
    except Exception:  # noqa: BLE001 - the journal pass below retries all of it and reports
        pass
    return cleanup_from_journal(ctx.paths, ctx.pod)


def dispatch(name: str, data: str, config: str, uuid: str, state: dict, args: list):
    """The call named `name` (the helper's request), spelled out: what the monitor asks for
    is plain to read, and no other attribute of this module can be called by a request."""
    if name == "setup":
        return setup(data, config, uuid, state, *args)
    if name == "start":
        return start(data, config, uuid, state, *args)
    if name == "signal":
        return signal(data, config, uuid, state, *args)
    if name == "exited":
        return exited(data, config, uuid, state, *args)
    if name == "teardown":
        return teardown(data, config, uuid, state, *args)
    raise NotFoundError(f"no stage1 call {name!r}")

