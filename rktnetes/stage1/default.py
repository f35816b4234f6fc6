"""The `default` flavor: each app an OCI bundle run by runc (or crun), sharing the network,
IPC and UTS namespaces of the pod's infra process (`catatonit -P`), each in its own mount and
PID namespace and cgroup, its rootfs an overlay over the shared layer cache.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rktnetes.errors import Stage1Error
from rktnetes.pod.manifest import App

from rktnetes.host import cgroups, procs
from rktnetes.host import mounts
from rktnetes.host import namespaces as ns
from .base import AppHandle, PodContext, Stage1, check_command, signal_recorded
from . import ociruntime
from .ociruntime import OCIRuntime, select_runtime

INFRA = ["catatonit", "-P"]
SHM_SIZE = "64m"


def runtime_root(paths) -> Path:
    """Where the OCI runtime keeps the state of this data directory's containers."""
    return paths.data / "runc"


def _runtime(ctx: PodContext) -> OCIRuntime:
    name = ctx.state.get("oci_runtime") or select_runtime(ctx.paths.config)
    return OCIRuntime(name, runtime_root(ctx.paths))


class DefaultStage1(Stage1):
    name = "default"

    def setup_pod(self, ctx: PodContext) -> None:
        from . import podfiles

        ctx.state["oci_runtime"] = select_runtime(ctx.paths.config)
        missing = [n for n in podfiles.ETC_FILES if not (ctx.dir / "etc" / n).exists()]
        if missing:  # written with the pod's networks (supervise.actions.setup), before us
            raise Stage1Error(f"pod {ctx.manifest.uuid}: no etc/{missing[0]} to bind-mount")
        podfiles.make_empty_volumes(ctx.dir, ctx.manifest)
        ctx.journal("cgroup", path=ctx.cgroup())   # the apps' parent; the runtime creates it
        # one /dev/shm for the whole pod, as the apps share an IPC namespace
        shm = ctx.dir / "shm"
        shm.mkdir(exist_ok=True)
        ctx.journal("mount", path=str(shm))
        mounts.mount("shm", str(shm), "tmpfs", mounts.MS_NOSUID | mounts.MS_NODEV | mounts.MS_NOEXEC,
                   f"mode=1777,size={SHM_SIZE}")
        hostname, netns = ctx.hostname, ctx.netns_path
        # The network namespace: the one the networking code made for the pod (CNI or
        # loopback only); the host's own for a host-network pod; a fresh loopback-only one
        # when neither was given (a pod set up without the networking code).
        host_net = ctx.manifest.host_network and not netns
        host_uts = ctx.manifest.host_uts and host_net

        def enter_namespaces() -> None:
            os.setsid()  # out of the terminal's process group: ^C is for the monitor
            if host_uts:   # the host's name too (a Kubernetes host-network pod)
                ns.unshare(ns.CLONE_NEWIPC)
                return
            if netns:
                ns.setns(netns, ns.CLONE_NEWNET)
                ns.unshare(ns.CLONE_NEWIPC | ns.CLONE_NEWUTS)
            elif host_net:
                ns.unshare(ns.CLONE_NEWIPC | ns.CLONE_NEWUTS)
            else:
                ns.unshare(ns.CLONE_NEWNET | ns.CLONE_NEWIPC | ns.CLONE_NEWUTS)
                ns.loopback_up()
            import _socket  # not `socket`: what it adds costs milliseconds, per pod

            _socket.sethostname(hostname)

        def journal(pid: int) -> None:
            ctx.journal("process", pid=pid, starttime=procs.starttime(pid),
                        boot=procs.boot_id(), role="infra")

        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            pid = procs.fork_exec(enter_namespaces, INFRA, {"PATH": os.environ.get("PATH", "")},
                                 {0: null, 1: null, 2: null}, before_go=journal)
        except OSError as e:
            raise Stage1Error(f"cannot start the pod's infra process: {e}") from None
        finally:
            os.close(null)
        ctx.state["infra_pid"] = pid
        ctx.state["infra_starttime"] = procs.starttime(pid)

    def _ns_paths(self, ctx: PodContext) -> dict[str, str]:
        pid = ctx.state.get("infra_pid")
        if not pid or procs.starttime(pid) != ctx.state.get("infra_starttime"):
            raise Stage1Error(f"pod {ctx.manifest.uuid}: its infra process is gone")
        return {k: f"/proc/{pid}/ns/{n}" for k, n in
                (("network", "net"), ("ipc", "ipc"), ("uts", "uts"))}

    def pod_cgroup(self, ctx: PodContext) -> str:
        return ctx.cgroup()

    def start_app(self, ctx: PodContext, app: App, stdout_fd: int, stderr_fd: int,
                  stdin_fd: int) -> AppHandle:
        try:
            return AppHandle.process(self._start(ctx, app, (stdin_fd, stdout_fd, stderr_fd)))
        except BaseException:
            try:
                self.cleanup_app(ctx, app)
            except Exception:  # noqa: BLE001 - the start error is the one to report
                pass
            raise

    def _start(self, ctx: PodContext, app: App, stdio: tuple[int, int, int]) -> int:
        from rktnetes.store import Store

        from . import ocispec, podfiles, rootfs, users

        store = Store.open(ctx.paths)
        try:
            rec, image = rootfs.image_of(store, app.image_id)
        except Exception as e:  # noqa: BLE001 - NotFound, a broken record, ...
            raise Stage1Error(f"app {app.name}: {e}") from None
        app_dir = ctx.app_dir(app.name)
        bundle = app_dir / "bundle"
        bundle.mkdir(parents=True, exist_ok=True)
        ov = rootfs.plan(store, rec, app_dir)
        ctx.journal("mount", app.name, path=ov.target)
        rootfs.mount(ov, store, rec)
        ident = users.resolve_in(Path(ov.target), app.user, app.group, app.supplementary_gids)
        binds = podfiles.etc_binds(ctx.dir)
        binds.append(ocispec.BindMount("/dev/shm", str(ctx.dir / "shm")))
        binds += podfiles.volume_binds(ctx.dir, ctx.manifest, app)
        inputs = ocispec.SpecInputs(rootfs=ov.target, identity=ident, hostname=ctx.hostname,
                                    namespace_paths=self._ns_paths(ctx), binds=binds,
                                    cgroups_path=ctx.cgroup(app),
                                    seccomp_profile=_seccomp_profile(app),
                                    sysctls=dict(ctx.manifest.sysctls))
        spec = ocispec.build_spec(app, image, inputs)
        from rktnetes.fsutil import atomic_write_bytes

        # compact (the C encoder); not fsync'd: written anew at each start, and runc keeps
        # its own copy in its state for as long as the container exists
        atomic_write_bytes(bundle / "config.json", json.dumps(spec).encode(), durable=False)
        rt = _runtime(ctx)
        ctx.journal("cgroup", app.name, path=ctx.cgroup(app))
        ctx.journal("runc", app.name, owner=ociruntime.__name__, id=ctx.cid(app),
                    root=str(rt.root), runtime=rt.binary)
        rt.delete(ctx.cid(app))  # a leftover of a crashed earlier run of this app
        log_file = app_dir / "runtime.log"
        if app.interactive:
            return rt.spawn_foreground(ctx.cid(app), bundle, log_file, stdio)
        return rt.run_detached(ctx.cid(app), bundle, app_dir / "pid", log_file, stdio)

    def signal_app(self, ctx: PodContext, app: App, sig: int) -> None:
        if app.interactive:  # runc runs in the foreground and forwards what it gets
            signal_recorded(ctx, app, sig)
            return
        _runtime(ctx).kill(ctx.cid(app), sig)

    def update_app(self, ctx: PodContext, app: App) -> None:
        from rktnetes.fsutil import atomic_write_bytes

        from . import ocispec

        rt = _runtime(ctx)
        if not rt.exists(ctx.cid(app)):
            raise Stage1Error(f"app {app.name} is not running")
        res = ocispec.limits(app)
        if "memory" in res:   # runc refuses a limit below the swap limit it set before
            res["memory"]["swap"] = -1
        path = ctx.app_dir(app.name) / "resources.json"
        atomic_write_bytes(path, json.dumps(res).encode(), durable=False)
        rt.update(ctx.cid(app), path)

    def app_exited(self, ctx: PodContext, app: App) -> bool:
        return cgroups.oom_kills(ctx.cgroup(app)) > 0

    def cleanup_app(self, ctx: PodContext, app: App) -> None:
        _runtime(ctx).delete(ctx.cid(app))
        for mp in mounts.mounts_under(str(ctx.app_dir(app.name) / "rootfs")):
            mounts.umount(mp)
        cgroups.remove(ctx.cgroup(app))

    def teardown_pod(self, ctx: PodContext) -> None:
        from rktnetes.host.procs import kill_process

        pid = ctx.state.get("infra_pid")
        if pid:
            kill_process(pid, ctx.state.get("infra_starttime", 0))
        for mp in mounts.mounts_under(str(ctx.dir / "shm")):
            mounts.umount(mp)
        cgroups.remove(ctx.cgroup())

    def exec_in_app(self, ctx: PodContext, app: App, argv: list[str], tty: bool,
                    interactive: bool, stdio: tuple[int, int, int] | None = None,
                    timeout: float | None = None, cancel: int = -1) -> int:
        rt = _runtime(ctx)
        if not rt.exists(ctx.cid(app)):
            raise Stage1Error(f"app {app.name} is not running")
        pid = self._init_pid(ctx, app, rt)
        if pid:  # a missing command: one clear line and 127, not the runtime's log line
            check_command(pid, app.name, argv, self._cwd(ctx, app))
        if stdio is not None:
            pid_file = None
            if timeout is not None or cancel >= 0:   # one per exec: several may run at once
                import secrets

                pid_file = ctx.app_dir(app.name) / f"exec-{secrets.token_hex(6)}.pid"
            return rt.exec(ctx.cid(app), argv, tty, [], stdio=stdio, timeout=timeout,
                           pid_file=pid_file, cancel=cancel)
        if interactive or tty:
            return rt.exec(ctx.cid(app), argv, tty, [])
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return rt.exec(ctx.cid(app), argv, tty, [], stdio=(null, 1, 2))
        finally:
            os.close(null)

    def _init_pid(self, ctx: PodContext, app: App, rt: OCIRuntime) -> int:
        """The host pid of the app's container init (for an interactive app the pid the
        monitor knows is the runtime's own, in the foreground)."""
        if not app.interactive:
            return ctx.pod.app_state(app.name).pid
        try:
            with open(rt.root / ctx.cid(app) / "state.json") as f:
                return int(json.load(f).get("init_process_pid") or 0)
        except (OSError, ValueError, AttributeError, TypeError):
            return 0

    def _cwd(self, ctx: PodContext, app: App) -> str:
        try:
            with open(ctx.app_dir(app.name) / "bundle" / "config.json") as f:
                return str(json.load(f)["process"].get("cwd") or "/")
        except (OSError, ValueError, KeyError, AttributeError, TypeError):
            return "/"


def _seccomp_profile(app: App) -> dict | None:
    """A `localhost/PATH` profile: the host file's JSON (the front end's, as kubelet's
    seccomp directory holds them)."""
    if not app.seccomp.startswith("localhost/"):
        return None
    path = app.seccomp.removeprefix("localhost/")
    try:
        with open(path) as f:
            prof = json.load(f)
    except (OSError, ValueError) as e:
        raise Stage1Error(f"app {app.name}: seccomp profile {path}: "
                          f"{getattr(e, 'strerror', None) or e}") from None
    if not isinstance(prof, dict) or "defaultAction" not in prof:
        raise Stage1Error(f"app {app.name}: seccomp profile {path}: not a seccomp profile "
                          f"(no defaultAction)")
    return prof


STAGE1 = DefaultStage1()
