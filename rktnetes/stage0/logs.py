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
         since: float | None = None, raw: bool = False, out=None, err=None) -> int:
    """Print the app's log in time order: stdout lines to `out`, stderr lines to `err` (as
    podman logs does); `raw` prints the CRI lines themselves, all to `out`."""
    out = out or sys.stdout.buffer
    err = err or sys.stderr.buffer
    app = pick_app(pod.manifest(), app_name)
    path = _LogPath(pod, app.name)
    since_ns = int(since * 1e9) if since else 0
    t = -1 if tail is None else tail
    if follow:
        entries = cri.follow(path, lambda: not _running(pod), since_ns=since_ns, tail=t)
    else:
        entries = cri.read_entries(path, since_ns=since_ns, tail=t)
    last = None
    for e in entries:
        if raw:
            dest = out
            data = cri.format_line(e.time_ns, e.stream, cri.PARTIAL if e.partial else cri.FULL,
                                   e.content)
        else:
            dest = err if e.stream == "stderr" else out
            data = e.content + b"\n"
        if last is not None and dest is not last:
            last.flush()  # the two streams share a terminal: keep their lines in order
        dest.write(data)
        last = dest
        if follow:
            dest.flush()
    out.flush()
    err.flush()
    return 0
