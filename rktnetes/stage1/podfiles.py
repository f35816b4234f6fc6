"""Files a pod's apps share: /etc/hosts, /etc/hostname, /etc/resolv.conf (which
rktnetes.net.dns writes into `<pod>/etc/` with the pod's networks, before the stage1's
setup_pod) bind-mounted into each app, and the pod's empty volumes.
"""

from __future__ import annotations

import os
from pathlib import Path

from rktnetes.errors import Stage1Error
from rktnetes.pod.manifest import App, PodManifest

from .ocispec import BindMount

ETC_FILES = ("hosts", "hostname", "resolv.conf")


def etc_binds(pod_dir: Path) -> list[BindMount]:
    return [BindMount(f"/etc/{n}", str(pod_dir / "etc" / n), readonly=False) for n in ETC_FILES]


def volume_dir(pod_dir: Path, name: str) -> Path:
    return pod_dir / "volumes" / name


def make_empty_volumes(pod_dir: Path, m: PodManifest) -> None:
    for v in m.volumes:
        if v.kind == "empty":
            d = volume_dir(pod_dir, v.name)
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, int(v.mode, 8))
            os.chown(d, v.uid, v.gid)


def volume_binds(pod_dir: Path, m: PodManifest, app: App) -> list[BindMount]:
    out = []
    for mnt in app.mounts:
        vol = m.volume(mnt.volume)
        if vol is None:
            raise Stage1Error(f"app {app.name}: mount of unknown volume {mnt.volume!r}")
        if not os.path.isabs(mnt.target):
            raise Stage1Error(f"app {app.name}: mount target {mnt.target!r} is not absolute")
        if vol.kind == "host":
            src = vol.source
            if not os.path.exists(src):
                raise Stage1Error(f"volume {vol.name}: source {src} does not exist")
        elif vol.kind == "empty":
            src = str(volume_dir(pod_dir, vol.name))
        else:
            raise Stage1Error(f"volume {vol.name}: unknown kind {vol.kind!r}")
        ro = vol.readonly if mnt.readonly is None else mnt.readonly
        out.append(BindMount(mnt.target, src, ro, mnt.propagation or "rprivate"))
    return out
