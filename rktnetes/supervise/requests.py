"""The requests a pod's monitor acts on, as files in the pod directory (rktnetes.pod.protocol):
the pod's stop request, and each app's start and stop requests. Reading one never raises: a
torn or hand-made file reads as the defaults."""

from __future__ import annotations

import fcntl
import os

from rktnetes.pod.protocol import (APP_STOP_REQUEST, APPS_LOCK, START_REQUEST, STOP_REQUEST,
                                   app_request, read_json)

DEFAULT_STOP_TIMEOUT = 10.0
MAX_STOP_TIMEOUT = 86400.0 * 365


def _timeout(value, default: float = DEFAULT_STOP_TIMEOUT) -> float:
    try:
        t = default if value is None else float(value)
    except (TypeError, ValueError):
        return default
    if not 0 <= t <= MAX_STOP_TIMEOUT:   # nan, inf or junk from a hand-made file
        return MAX_STOP_TIMEOUT if t > 0 else 0.0
    return t


def _doc(path: str) -> dict:
    try:
        d = read_json(path)
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def pod_stop(pod_dir: str) -> tuple[bool, float]:
    """(force, grace period) of the pod's stop request; the defaults if there is none."""
    d = _doc(os.path.join(pod_dir, STOP_REQUEST))
    return bool(d.get("force", False)), _timeout(d.get("timeout"))


def app_stop(app_dir: str) -> float | None:
    """The grace period of an app's stop request, None if there is none."""
    path = os.path.join(app_dir, APP_STOP_REQUEST)
    if not os.path.exists(path):
        return None
    return _timeout(_doc(path).get("timeout"))


def app_start(app_dir: str) -> bool:
    return os.path.exists(os.path.join(app_dir, START_REQUEST))


def pending(app_dir: str, name: str) -> bool:
    return os.path.exists(os.path.join(app_dir, name))


def done(app_dir: str, what: str) -> None:
    """Acted on: the request's absence tells the `rkt app` command waiting for it."""
    try:
        os.unlink(os.path.join(app_dir, app_request(what)))
    except FileNotFoundError:
        pass


def apps_lock_shared(pod_dir: str) -> int | None:
    """The pod's apps lock held shared (its fd), -1 if it cannot be opened (act without it),
    None if a `rkt app` command holds it now (try again a moment later)."""
    try:
        fd = os.open(os.path.join(pod_dir, APPS_LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o644)
    except OSError:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def apps_lock_release(fd: int) -> None:
    if fd >= 0:
        fcntl.flock(fd, fcntl.LOCK_UN)  # forked action children may hold copies
        os.close(fd)
