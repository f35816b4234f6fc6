"""The on-disk protocol between stage0 (CLI, CRI server, API) and a pod's monitor: the names of
the files in a pod directory, the fields of the state documents, the atomic write, the move
between state directories. Light (os, json and fsutil): the lean monitor imports this module
itself, so both sides spell everything the same way by construction.

    pods/<state>/<uuid>/
      pod.json                  the manifest (stage0 writes it; the monitor re-reads it)
      state.json                the pod's runtime state (POD_STATE_FIELDS; the monitor's)
      stop-request.json         {"timeout": seconds, "force": bool}, then SIGTERM the monitor
      apps.lock                 flock serializing changes to the set of apps
      monitor.log               a detached monitor's own stdout/stderr
      apps/<name>/state.json    an app's runtime state (APP_STATE_FIELDS)
      apps/<name>/start-request {} then SIGHUP: start the app; deleted once acted on
      apps/<name>/stop-request  {"timeout": seconds} then SIGHUP: stop it; deleted once acted on
      apps/<name>/reopen-log-request  {} then SIGHUP: reopen its log (rotated away); deleted
                                once reopened
      apps/<name>/log           its CRI-format log (or where the app's log_path says)
"""

from __future__ import annotations

import json
import os

from rktnetes.fsutil import atomic_write_json

MANIFEST = "pod.json"
STATE = "state.json"
STOP_REQUEST = "stop-request.json"
APPS_LOCK = "apps.lock"
MONITOR_LOG = "monitor.log"
APPS = "apps"
APP_STATE = "state.json"
APP_LOG = "log"
START_REQUEST = "start-request"
APP_STOP_REQUEST = "stop-request"
REOPEN_LOG_REQUEST = "reopen-log-request"



def app_log_path(app_dir: str, app: dict) -> str:
    """Where an app's CRI log is: the path its manifest entry names (kubelet's), or its own
    directory's `log`."""
    return app.get("log_path") or os.path.join(app_dir, APP_LOG)


# The pod directory's states, in lifecycle order.
EMBRYO, PREPARE, PREPARED, RUN, EXITED_GARBAGE, GARBAGE = (
    "embryo", "prepare", "prepared", "run", "exited-garbage", "garbage")
STATES = (EMBRYO, PREPARE, PREPARED, RUN, EXITED_GARBAGE, GARBAGE)

# App states (as the CRI names them) and the reasons an app exited.
CREATED, RUNNING, EXITED, UNKNOWN = "created", "running", "exited", "unknown"
COMPLETED, ERROR, OOM_KILLED, START_ERROR = "Completed", "Error", "OOMKilled", "StartError"

# apps/<name>/state.json: every field and its default (rktnetes.pod.state.AppState is the
# typed view; a test holds the two together).
APP_STATE_FIELDS = {
    "name": "", "state": CREATED, "pid": 0, "starttime": 0, "boot_id": "",
    "exit_code": None, "signal": 0, "reason": "", "message": "", "created_at": 0.0,
    "started_at": 0.0, "finished_at": 0.0, "restarts": 0, "stop_signal": 0,
    "stop_fatal": False,
}

# state.json: the pod's runtime state (rktnetes.pod.state.PodRuntime is the typed view).
POD_STATE_FIELDS = {
    "monitor_pid": 0, "monitor_starttime": 0, "stage1": "", "ready": False,
    "started_at": 0.0, "finished_at": 0.0, "exit_code": None, "setup_error": "",
    "error": "", "infra_pid": 0, "netns_path": "", "networks": [], "cgroup": "",
    "stage1_state": {},
}


def app_request(what: str) -> str:
    """The file of an app request: "start", "stop" or "reopen-log"."""
    return {"start": START_REQUEST, "stop": APP_STOP_REQUEST,
            "reopen-log": REOPEN_LOG_REQUEST}[what]


def app_dir(pod_dir: str, name: str) -> str:
    return os.path.join(pod_dir, APPS, name)


def state_path(pods_root: str, state: str, uuid: str) -> str:
    """Where a pod in `state` lives: a move between states is one rename between these."""
    return os.path.join(pods_root, state, uuid)


def read_json(path: str):
    with open(path, "rb") as f:
        return json.load(f)


def write_json(path: str, obj, durable: bool = True) -> None:
    """Atomic (a private temporary sibling, then rename): readers see old or new, never half.
    `durable`: fsync first, for what must outlive a machine crash (exit codes, journals);
    what describes a running pod does not need it (a crash of the machine ends the pod too).
    The directory must exist: a pod directory that moved meanwhile is never re-created."""
    atomic_write_json(path, obj, mkdir=False, durable=durable)
