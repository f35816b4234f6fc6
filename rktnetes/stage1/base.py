"""The stage1 interface: one isolation flavor per module, all driven the same way.

The pod's monitor calls, in order: `setup_pod` once; `start_app` per app (again on restart);
`app_exited` + `cleanup_app` when an app's process was reaped; `teardown_pod` at the end.
Other processes (`rkt enter`, `rkt app exec`, `rkt stop`) build a `PodContext.load(...)` and call
`exec_in_app` / `signal_app`. Everything a flavor creates on the host is journaled first
(`ctx.journal`) so `rktnetes.pod.cleanup.cleanup_from_journal` can undo it after any crash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from rktnetes.config import Paths
from rktnetes.errors import Stage1Error
from rktnetes.pod import resources
from rktnetes.pod.manifest import App, PodManifest
from rktnetes.pod.store import Pod

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds on every pod's start
    from typing import Any


@dataclass
class PodContext:
    """What a stage1 call knows about its pod."""
    paths: Paths
    pod: Pod
    manifest: PodManifest
    # Pod-wide runtime facts a flavor keeps (infra pid, OCI runtime...), saved by the monitor in
    # the pod's state.json so other processes see them through `load`.
    state: dict[str, Any] = field(default_factory=dict)
    netns_path: str = ""   # join this (bind-mounted) network namespace instead of a new one

    @classmethod
    def load(cls, paths: Paths, pod: Pod) -> "PodContext":
        st = pod.pod_state()
        return cls(paths, pod, pod.manifest(), st.stage1_state, st.netns_path)

    @property
    def dir(self) -> Path:
        return self.pod.path

    @property
    def hostname(self) -> str:
        if self.manifest.host_uts:
            return os.uname().nodename
        return self.manifest.hostname or f"rkt-{self.manifest.uuid}"

    def app_dir(self, name: str) -> Path:
        return self.pod.app_dir(name)

    def cid(self, app: App) -> str:
        """The container id an OCI runtime knows the app by."""
        return f"{self.manifest.uuid}-{app.name}"

    def cgroup(self, app: App | None = None) -> str:
        """The app's (or the pod's) cgroup path, the same in every hierarchy."""
        parent = self.manifest.cgroup_parent.rstrip("/")
        # under a parent of the front end's (kubelet's pod cgroup), a child of our own: ours
        # to remove, the parent not
        base = f"{parent}/rktnetes-{self.manifest.uuid}" if parent else \
            f"/rktnetes/{self.manifest.uuid}"
        return f"{base}/{app.name}" if app else base

    def journal(self, kind: str, app: str = "", owner: str = "", **data: Any) -> None:
        """Record a resource before creating it. Paths inside the pod directory are stored
        relative to it: the directory moves between state directories."""
        for key in ("path", "root", "conf"):
            v = data.get(key)
            if isinstance(v, (str, Path)) and os.path.isabs(v):
                try:
                    data[key] = os.path.relpath(v, self.dir) if Path(v).is_relative_to(self.dir) \
                        else str(v)
                except ValueError:
                    data[key] = str(v)
        resources.record(self.dir, kind, app, owner, **data)


@dataclass(frozen=True)
class AppHandle:
    """What `start_app` returns: how the monitor learns of the app's exit. A host process
    ("process": the monitor, its child subreaper, reaps `pid`) is one kind; a VM's guest
    agent reporting exits over its channel will be another. Crosses the helper as JSON."""

    kind: str
    pid: int = 0
    starttime: int = 0

    @classmethod
    def process(cls, pid: int) -> "AppHandle":
        from rktnetes.host.procs import starttime

        return cls("process", pid, starttime(pid))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "pid": self.pid, "starttime": self.starttime}


class Stage1:
    """One isolation flavor. Methods raise rktnetes.errors.Stage1Error with a one-line message.
    What it can do is declared in rktnetes.stage1.FLAVORS (`capabilities`)."""

    name = ""

    @property
    def capabilities(self):
        from . import capabilities

        return capabilities(self.name)

    def pod_cgroup(self, ctx: PodContext) -> str:
        """The pod's cgroup path (the same in every hierarchy), "" for a flavor without one."""
        return ""

    def setup_pod(self, ctx: PodContext) -> None:
        """Create the pod's shared parts (namespaces, /etc files, empty volumes)."""
        raise NotImplementedError

    def start_app(self, ctx: PodContext, app: App, stdout_fd: int, stderr_fd: int,
                  stdin_fd: int) -> AppHandle:
        """Start the app with the given stdio; returns how its exit will be known (a
        process's: possibly a grandchild, so the caller must be a child subreaper)."""
        raise NotImplementedError

    def update_app(self, ctx: PodContext, app: App) -> None:
        """Apply the app's (changed) memory and CPU settings to it while it runs."""
        raise Stage1Error(f"the {self.name} stage1 cannot change an app's resources")

    def signal_app(self, ctx: PodContext, app: App, sig: int) -> None:
        raise NotImplementedError

    def app_exited(self, ctx: PodContext, app: App) -> bool:
        """Called once the app's process was reaped, before cleanup_app. True if the OOM
        killer struck it."""
        return False

    def cleanup_app(self, ctx: PodContext, app: App) -> None:
        """Undo the app's per-run resources (container, rootfs mount). Idempotent."""

    def teardown_pod(self, ctx: PodContext) -> None:
        """Undo setup_pod. Idempotent."""

    def exec_in_app(self, ctx: PodContext, app: App, argv: list[str], tty: bool,
                    interactive: bool, stdio: tuple[int, int, int] | None = None,
                    timeout: float | None = None, cancel: int = -1) -> int:
        """Run a command inside the running app; returns its exit code. stdio: the (stdin,
        stdout, stderr) descriptors it gets; None: ours (stdin only if `interactive`).
        With `tty`, its stdin/stdout are a terminal's (the caller's, or what stdio gives:
        then it is the command's controlling terminal, and resizes reach it).
        timeout: seconds, then the command is killed and TimedOut raised. cancel: an fd that
        turns readable when the caller is gone: the command is killed (exit code 137)."""
        raise NotImplementedError


def signal_recorded(ctx: PodContext, app: App, sig: int) -> None:
    """Signal the app's process as its state records it (pid, start time, boot), through a
    pidfd: a pid reused since, by anything, is never signalled."""
    from rktnetes.host import procs

    st = ctx.pod.app_state(app.name)
    if st.state != "running" or not st.pid:
        return
    if not st.starttime:   # a record older than start times: its pid is all there is
        try:
            os.kill(st.pid, sig)
        except ProcessLookupError:
            pass
        return
    procs.signal_process(st.pid, st.starttime, sig, st.boot_id)


# -- `rkt enter` / `rkt app exec`: is the command there at all? -------------------------------

NOT_FOUND_CODE, NOT_EXECUTABLE_CODE = 127, 126   # as a shell (and podman exec) report them


class ExecError(Stage1Error):
    """The command to run in an app cannot be run: 127 not found, 126 not executable."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def _stat_in_root(root_fd: int, path: str) -> os.stat_result | None:
    """What `path` names for a process whose root is `root_fd` (symlinks followed inside it,
    through rktnetes.host.inroot), or None if nothing is there."""
    from rktnetes.host import inroot

    try:
        fd = inroot.open_in(root_fd, path)
    except OSError:
        return None
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def _runnable(st: os.stat_result, uid: int, gids: set[int]) -> str:
    """"" if the file can be exec'd by uid/gids, else why not."""
    import stat as stmod

    if stmod.S_ISDIR(st.st_mode):
        return "is a directory"
    if not stmod.S_ISREG(st.st_mode):
        return "not a regular file"
    if uid == 0:
        ok = st.st_mode & 0o111
    elif st.st_uid == uid:
        ok = st.st_mode & 0o100
    elif st.st_gid in gids:
        ok = st.st_mode & 0o010
    else:
        ok = st.st_mode & 0o001
    return "" if ok else "permission denied"


def check_command(pid: int, app_name: str, argv: list[str], cwd: str = "") -> None:
    """Before running `argv` in the app whose process is `pid` (seen through /proc/PID/root,
    so volumes count): raise ExecError (127 or 126, one line) if argv[0] is not there or not
    executable, as the OCI runtime would fail with its own noisy message. Looked up in the
    process's PATH when it has no slash. Says nothing when the process cannot be inspected."""
    if not argv:
        return
    cmd = argv[0]
    root = f"/proc/{pid}/root"
    try:
        status = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                status[k] = v.split()
        uid = int(status["Uid"][1])
        gids = {int(status["Gid"][1]), *(int(g) for g in status.get("Groups", []))}
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(kv.decode(errors="replace").split("=", 1)
                       for kv in f.read().split(b"\0") if b"=" in kv)
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except (OSError, KeyError, ValueError, IndexError):
        return  # gone or not ours to read: the runtime reports what it finds
    try:
        _check_in_root(root_fd, app_name, cmd, cwd, env, uid, gids)
    finally:
        os.close(root_fd)


def _check_in_root(root_fd: int, app_name: str, cmd: str, cwd: str, env: dict[str, str],
                   uid: int, gids: set[int]) -> None:
    if not cmd:
        raise ExecError("empty command", NOT_FOUND_CODE)
    if "/" in cmd:
        candidates = [cmd if cmd.startswith("/") else os.path.join(cwd or "/", cmd)]
    else:
        path_var = env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        candidates = [os.path.join(d or ".", cmd) if d.startswith("/") else
                      os.path.join(cwd or "/", d or ".", cmd) for d in path_var.split(":")]
    denied = ""
    for c in candidates:
        st = _stat_in_root(root_fd, c)
        if st is None:
            continue
        why = _runnable(st, uid, gids)
        if not why:
            return
        denied = denied or f"{c}: {why}"
    if denied:
        raise ExecError(f"cannot run {denied} (in app {app_name})", NOT_EXECUTABLE_CODE)
    where = "" if "/" in cmd else " in $PATH"
    raise ExecError(f"{cmd}: command not found{where} (in app {app_name})", NOT_FOUND_CODE)
