"""Per-app runtime state, kept in `apps/<name>/state.json` beside the pod manifest.

Only the pod's monitor (or a stage0 command holding the pod's lock) writes these files;
readers (rkt status, the API service) read whole files because every write is a rename.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .manifest import field_names

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds of every `rkt` start
    from typing import Any

# App states, as the CRI names them.
CREATED = "created"
RUNNING = "running"
EXITED = "exited"
UNKNOWN = "unknown"

# Reasons an app exited.
COMPLETED = "Completed"
ERROR = "Error"
OOM_KILLED = "OOMKilled"
START_ERROR = "StartError"


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
