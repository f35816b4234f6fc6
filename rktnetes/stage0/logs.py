"""`rkt logs`: an app's CRI-format log, whole lines, with tail, since and follow."""

from __future__ import annotations

import os
import sys

from rktnetes.errors import RktError
from rktnetes.logs import cri
from rktnetes.pod.store import RUN, Pod

from .enter import pick_app


class _LogPath(os.PathLike):
    """The app's log path wherever the pod is now: it moves from `run` to `exited-garbage`
    while a follower reads it."""

    def __init__(self, pod: Pod, app: str):
        self.pod, self.app = pod, app

    def __fspath__(self) -> str:
        try:
            self.pod.refresh()
        except RktError:
            pass
        return str(self.pod.log_path(self.app))


def _running(pod: Pod) -> bool:
    try:
        pod.refresh()
    except RktError:
        return False
    return pod.state == RUN and pod.is_locked()


def show(pod: Pod, app_name: str, follow: bool = False, tail: int | None = None,
         since: float | None = None, raw: bool = False, out=None) -> int:
    out = out or sys.stdout.buffer
    app = pick_app(pod.manifest(), app_name)
    path = _LogPath(pod, app.name)
    since_ns = int(since * 1e9) if since else 0
    t = -1 if tail is None else tail
    if follow:
        entries = cri.follow(path, lambda: not _running(pod), since_ns=since_ns, tail=t)
    else:
        entries = cri.read_entries(path, since_ns=since_ns, tail=t)
    for e in entries:
        if raw:
            out.write(cri.format_line(e.time_ns, e.stream, cri.PARTIAL if e.partial else cri.FULL,
                                      e.content))
        else:
            out.write(e.content + b"\n")
        if follow:
            out.flush()
    out.flush()
    return 0
