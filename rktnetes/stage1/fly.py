"""The `fly` flavor: one app, chrooted into its rootfs, in the host's namespaces, no cgroups.

Mount namespace: the app gets one of its own, a slave of the host's (host mounts still show up
inside, e.g. a volume plugged in later), and its rootfs overlay plus the /dev, /proc, /sys and
volume binds are made inside it. rkt fly shared the host's mount table, but then every mount is
a host mount that a crash can leak; here they vanish with the app's last process, so even a
`kill -9` of the monitor leaves the host's mount table as it was. Everything else (net, PID,
IPC, UTS, users, cgroups) is the host's, which is what system software run by fly needs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rktnetes.errors import Stage1Error, TimedOut
from rktnetes.pod.manifest import App

from . import podfiles
from rktnetes.host import mounts, procs
from rktnetes.host import namespaces as ns
from .base import AppHandle, PodContext, Stage1, check_command, signal_recorded

HOST_BINDS = ("/dev", "/proc", "/sys")


def _mountpoint(root_fd: int, target: str, source: str) -> int:
    """An O_PATH fd of the mount point for `source` at `target` in the rootfs, made where it is
    missing: `target` is resolved inside the rootfs (an image's symlink never points a mount at
    the host), and the mount goes onto the fd itself, not onto a path looked up again."""
    from rktnetes.host import inroot

    try:
        if os.path.isdir(source):
            return inroot.make_dirs_in(root_fd, target)
        return inroot.make_file_in(root_fd, target)
    except OSError as e:
        raise OSError(f"cannot mount {source} on {target}: {e.strerror or e}") from None


def _bind(root_fd: int, source: str, target: str, readonly: bool) -> None:
    from rktnetes.host import inroot

    fd = _mountpoint(root_fd, target, source)
    try:
        try:
            mounts.mount(source, inroot.fd_path(fd), "", mounts.MS_BIND | mounts.MS_REC)
            if readonly:
                # the fd names the directory under the new mount: the remount needs its root,
                # which a fresh lookup (inside the rootfs, as before) crosses into
                mounted = inroot.open_in(root_fd, target)
                try:
                    mounts.mount("none", inroot.fd_path(mounted), "",
                               mounts.MS_BIND | mounts.MS_REMOUNT | mounts.MS_RDONLY)
                finally:
                    os.close(mounted)
        except OSError as e:
            raise OSError(f"cannot mount {source} on {target}: "
                          f"{os.strerror(e.errno) if e.errno else e}") from None
    finally:
        os.close(fd)


class FlyStage1(Stage1):
    name = "fly"

    def setup_pod(self, ctx: PodContext) -> None:
        if len(ctx.manifest.apps) > self.capabilities.max_apps:
            raise Stage1Error("the fly stage1 runs exactly one app per pod")
        podfiles.make_empty_volumes(ctx.dir, ctx.manifest)

    def start_app(self, ctx: PodContext, app: App, stdout_fd: int, stderr_fd: int,
                  stdin_fd: int) -> AppHandle:
        from rktnetes.store import Store

        from . import ocispec, rootfs, users

        store = Store.open(ctx.paths)
        try:
            rec, image = rootfs.image_of(store, app.image_id)
        except Exception as e:  # noqa: BLE001 - the monitor names the app
            raise Stage1Error(str(e) or e.__class__.__name__) from None
        ov = rootfs.plan(store, rec, ctx.app_dir(app.name))
        binds = podfiles.volume_binds(ctx.dir, ctx.manifest, app)
        argv = ocispec.process_args(app, image)
        cwd = app.working_dir or image.working_dir or "/"
        interactive = app.interactive

        def enter() -> None:
            if not interactive:
                os.setsid()
            ns.unshare(ns.CLONE_NEWNS)
            mounts.mount("none", "/", "", mounts.MS_REC | mounts.MS_SLAVE)
            root = Path(rootfs.mount(ov, store, rec))
            root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            for src in HOST_BINDS:
                _bind(root_fd, src, src, False)
            for b in binds:
                _bind(root_fd, b.source, b.target, b.readonly)
            os.close(root_fd)
            if app.readonly_rootfs:
                # Only the rootfs mount itself: the /dev, /proc, /sys and volume binds on it
                # keep their own flags. Done last, since mount points had to be created first.
                mounts.mount("none", str(root), "", mounts.MS_BIND | mounts.MS_REMOUNT | mounts.MS_RDONLY)
            ident = users.resolve_in(root, app.user, app.group, app.supplementary_gids)
            env.update(dict(kv.split("=", 1) for kv in
                            ocispec.process_env(app, image, ident, os.uname().nodename)))
            os.chroot(root)
            try:
                os.chdir(cwd)
            except OSError as e:
                raise OSError(f"working directory {cwd}: {e.strerror}") from None
            os.setgroups(ident.additional_gids)
            os.setgid(ident.gid)
            os.setuid(ident.uid)

        def journal(pid: int) -> None:
            ctx.journal("process", app.name, pid=pid, starttime=procs.starttime(pid),
                        boot=procs.boot_id(), role="app")

        env: dict[str, str] = {}
        try:
            return AppHandle.process(procs.fork_exec(
                enter, argv, env, {0: stdin_fd, 1: stdout_fd, 2: stderr_fd}, before_go=journal))
        except OSError as e:  # the monitor names the app: `rkt: app NAME: <this>`
            raise Stage1Error(str(e)) from None

    def _pid(self, ctx: PodContext, app: App) -> int:
        st = ctx.pod.app_state(app.name)
        return st.pid if st.state == "running" else 0

    def signal_app(self, ctx: PodContext, app: App, sig: int) -> None:
        signal_recorded(ctx, app, sig)

    def exec_in_app(self, ctx: PodContext, app: App, argv: list[str], tty: bool,
                    interactive: bool, stdio: tuple[int, int, int] | None = None,
                    timeout: float | None = None, cancel: int = -1) -> int:
        pid = self._pid(ctx, app)
        if not pid or not procs.starttime(pid):
            raise Stage1Error(f"app {app.name} is not running")
        # a missing command: one clear line and 127, not nsenter's message
        check_command(pid, app.name, argv, app.working_dir or "/")
        ids = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Uid", "Gid"):
                    ids[k] = v.split()[0]
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(kv.decode(errors="replace").split("=", 1)
                       for kv in f.read().split(b"\0") if b"=" in kv)
        nsenter = [shutil.which("nsenter") or "/usr/bin/nsenter", "--target", str(pid), "--mount", "--root", "--wd",
                   f"--setuid={ids['Uid']}", f"--setgid={ids['Gid']}", "--", *argv]
        fds = dict(enumerate(stdio)) if stdio is not None else None
        null = -1
        if stdio is None and not interactive:
            null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            fds = {0: null}
        try:
            child = procs.spawn(nsenter, fds, env={**env, "PATH": env.get("PATH", "/bin")},
                                ctty=tty and stdio is not None)
        finally:
            if null >= 0:
                os.close(null)
        code = procs.wait_exit(child, timeout, cancel)
        if code is None:   # nsenter became the command: killing it ends the command
            os.kill(child, 9)
            procs.wait_exit(child)
            if timeout is None:
                return 128 + 9
            raise TimedOut(f"command timed out after {timeout:g}s")
        return code


STAGE1 = FlyStage1()
