"""What an app's end means, as pure functions the monitor applies: its exit code and signal,
its reason, whether and when it starts again, the pod's exit code."""

from __future__ import annotations

import os
import signal

START_ERROR_CODE = 128          # what Kubernetes reports for a container that never started
SETUP_ERROR_CODE = 1            # the pod itself could not be set up: as any other rkt failure
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 10.0


def exit_status(status: int, stood_for: int = 0, oom: bool = False) -> tuple[int, int]:
    """(exit code as a shell reports it, the signal that ended it or 0) of a wait status.
    `stood_for`: the stop signal a SIGKILL of ours took the place of (its PID namespace's init
    would have had the kernel drop it): reported as the death by that signal (143 for TERM)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if stood_for and sig == signal.SIGKILL and not oom:
            return 128 + stood_for, stood_for
        return 128 + sig, sig
    return os.waitstatus_to_exitcode(status), 0


def reason(code: int, oom: bool) -> str:
    return "OOMKilled" if oom else ("Completed" if code == 0 else "Error")


def restart_delay(policy: str, code: int, restarts: int) -> float | None:
    """Seconds before the app starts again under `policy` (never, on-failure, always), with
    an exponential backoff over its restarts so far; None if it does not."""
    if policy == "always" or (policy == "on-failure" and code != 0):
        return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** restarts)
    return None


def pod_exit_code(setup_failed: bool, exits: list[tuple[float, int | None]]) -> int:
    """The pod's exit code: 1 if it could not be set up, else the first failing app's
    (earliest finished), else 0. `exits`: (finished_at, exit_code) of each app."""
    if setup_failed:  # no app ever ran: a failure of rkt's, not an app's exit code
        return SETUP_ERROR_CODE
    failed = sorted((t, c) for t, c in exits if c)
    return failed[0][1] if failed else 0
