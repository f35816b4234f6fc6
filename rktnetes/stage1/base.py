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
from typing import Any

from rktnetes.config import Paths
from rktnetes.pod import resources
from rktnetes.pod.manifest import App, PodManifest
from rktnetes.pod.store import Pod


@dataclass
class PodContext:
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
        return cls(paths, pod, pod.manifest(), st.get("stage1_state", {}), st.get("netns_path", ""))

    @property
    def dir(self) -> Path:
        return self.pod.path

    @property
    def hostname(self) -> str:
        return self.manifest.hostname or f"rkt-{self.manifest.uuid}"

    def app_dir(self, name: str) -> Path:
        return self.pod.app_dir(name)

    def cid(self, app: App) -> str:
        """The container id an OCI runtime knows the app by."""
        return f"{self.manifest.uuid}-{app.name}"

    def cgroup(self, app: App | None = None) -> str:
        """The app's (or the pod's) cgroup path, the same in every hierarchy."""
        base = f"/rktnetes/{self.manifest.uuid}"
        return f"{base}/{app.name}" if app else base

    def journal(self, kind: str, app: str = "", **data: Any) -> None:
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
        resources.record(self.dir, kind, app, **data)


class Stage1:
    """One isolation flavor. Methods raise rktnetes.errors.Stage1Error with a one-line message."""

    name = ""

    def setup_pod(self, ctx: PodContext) -> None:
        """Create the pod's shared parts (namespaces, /etc files, empty volumes)."""
        raise NotImplementedError

    def start_app(self, ctx: PodContext, app: App, stdout_fd: int, stderr_fd: int,
                  stdin_fd: int) -> int:
        """Start the app with the given stdio; returns the pid the caller waits for. The
        process may be a grandchild: the caller must be a child subreaper."""
        raise NotImplementedError

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
                    interactive: bool) -> int:
        """Run a command inside the running app with our stdio; returns its exit code."""
        raise NotImplementedError
