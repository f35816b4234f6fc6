"""`rkt image export`: an image as an OCI archive (a tar of an OCI image layout).

The index names the image the way docker and containerd do: `org.opencontainers.image.ref.name`
holds the tag (`latest`), `io.containerd.image.name` the full name. So
`skopeo inspect oci-archive:OUT`, `umoci unpack --image DIR:TAG` (on the untarred layout) and
`rkt fetch oci-archive:OUT` (which restores the name) all accept it. An image fetched with a
Docker v2 manifest is written with an equivalent OCI manifest (new digest, same blobs), as
`skopeo copy --format oci` does, because OCI tools refuse Docker media types in a layout.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import tarfile
import tempfile
from pathlib import Path

from rktnetes.errors import ReferenceError_, RktError, UsageError
from rktnetes.store import ImageRecord, Store
from rktnetes.store import digest as dg

from . import mediatypes as mt
from .archive import IMAGE_NAME, REF_NAME
from .manifest import ImageConfig

_DOCKER_TO_OCI = {
    mt.DOCKER_MANIFEST: mt.OCI_MANIFEST,
    mt.DOCKER_CONFIG: mt.OCI_CONFIG,
    mt.DOCKER_LAYER_GZIP: mt.OCI_LAYER_GZIP,
    mt.DOCKER_LAYER_FOREIGN: mt.OCI_LAYER_NONDIST_GZIP,
}


def target_path(raw: str | os.PathLike, what: str) -> Path:
    """`raw` made absolute, once it is known not to be empty and to lie in an existing directory.
    Nothing is created: a mistyped parent is an error, not a new directory tree."""
    if not os.fspath(raw):     # Path("") would be ".", the current directory
        raise UsageError(f"empty path for {what}")
    p = Path(raw).absolute()
    parent = p.parent
    if not parent.is_dir():
        if os.path.lexists(parent):
            raise RktError(f"{parent} is not a directory")
        raise RktError(f"parent directory {parent} does not exist")
    return p


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "directory"), (stat.S_ISLNK, "symbolic link"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def _check_out(out: Path, overwrite: bool) -> None:
    """`out` may be absent, or (with `overwrite`) a regular file; nothing else is replaced."""
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        return
    except OSError as e:
        raise RktError(f"cannot write {out}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise RktError(f"{out} is a directory; give a file name for the archive")
    if not stat.S_ISREG(st.st_mode):
        raise RktError(f"{out} is a {file_kind(st.st_mode)}, not a regular file; "
                       f"refusing to replace it")
    if not overwrite:
        raise RktError(f"{out} exists (use --overwrite to replace it)")


def export_image(store: Store, rec: ImageRecord, out: str | os.PathLike, overwrite: bool = False,
                 ref_name: str | None = None) -> Path:
    """Write `rec` to the OCI archive `out` (atomically: a temporary sibling, then rename).
    `out`'s directory must exist; an existing `out` is replaced only if it is a regular file
    and `overwrite` is set."""
    out = target_path(out, "the archive")
    _check_out(out, overwrite)
    with store.gc_lock.held(shared=True):   # the blobs must stay while they are copied
        index, manifest_raw, blobs = _layout_of(store, rec, ref_name)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
        except OSError as e:
            raise RktError(f"cannot write {out}: cannot create a file in {out.parent}: "
                           f"{e.strerror or e}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                _write_layout(f, store, index, manifest_raw, blobs)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            _check_out(out, overwrite)   # again: it may have changed while we wrote
            os.rename(tmp, out)
        except BaseException as e:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if isinstance(e, OSError):
                where = f" ({e.filename})" if e.filename and e.filename != tmp else ""
                raise RktError(f"cannot write {out}: {e.strerror or e}{where}") from None
            raise
    return out


def export_to_stream(store: Store, rec: ImageRecord, f, ref_name: str | None = None) -> None:
    """Write `rec` as an OCI archive to the binary stream `f` (a pipe: `rkt image export
    IMAGE -`). Not atomic, as no stream can be: a reader sees a truncated tar on failure."""
    with store.gc_lock.held(shared=True):
        index, manifest_raw, blobs = _layout_of(store, rec, ref_name)
        _write_layout(f, store, index, manifest_raw, blobs, stream=True)
        f.flush()


def _layout_of(store: Store, rec: ImageRecord, ref_name: str | None
               ) -> tuple[bytes, bytes, list[str]]:
    """The layout's index.json, the (OCI) manifest and the blobs it names."""
    manifest_raw, blobs = _oci_manifest(store, rec)
    tag, full = _names(rec, ref_name)
    annotations = {REF_NAME: tag, **({IMAGE_NAME: full} if full else {})}
    entry = {"mediaType": mt.OCI_MANIFEST, "digest": dg.of_bytes(manifest_raw),
             "size": len(manifest_raw), "annotations": annotations,
             "platform": _platform(store, rec)}
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]}
    return json.dumps(index, indent=2).encode(), manifest_raw, blobs


def _oci_manifest(store: Store, rec: ImageRecord) -> tuple[bytes, list[str]]:
    """The manifest to write (converted to OCI if it is Docker's) and the blobs it names."""
    raw = store.blobs.read(rec.manifest_digest)
    doc = json.loads(raw)
    blobs = [doc["config"]["digest"], *(x["digest"] for x in doc.get("layers", []))]
    if doc.get("mediaType") == mt.OCI_MANIFEST or rec.manifest_media_type == mt.OCI_MANIFEST:
        return raw, blobs
    doc["mediaType"] = mt.OCI_MANIFEST
    for desc in (doc["config"], *doc.get("layers", [])):
        desc["mediaType"] = _DOCKER_TO_OCI.get(desc.get("mediaType", ""), desc.get("mediaType"))
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode(), blobs


def _names(rec: ImageRecord, ref_name: str | None) -> tuple[str, str]:
    """(tag for ref.name, full registry name or '') from the image's references."""
    from .reference import parse

    for r in rec.references:
        try:
            ref = parse(r)
        except ReferenceError_:
            continue
        if ref.transport == "docker":
            return ref_name or ref.tag or "latest", ref.normalized()
    return ref_name or "latest", ""


def _platform(store: Store, rec: ImageRecord) -> dict:
    cfg = ImageConfig.parse(store.blobs.read(rec.id))
    p = {"os": cfg.os or "linux", "architecture": cfg.architecture or "amd64"}
    if cfg.raw.get("variant"):
        p["variant"] = str(cfg.raw["variant"])
    return p


def _write_layout(f, store: Store, index: bytes, manifest: bytes, blobs: list[str],
                  stream: bool = False) -> None:
    # a pipe cannot tell() its position: tarfile's stream mode does without
    with tarfile.open(fileobj=f, mode="w|" if stream else "w", format=tarfile.PAX_FORMAT) as tf:
        _add_bytes(tf, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        _add_bytes(tf, "index.json", index)
        for d in ("blobs", "blobs/sha256"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(ti)
        _add_bytes(tf, _blob_name(dg.of_bytes(manifest)), manifest)
        seen = set()
        for d in blobs:
            if d in seen:
                continue
            seen.add(d)
            ti = tarfile.TarInfo(_blob_name(d))
            ti.size, ti.mode = store.blobs.size(d), 0o644
            with store.blobs.open(d) as blob:
                tf.addfile(ti, blob)


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode = len(data), 0o644
    tf.addfile(ti, io.BytesIO(data))


def _blob_name(digest: str) -> str:
    algo, hexd = dg.parse(digest)
    return f"blobs/{algo}/{hexd}"
