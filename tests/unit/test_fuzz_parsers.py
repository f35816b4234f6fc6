"""Fuzzing the parsers and the unpacker with seeded random inputs, bounded in time.

Malformed manifests, indexes, configs, references and tar streams, made by mutating valid ones:
whatever comes in, nothing but the project's own errors (RktError, one line each) may come
out, and an unpack writes nothing outside its target. Every run uses the same seeds, so a
failure is reproducible; RKTNETES_FUZZ_SEED and RKTNETES_FUZZ_SECONDS (per target, default 1)
explore further.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import os
import random
import tarfile
import time
from pathlib import Path

import pytest
import zstandard

from rktnetes.errors import RktError
from rktnetes.image import builder
from rktnetes.image import mediatypes as mt
from rktnetes.image import reference
from rktnetes.image.config import ImageConfig
from rktnetes.image.manifest import media_type_of, parse_index, parse_manifest
from rktnetes.image.unpack import APPLY, OVERLAY, unpack_layer

SECONDS = float(os.environ.get("RKTNETES_FUZZ_SECONDS", "1"))
SEED = int(os.environ.get("RKTNETES_FUZZ_SEED", "20261202"))
D = "sha256:" + "ab" * 32


def cases(rng: random.Random, make, n_min: int = 200):
    """Inputs from `make(rng)` for SECONDS, at least n_min of them."""
    deadline = time.monotonic() + SECONDS
    n = 0
    while n < n_min or time.monotonic() < deadline:
        yield make(rng)
        n += 1


def only_our_errors(fn, value) -> None:
    try:
        fn(value)
    except RktError as e:
        assert "\n" not in str(e), f"a multi-line error for {value!r}: {e}"
    except Exception as e:  # noqa: BLE001 - what the test is looking for
        raise AssertionError(f"{fn.__name__} raised {type(e).__name__}: {e} for {value!r}") from e


# -- JSON documents -----------------------------------------------------------------------------

def _junk(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 5, 2**63, -2**70, 3.5, float("1e308")])
    if kind == 3:
        return rng.choice(["", "x", D, "sha256:", "sha512:" + "0" * 128, "../../etc", "\x00",
                           "SIGTERM", "80/tcp", "é" * 10, "a" * 3000])
    if kind == 4:
        return rng.choice([mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, mt.OCI_CONFIG,
                           mt.OCI_LAYER_GZIP, "text/plain"])
    if kind == 5:
        return rng.randrange(-3, 300)
    if kind == 6:
        return [_junk(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 7:
        return {rng.choice(["mediaType", "digest", "size", "platform", "os", "architecture",
                            "Cmd", "Env", "x"]): _junk(rng, depth + 1)
                for _ in range(rng.randrange(4))}
    return {"k": _junk(rng, depth + 1)}


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


def mutate_json(rng: random.Random, doc) -> bytes:
    doc = copy.deepcopy(doc)
    for _ in range(rng.randrange(1, 4)):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = rng.choice(paths)
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        op = rng.randrange(3)
        if op == 0:
            parent[path[-1]] = _junk(rng)
        elif op == 1 and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[rng.choice(["extra", "manifests", "layers", "config", "rootfs"])] = _junk(rng)
    raw = json.dumps(doc).encode()
    r = rng.random()
    if r < 0.05:
        return raw[:rng.randrange(len(raw) + 1)]          # truncated
    if r < 0.08:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
    if r < 0.10:
        return json.dumps(_junk(rng)).encode()
    return raw


MANIFEST = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": D, "size": 10},
            "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": D, "size": 3,
                        "annotations": {"a": "b"}}], "annotations": {"x": "y"}}
INDEX = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
         "manifests": [{"mediaType": mt.OCI_MANIFEST, "digest": D, "size": 5,
                        "platform": {"os": "linux", "architecture": "amd64"}}]}
CONFIG = {"architecture": "amd64", "os": "linux",
          "config": {"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "x"], "Env": ["A=b"],
                     "WorkingDir": "/w", "User": "1:2", "ExposedPorts": {"80/tcp": {}},
                     "Labels": {"l": "v"}, "StopSignal": "SIGINT", "Volumes": {"/v": {}}},
          "rootfs": {"type": "layers", "diff_ids": [D, D]}, "history": [{"created_by": "x"}]}


@pytest.mark.parametrize("name,parse,doc", [
    ("manifest", parse_manifest, MANIFEST), ("index", parse_index, INDEX),
    ("media-type", media_type_of, MANIFEST), ("config", ImageConfig.parse, CONFIG),
    ("config-as-manifest", parse_manifest, CONFIG), ("index-as-config", ImageConfig.parse, INDEX)])
def test_json_documents(name, parse, doc):
    if "-as-" not in name:
        parse(json.dumps(doc).encode())   # the document mutated is a valid one
    rng = random.Random(f"{SEED}-{name}")
    for raw in cases(rng, lambda r: mutate_json(r, doc)):
        only_our_errors(parse, raw)


# -- references -------------------------------------------------------------------------------

_REF_PIECES = ["docker://", "oci:", "oci-archive:", "docker-archive:", "builtin:", "busybox",
               "localhost", "127.0.0.1:5000", "[::1]:5000", "/", ":", "@", D, "sha256:", "..",
               "-", "_", ".", "a", "Z", "library", "latest", " ", "\t", "é", "\x00", "//",
               "%2f", "~", "./", "x" * 300, "dir:", "http://", "1"]


def _ref(rng: random.Random) -> str:
    return "".join(rng.choice(_REF_PIECES) for _ in range(rng.randrange(1, 8)))


@pytest.mark.parametrize("fn", [reference.parse, reference.candidates,
                                reference.local_candidates, reference.short_name])
def test_references(fn):
    rng = random.Random(f"{SEED}-ref-{fn.__name__}")
    for s in cases(rng, _ref):
        only_our_errors(fn, s)


# -- tar streams ---------------------------------------------------------------------------------

def _entry(rng: random.Random) -> tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]:
    names = ["a", "b/c", "../x", "/abs", "./d", "d/../../e", "link", ".wh.a", "b/.wh..wh..opq",
             ".wh.", "dir/", "x" * 200, "é", "a/b/c/d", ".", "", "dev/null", "sub/link/f",
             "link/f", "link/canary", "out/canary", "sub/link"]
    ti = tarfile.TarInfo(rng.choice(names))
    ti.type = rng.choice([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                          tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE, b"Z"])
    ti.mode = rng.choice([0o644, 0o755, 0o4755, 0o7777, 0, 0o1777])
    ti.uid, ti.gid = rng.choice([(0, 0), (1000, 1000), (2**21 - 1, 5)])
    ti.mtime = rng.choice([0, 1_000_000, 2**33 - 1])
    ti.linkname = rng.choice(["a", "/etc/passwd", "../../..", "link", "b/c", "", "x" * 120,
                              "../outside", "../../outside", "../outside/canary", "/"])
    ti.devmajor, ti.devminor = rng.choice([(1, 3), (0, 0), (7, 0)])
    if rng.random() < 0.2:
        ti.pax_headers = {rng.choice(["SCHILY.xattr.user.x", "SCHILY.xattr.trusted.overlay.opaque",
                                      "LIBARCHIVE.xattr.user.y", "path", "linkpath"]):
                          rng.choice(["y", "../../z", "", "/abs"])}
    if ti.type == tarfile.REGTYPE:
        return ti, bytes(rng.randrange(256) for _ in range(rng.randrange(0, 3000)))
    return ti


def _tar(rng: random.Random) -> tuple[bytes, str]:
    layer = builder.tar_entries([_entry(rng) for _ in range(rng.randrange(1, 12))],
                                compress=False)
    raw = bytearray(layer.blob)
    r = rng.random()
    if r < 0.3:
        for _ in range(rng.randrange(1, 8)):              # flipped bytes, headers included
            i = rng.randrange(len(raw))
            raw[i] = rng.randrange(256)
    elif r < 0.4:
        raw = raw[:rng.randrange(len(raw) + 1)]             # truncated
    compression = rng.choice(["", "", "gzip", "zstd"])
    data = bytes(raw)
    if compression == "gzip":
        data = gzip.compress(data, mtime=0)
        if rng.random() < 0.2:
            data = data[:rng.randrange(len(data) + 1)]
    elif compression == "zstd":
        data = zstandard.ZstdCompressor().compress(data)
        if rng.random() < 0.2:
            data = data[:rng.randrange(len(data) + 1)]
    elif rng.random() < 0.05:
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(2000)))
    return data, compression


def _tree(root: Path) -> dict[str, bytes]:
    """Every path under `root` and what it holds (a regular file's bytes, a link's target)."""
    out = {}
    for p in root.rglob("*"):
        if p.is_symlink():
            out[str(p.relative_to(root))] = os.readlink(p).encode()
        elif p.is_file():
            out[str(p.relative_to(root))] = p.read_bytes()
        else:
            out[str(p.relative_to(root))] = b"<dir>" if p.is_dir() else b"<other>"
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="device entries need root")
@pytest.mark.parametrize("mode", [OVERLAY, APPLY])
def test_tar_streams_write_nothing_outside_the_target(tmp_path, mode):
    from rktnetes.fsutil import rmtree

    rng = random.Random(f"{SEED}-tar-{mode}")
    sandbox = tmp_path / "sandbox"
    (sandbox / "outside").mkdir(parents=True)      # what `../outside` from the target names
    (sandbox / "outside/canary").write_text("keep")
    before = _tree(sandbox)
    for i, (data, compression) in enumerate(cases(rng, _tar, n_min=300)):
        target = sandbox / "target"
        target.mkdir()
        try:
            unpack_layer(io.BytesIO(data), target, compression, mode)
        except RktError as e:
            assert "\n" not in str(e)
        except Exception as e:  # noqa: BLE001
            raise AssertionError(f"case {i}: {type(e).__name__}: {e}") from e
        rmtree(target)
        assert _tree(sandbox) == before, f"case {i} wrote outside the target"
