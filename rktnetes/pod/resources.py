"""The journal of everything a pod created on the host, written *before* each thing exists.

`rkt stop`, `rkt rm` and `rkt gc` undo a pod by reading this journal, so they work even when the
process that created the resource was killed halfway: undoing something that was recorded but
never created must be harmless (each undo tolerates "not there").

One JSON line per entry in `resources.jsonl`, appended with O_APPEND (an entry is one write, so a
crash leaves whole lines; a torn last line is ignored). A process crash loses no written line;
a crash of the machine may lose what was not fsync'd, so entries for what outlives a reboot on
disk (DURABLE: a CNI attachment's IPAM reservation, the runtime's state directory, a host
directory) are fsync'd, and entries for kernel objects (mounts, namespaces, processes,
cgroups), which the crash destroys too, are not: that saves a disk flush per entry on every
pod's start. Kinds in use:
  mount      {"path"}                       an overlay/bind/tmpfs mount point
  cgroup     {"path"}                       a cgroup directory (v1 controller path or v2 path)
  runc       {"id", "root"}                 an OCI runtime container (runc --root ROOT ... ID);
                                            undone by its owner, rktnetes.stage1.ociruntime
  process    {"pid", "starttime"}           a process to kill (infra, fly app); starttime guards
                                            against pid reuse (field 22 of /proc/PID/stat)
  netns      {"path"}                       a bind-mounted network namespace
  cni        {"network", "ifname", "conf"}  a CNI attachment to DEL (conf: path of the saved config);
                                            undone by its owner, rktnetes.net.cleanup
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
    owner: str = ""        # the module that undoes it (rktnetes.pod.cleanup); "" for host kinds


DURABLE = ("cni", "runc", "dir")


def record(pod_dir: Path, kind: str, app: str = "", owner: str = "", **data: Any) -> Resource:
    """Journal a resource before it is created. `owner`: the module that undoes its kind,
    for a kind that is not one of the host's own (see rktnetes.pod.cleanup)."""
    res = Resource(kind, data, app, owner)
    entry = {"kind": kind, "app": app, "data": data, **({"owner": owner} if owner else {})}
    line = json.dumps(entry, sort_keys=True) + "\n"
    fd = os.open(pod_dir / "resources.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        if kind in DURABLE:
            os.fsync(fd)
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
            out.append(Resource(d["kind"], d.get("data", {}), d.get("app", ""),
                                d.get("owner", "")))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line from a crash
    return out
