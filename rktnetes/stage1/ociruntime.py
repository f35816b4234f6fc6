"""The one place an OCI runtime (runc or crun) is invoked.

Runtime choice: `RKTNETES_OCI_RUNTIME` in the environment, else `runtime = "..."` in
`<config-dir>/stage1.toml`, else auto: crun only where the host is cgroup v2 unified-only
(crun refuses v1/hybrid layouts) and crun is installed; runc otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

from rktnetes.errors import Stage1Error, TimedOut

from rktnetes.host import procs

RUNTIMES = ("runc", "crun")


def cgroup_v2_unified() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _installed(name: str) -> bool:
    import shutil  # only to look one up: with bz2, lzma and zlib, ~3 ms of a pod's start

    return shutil.which(name) is not None


def select_runtime(config_dir: Path | None) -> str:
    want = os.environ.get("RKTNETES_OCI_RUNTIME", "")
    if not want and config_dir is not None:
        try:
            with open(config_dir / "stage1.toml", "rb") as f:
                import tomllib  # only when there is a file: ~5 ms on every pod's start

                want = str(tomllib.load(f).get("runtime", ""))
        except FileNotFoundError:
            pass
        except ValueError as e:
            raise Stage1Error(f"{config_dir / 'stage1.toml'}: {e}") from None
    want = want or "auto"
    if want == "auto":
        return "crun" if cgroup_v2_unified() and _installed("crun") else "runc"
    if want not in RUNTIMES:
        raise Stage1Error(f"unknown OCI runtime {want!r} (use runc, crun or auto)")
    if want == "crun" and not cgroup_v2_unified():
        return "runc"  # crun refuses hybrid/v1 cgroup layouts; runc handles them
    if not _installed(want):
        raise Stage1Error(f"OCI runtime {want} is not installed")
    return want


class OCIRuntime:
    def __init__(self, binary: str, root: Path):
        self.binary = binary
        self.root = root

    def _argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    def exists(self, cid: str) -> bool:
        return (self.root / cid).is_dir()

    def run_detached(self, cid: str, bundle: Path, pid_file: Path, log_file: Path,
                     stdio: tuple[int, int, int]) -> int:
        """Create and start the container; its stdio are `stdio`. Returns its init's pid."""
        self.root.mkdir(parents=True, exist_ok=True)
        argv = self._argv("--log", str(log_file), "--log-format", "json", "run", "--detach",
                          "--pid-file", str(pid_file), "--bundle", str(bundle), cid)
        # its own session: a ^C at the terminal of `rkt run` is for the monitor, not the app
        pid = procs.spawn(argv, {0: stdio[0], 1: stdio[1], 2: stdio[2]}, setsid=True)
        _, status = os.waitpid(pid, 0)
        if procs.exit_code(status) != 0:
            raise Stage1Error(f"{self.binary} run: {_last_error(log_file)}")
        return int(pid_file.read_text().strip())

    def spawn_foreground(self, cid: str, bundle: Path, log_file: Path,
                         stdio: tuple[int, int, int]) -> int:
        """`runc run` in the foreground (for interactive apps: it handles the terminal and
        forwards signals). Returns the runtime's pid; its exit status is the app's."""
        self.root.mkdir(parents=True, exist_ok=True)
        argv = self._argv("--log", str(log_file), "--log-format", "json", "run",
                          "--bundle", str(bundle), cid)
        return procs.spawn(argv, {0: stdio[0], 1: stdio[1], 2: stdio[2]})

    def kill(self, cid: str, sig: int | str, all_procs: bool = False) -> None:
        args = ["kill", *(["--all"] if all_procs else []), cid, str(sig)]
        res = procs.run(self._argv(*args))
        if res.returncode != 0 and not _gone(res.err_line):
            raise Stage1Error(f"{self.binary} kill {cid}: {res.err_line}")

    def delete(self, cid: str) -> None:
        """Forcibly delete (kills what is left); a container already gone is fine."""
        if not self.exists(cid):
            return
        res = procs.run(self._argv("delete", "--force", cid))
        if res.returncode != 0 and not _gone(res.err_line) and self.exists(cid):
            raise Stage1Error(f"{self.binary} delete {cid}: {res.err_line}")

    def update(self, cid: str, resources_file: Path) -> None:
        """`runc update`: apply the OCI `linux.resources` in `resources_file` to a running
        container's cgroups."""
        res = procs.run(self._argv("update", "--resources", str(resources_file), cid))
        if res.returncode != 0:
            raise Stage1Error(f"{self.binary} update {cid}: {res.err_line}")

    def state(self, cid: str) -> dict:
        res = procs.run(self._argv("state", cid))
        if res.returncode != 0:
            return {}
        return json.loads(res.stdout)

    def exec(self, cid: str, argv: list[str], tty: bool, env: list[str], cwd: str = "",
             user: str = "", stdio: tuple[int, int, int] | None = None,
             timeout: float | None = None, pid_file: Path | None = None,
             cancel: int = -1) -> int:
        """Run a command in the container with our stdio (or `stdio`: stdin, stdout, stderr);
        returns its exit code. After `timeout` seconds the command is killed (its pid is
        read from `pid_file`, which runc writes) and TimedOut raised; once `cancel` (an fd)
        is readable, it is killed and 137 returned (the caller is gone)."""
        args = ["exec", *(["--tty"] if tty else []), *(f"--env={e}" for e in env)]
        if cwd:
            args.append(f"--cwd={cwd}")
        if user:
            args.append(f"--user={user}")
        if pid_file is not None:
            with contextlib.suppress(FileNotFoundError):
                pid_file.unlink()
            args.append(f"--pid-file={pid_file}")
        fds = dict(enumerate(stdio)) if stdio is not None else None
        # a terminal handed in: runc resizes the container's on each SIGWINCH it gets from it
        pid = procs.spawn(self._argv(*args, cid, *argv), fds, ctty=tty and stdio is not None)
        code = procs.wait_exit(pid, timeout, cancel)
        if code is not None:
            return code
        try:   # runc exec waits for its process: killing that one ends both
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL) if pid_file else None
            if procs.wait_exit(pid, 2.0) is None:
                os.kill(pid, signal.SIGKILL)
                procs.wait_exit(pid)
        finally:
            if pid_file is not None:
                with contextlib.suppress(FileNotFoundError):
                    pid_file.unlink()
        if timeout is None:
            return 128 + signal.SIGKILL
        raise TimedOut(f"command timed out after {timeout:g}s")


def _gone(msg: str) -> bool:
    m = msg.lower()
    return "does not exist" in m or "not exist" in m or "not found" in m or "not running" in m


def _last_error(log_file: Path) -> str:
    """The runtime's last error message from its JSON log."""
    msg = ""
    try:
        for line in log_file.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("level") in ("error", "fatal"):
                msg = str(entry.get("msg", ""))
    except FileNotFoundError:
        pass
    return (msg or "failed (no error message)").splitlines()[0]


# -- undoing what the journal records of us (rktnetes.pod.cleanup) ----------------------------

def _undo_containers(paths, pod, items) -> list[str]:
    """`runc` entries: delete each container (killing what is left in it), newest first."""
    from rktnetes.pod.cleanup import absolute, attempt

    problems: list[str] = []
    for res in reversed(items):
        rt = OCIRuntime(res.data.get("runtime", "runc"), Path(absolute(pod, res.data["root"])))
        attempt(problems, f"container {res.data['id']}", rt.delete, res.data["id"])
    return problems


def _register() -> None:
    from rktnetes.pod import cleanup

    cleanup.register("runc", cleanup.CONTAINERS, _undo_containers)


_register()
