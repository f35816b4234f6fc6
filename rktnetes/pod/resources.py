"""The journal of everything a pod created on the host, written *before* each thing exists.

`rkt stop`, `rkt rm` and `rkt gc` undo a pod by reading this journal, so they work even when the
process that created the resource was killed halfway: undoing something that was recorded but
never created must be harmless (each undo tolerates "not there").

One JSON line per entry in `resources.jsonl`, appended with O_APPEND (an entry is one write, so a
crash leaves whole lines; a torn last line is ignored). Not fsync'd: a process crash loses no
written line, and what a crash of the machine could lose describes mostly kernel objects
(mounts, namespaces, processes, cgroups) that the crash destroyed too, while an fsync per
entry would put the disk's flush latency into every pod's start several times. Kinds in use:
  mount      {"path"}                       an overlay/bind/tmpfs mount point
  cgroup     {"path"}                       a cgroup directory (v1 controller path or v2 path)
  runc       {"id", "root"}                 an OCI runtime container (runc --root ROOT ... ID)
  process    {"pid", "starttime"}           a process to kill (infra, fly app); starttime guards
                                            against pid reuse (field 22 of /proc/PID/stat)
  netns      {"path"}                       a bind-mounted network namespace
  cni        {"network", "ifname", "conf"}  a CNI attachment to DEL (conf: path of the saved config)
  dir        {"path"}                       a host directory to remove
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds on every pod's start
    from typing import Any


@dataclass
class Resource:
    """One journal entry: a resource of the pod, recorded before it was created."""
    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    app: str = ""          # the app it belongs to, "" for pod-wide resources


def record(pod_dir: Path, kind: str, app: str = "", **data: Any) -> Resource:
    res = Resource(kind, data, app)
    line = json.dumps({"kind": kind, "app": app, "data": data}, sort_keys=True) + "\n"
    fd = os.open(pod_dir / "resources.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return res


def load(pod_dir: Path) -> list[Resource]:
    try:
        text = (pod_dir / "resources.jsonl").read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            d = json.loads(line)
            out.append(Resource(d["kind"], d.get("data", {}), d.get("app", "")))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line from a crash
    return out
