"""Builds real OCI images locally, with no network: the built-in default image and test images.

The default image is a rootfs made from the host's Debian `busybox-static`: busybox, its applet
links, /etc/passwd and /etc/group. Tests use the same functions to make images of their own.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from rktnetes.errors import RktError
from rktnetes.store import digest as dg

from . import mediatypes as mt

BUSYBOX = "/bin/busybox"
EPOCH = 0  # fixed mtimes make builds reproducible: the same inputs give the same digests

PASSWD = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n" \
         "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\nuser:x:1000:1000:user:/home/user:/bin/sh\n"
GROUP = "root:x:0:\ndaemon:x:1:\nusers:x:100:user\nnogroup:x:65534:\nuser:x:1000:\n"


@dataclass
class Layer:
    """A layer as bytes, with its compressed (blob) and uncompressed (diff_id) digests."""

    blob: bytes
    media_type: str
    diff_id: str

    @property
    def digest(self) -> str:
        return dg.of_bytes(self.blob)


@dataclass
class ImageSpec:
    layers: list[Layer]
    config: dict = field(default_factory=dict)   # the "config" section (Cmd, Env, ...)
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""


def busybox_rootfs(dest: Path, busybox: str = BUSYBOX) -> Path:
    """Lay out a minimal rootfs: busybox, a hard link per applet, passwd/group, usual dirs."""
    if not os.path.exists(busybox):
        raise RktError(f"{busybox} not found: install Debian's busybox-static")
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "root", "home/user",
              "proc", "sys", "dev", "var/www", "run"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(busybox, dest / "bin/busybox")
    os.chmod(dest / "bin/busybox", 0o755)
    applets = subprocess.run([busybox, "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        target = dest / applet
        if applet == "bin/busybox" or target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("/bin/busybox", target)
    (dest / "etc/passwd").write_text(PASSWD)
    (dest / "etc/group").write_text(GROUP)
    # what `httpd -h /var/www` serves, as the README's example fetches it
    (dest / "var/www/index.html").write_text("<h1>hello from a rktnetes pod</h1>\n")
    os.chown(dest / "home/user", 1000, 1000)
    return dest


def tar_directory(src: Path, compress: bool = True) -> Layer:
    """A layer from a directory's contents, owners and modes kept, mtimes fixed."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for root, dirs, files in os.walk(src):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                full = Path(root) / name
                ti = tf.gettarinfo(str(full), arcname=str(full.relative_to(src)))
                ti.mtime = EPOCH
                ti.uname = ti.gname = ""
                if ti.isreg():
                    with open(full, "rb") as f:
                        tf.addfile(ti, f)
                else:
                    tf.addfile(ti)
    return layer_from_tar(buf.getvalue(), compress)


def tar_entries(entries: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]],
                compress: bool = True) -> Layer:
    """A layer from explicit tar entries, for tests that need exact (even hostile) contents."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            ti, data = e if isinstance(e, tuple) else (e, None)
            if data is not None:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                tf.addfile(ti)
    return layer_from_tar(buf.getvalue(), compress)


def layer_from_tar(raw: bytes, compress: bool = True) -> Layer:
    diff_id = dg.of_bytes(raw)
    if compress:
        return Layer(gzip.compress(raw, mtime=0), mt.OCI_LAYER_GZIP, diff_id)
    return Layer(raw, mt.OCI_LAYER, diff_id)


def config_blob(spec: ImageSpec) -> bytes:
    cfg = {
        "architecture": spec.architecture,
        "os": spec.os,
        "config": spec.config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in spec.layers]},
        "history": [{"created_by": "rktnetes image builder"} for _ in spec.layers],
    }
    if spec.variant:
        cfg["variant"] = spec.variant
    return _canonical(cfg)


def manifest_blob(spec: ImageSpec) -> tuple[bytes, bytes]:
    """(manifest bytes, config bytes) for an OCI image manifest."""
    cfg = config_blob(spec)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": dg.of_bytes(cfg), "size": len(cfg)},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": len(layer.blob)}
                   for layer in spec.layers],
    }
    return _canonical(manifest), cfg


class OCILayout:
    """Writes an OCI image layout directory (oci-layout, index.json, blobs/)."""

    def __init__(self, path: Path):
        self.path = path
        (path / "blobs/sha256").mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        self._manifests: list[dict] = []

    def put(self, data: bytes) -> str:
        d = dg.of_bytes(data)
        p = self.path / "blobs/sha256" / d.split(":")[1]
        if not p.exists():
            p.write_bytes(data)
        return d

    def add_image(self, spec: ImageSpec, ref: str | None = "latest") -> str:
        """Store an image; list it in index.json under `ref`. Returns the manifest digest."""
        manifest, cfg = manifest_blob(spec)
        self.put(cfg)
        for layer in spec.layers:
            self.put(layer.blob)
        mdigest = self.put(manifest)
        self._index_entry(mt.OCI_MANIFEST, mdigest, len(manifest), ref,
                          {"os": spec.os, "architecture": spec.architecture,
                           **({"variant": spec.variant} if spec.variant else {})})
        return mdigest

    def add_index(self, specs: list[ImageSpec], ref: str | None = "latest") -> str:
        """A multi-platform image: one manifest per spec under an image index."""
        entries = []
        for spec in specs:
            manifest, cfg = manifest_blob(spec)
            self.put(cfg)
            for layer in spec.layers:
                self.put(layer.blob)
            platform = {"os": spec.os, "architecture": spec.architecture}
            if spec.variant:
                platform["variant"] = spec.variant
            entries.append({"mediaType": mt.OCI_MANIFEST, "digest": self.put(manifest),
                            "size": len(manifest), "platform": platform})
        index = _canonical({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries})
        idigest = self.put(index)
        self._index_entry(mt.OCI_INDEX, idigest, len(index), ref, None)
        return idigest

    def _index_entry(self, media_type, digest, size, ref, platform) -> None:
        entry = {"mediaType": media_type, "digest": digest, "size": size}
        if ref:
            entry["annotations"] = {"org.opencontainers.image.ref.name": ref}
        if platform:
            entry["platform"] = platform
        self._manifests.append(entry)
        (self.path / "index.json").write_bytes(
            _canonical({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": self._manifests}))


def default_image_spec(workdir: Path) -> ImageSpec:
    """The built-in default image: busybox-static in one layer, `sh` as its command."""
    rootfs = busybox_rootfs(workdir / "rootfs")
    layer = tar_directory(rootfs)
    shutil.rmtree(rootfs)
    return ImageSpec(layers=[layer], config={
        "Cmd": ["/bin/sh"],
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "WorkingDir": "/",
        "Labels": {"org.opencontainers.image.title": "rktnetes busybox"},
    })


def _canonical(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
