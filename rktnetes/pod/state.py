"""Typed views of a pod's runtime state: `apps/<name>/state.json` (AppState) and the pod's own
`state.json` (PodRuntime), whose files and fields rktnetes.pod.protocol names.

Only the pod's monitor (or a stage0 command holding the pod's lock) writes these files;
readers (rkt status, the API service, the CRI server) read whole files, every write a rename.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .manifest import field_names
from .protocol import (COMPLETED, CREATED, ERROR, EXITED, OOM_KILLED, RUNNING,  # noqa: F401
                       START_ERROR, UNKNOWN)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds of every `rkt` start
    from typing import Any


@dataclass
class AppState:
    """An app's runtime state (`apps/<name>/state.json`)."""

    name: str
    state: str = CREATED
    pid: int = 0
    exit_code: int | None = None
    signal: int = 0               # the signal that ended it, if any
    reason: str = ""              # Completed | Error | OOMKilled | StartError
    message: str = ""             # why it failed to start, for humans
    created_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    restarts: int = 0
    starttime: int = 0            # of `pid` (/proc/PID/stat): pid and starttime name it
    boot_id: str = ""             # ... in this boot (/proc/sys/kernel/random/boot_id)
    stop_signal: int = 0          # the signal its monitor sent it to stop it, if any
    stop_fatal: bool = False      # ... and that signal was certain to end it

    def process_alive(self) -> bool:
        """Its recorded process still runs (whoever watches it, or nobody)."""
        from rktnetes.host.procs import alive

        return self.state == RUNNING and alive(self.pid, self.starttime, self.boot_id)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "AppState":
        names = field_names(cls)
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class PodRuntime:
    """The pod's runtime state (`state.json`): what its monitor and its stage1 found out."""

    monitor_pid: int = 0
    monitor_starttime: int = 0
    stage1: str = ""
    ready: bool = False           # set up and its apps started
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int | None = None
    setup_error: str = ""         # why the pod could not be set up
    error: str = ""               # why it ended badly (its monitor died, say)
    infra_pid: int = 0
    netns_path: str = ""          # the network namespace its apps join ("" for the host's)
    networks: list[dict] = field(default_factory=list)   # net.status_entries
    cgroup: str = ""              # the pod's cgroup path, where its flavor has one
    stage1_state: dict = field(default_factory=dict)    # the flavor's own facts

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "PodRuntime":
        """Lenient: unknown keys dropped, a field of the wrong type read as its default (a
        hand-edited or torn file is never a traceback)."""
        out = cls()
        if not isinstance(d, dict):
            return out
        for k, default in asdict(out).items():
            v = d.get(k, default)
            if v is None and default is None:
                setattr(out, k, None)
            elif isinstance(default, bool):
                setattr(out, k, bool(v))
            elif isinstance(default, (int, float)) and not isinstance(default, bool):
                try:
                    setattr(out, k, type(default)(v))
                except (TypeError, ValueError):
                    pass
            elif default is None:
                setattr(out, k, v if isinstance(v, int) and not isinstance(v, bool) else None)
            elif isinstance(v, type(default)):
                setattr(out, k, v)
        return out
