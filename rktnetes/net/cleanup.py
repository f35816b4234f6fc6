"""The undo of `cni` journal entries, which the networking code owns (see rktnetes.pod.cleanup).

Each attachment is DELed from its saved configuration (no live process needed), newest first,
in the phase before the netns they live in is unmounted.
"""

from __future__ import annotations

from rktnetes.config import Paths
from rktnetes.pod import cleanup
from rktnetes.pod.resources import Resource
from rktnetes.pod.store import Pod

from .attach import teardown_attachment

OWNER = __name__   # what attach.py names as the owner of the entries it journals


def undo(paths: Paths, pod: Pod, res: Resource) -> None:
    """DEL the attachment `res` records; NetworkError (one line) when a plugin really fails."""
    if res.kind == "cni" and res.data.get("conf"):
        teardown_attachment(pod.path, res.data["conf"])


def _undo_all(paths: Paths, pod: Pod, items: list[Resource]) -> list[str]:
    problems: list[str] = []
    for res in reversed(items):
        cleanup.attempt(problems, f"cni {res.data.get('network')}", undo, paths, pod, res)
    return problems


cleanup.register("cni", cleanup.ATTACHMENTS, _undo_all)
