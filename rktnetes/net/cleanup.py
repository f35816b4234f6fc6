"""The hook `rktnetes.pod.cleanup.cleanup_from_journal` calls for each `cni` journal entry.

It DELs that one attachment from its saved configuration (no live process needed); the
`netns` entries are unmounted by the generic cleanup afterwards, or by `teardown_networks`.
"""

from __future__ import annotations

from rktnetes.config import Paths
from rktnetes.pod.resources import Resource
from rktnetes.pod.store import Pod

from .attach import teardown_attachment


def undo(paths: Paths, pod: Pod, res: Resource) -> None:
    """DEL the attachment `res` records; NetworkError (one line) when a plugin really fails."""
    if res.kind == "cni" and res.data.get("conf"):
        teardown_attachment(pod.path, res.data["conf"])
