"""`rkt enter`: run a command inside a running app, through the pod's stage1."""

from __future__ import annotations

from rktnetes.config import Paths
from rktnetes.errors import NotFoundError, NotRunning, UsageError
from rktnetes.pod import state as st
from rktnetes.pod.manifest import App, PodManifest
from rktnetes.pod.store import RUN, Pod


def pick_app(m: PodManifest, name: str) -> App:
    if name:
        app = m.app(name)
        if app is None:
            raise NotFoundError(f"pod {m.uuid} has no app {name!r} "
                                f"(apps: {', '.join(a.name for a in m.apps)})")
        return app
    if len(m.apps) != 1:
        raise UsageError(f"pod {m.uuid} has {len(m.apps)} apps: choose one with --app "
                         f"({', '.join(a.name for a in m.apps)})")
    return m.apps[0]


def enter(paths: Paths, pod: Pod, app_name: str, argv: list[str], tty: bool = False,
          stdio: tuple[int, int, int] | None = None) -> int:
    """Run `argv` in an app of the running pod, interactively (our stdin, or stdio's); its
    exit code. tty: stdin is a terminal and the command gets one."""
    from rktnetes.stage1 import get_stage1
    from rktnetes.stage1.base import PodContext

    pod.refresh()
    if pod.state != RUN:
        raise NotRunning(f"pod {pod.uuid} is not running")
    m = pod.manifest()
    app = pick_app(m, app_name)
    s = pod.app_state(app.name)
    # a pod whose monitor died: its apps may still run, and what runs can be entered
    if s.state != st.RUNNING or (not pod.is_locked() and not s.process_alive()):
        if not pod.is_locked() and not any(pod.app_state(a.name).process_alive()
                                           for a in m.apps):
            raise NotRunning(f"pod {pod.uuid} is not running")
        raise NotRunning(f"app {app.name} of pod {pod.uuid} is not running")
    ctx = PodContext.load(paths, pod)
    return get_stage1(m.stage1).exec_in_app(ctx, app, argv, tty=tty, interactive=True,
                                            stdio=stdio)
