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

from rktnetes.errors import Stage1Error
from rktnetes.pod.manifest import App

from . import podfiles, proc
from . import sys as lsys
from .base import PodContext, Stage1, check_command

HOST_BINDS = ("/dev", "/proc", "/sys")


def _mkpoint(root: Path, target: str, like: str) -> Path:
    p = root / target.lstrip("/")
    if os.path.isdir(like):
        p.mkdir(parents=True, exist_ok=True)
    elif not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()
    return p


class FlyStage1(Stage1):
    name = "fly"

    def setup_pod(self, ctx: PodContext) -> None:
        if len(ctx.manifest.apps) > 1:
            raise Stage1Error("the fly stage1 runs exactly one app per pod")
        podfiles.make_empty_volumes(ctx.dir, ctx.manifest)

    def start_app(self, ctx: PodContext, app: App, stdout_fd: int, stderr_fd: int,
                  stdin_fd: int) -> int:
        from rktnetes.store import Store

        from . import ocispec, rootfs, users

        store = Store(ctx.paths.store)
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
            lsys.unshare(lsys.CLONE_NEWNS)
            lsys.mount("none", "/", "", lsys.MS_REC | lsys.MS_SLAVE)
            root = Path(rootfs.mount(ov, store, rec))
            for src in HOST_BINDS:
                lsys.mount(src, str(_mkpoint(root, src, src)), "", lsys.MS_BIND | lsys.MS_REC)
            for b in binds:
                target = str(_mkpoint(root, b.target, b.source))
                lsys.mount(b.source, target, "", lsys.MS_BIND | lsys.MS_REC)
                if b.readonly:
                    lsys.mount("none", target, "",
                               lsys.MS_BIND | lsys.MS_REMOUNT | lsys.MS_RDONLY)
            if app.readonly_rootfs:
                # Only the rootfs mount itself: the /dev, /proc, /sys and volume binds on it
                # keep their own flags. Done last, since mount points had to be created first.
                lsys.mount("none", str(root), "", lsys.MS_BIND | lsys.MS_REMOUNT | lsys.MS_RDONLY)
            ident = users.resolve_in(root, app.user, app.group, app.supplementary_gids)
            env.update(dict(kv.split("=", 1) for kv in
                            ocispec.process_env(app, image, ident, os.uname().nodename)))
            os.chroot(root)
            os.chdir(cwd)
            os.setgroups(ident.additional_gids)
            os.setgid(ident.gid)
            os.setuid(ident.uid)

        def journal(pid: int) -> None:
            ctx.journal("process", app.name, pid=pid, starttime=lsys.starttime(pid), role="app")

        env: dict[str, str] = {}
        try:
            return proc.fork_exec(enter, argv, env, {0: stdin_fd, 1: stdout_fd, 2: stderr_fd},
                                  before_go=journal)
        except OSError as e:  # the monitor names the app: `rkt: app NAME: <this>`
            raise Stage1Error(str(e)) from None

    def _pid(self, ctx: PodContext, app: App) -> int:
        st = ctx.pod.app_state(app.name)
        return st.pid if st.state == "running" else 0

    def signal_app(self, ctx: PodContext, app: App, sig: int) -> None:
        pid = self._pid(ctx, app)
        if pid:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def exec_in_app(self, ctx: PodContext, app: App, argv: list[str], tty: bool,
                    interactive: bool) -> int:
        pid = self._pid(ctx, app)
        if not pid or not lsys.starttime(pid):
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
        fds = None
        null = -1
        if not interactive:
            null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            fds = {0: null}
        try:
            child = proc.spawn(nsenter, fds, env={**env, "PATH": env.get("PATH", "/bin")})
        finally:
            if null >= 0:
                os.close(null)
        _, status = os.waitpid(child, 0)
        return proc.exit_code(status)


STAGE1 = FlyStage1()
