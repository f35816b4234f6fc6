"""Layer unpacking: the OCI layer rules in both modes, and hostile layers that try to escape."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from rktnetes.errors import ManifestError, UnsafeLayerError
from rktnetes.image.builder import tar_entries
from rktnetes.image.unpack import APPLY, OVERLAY, unpack_layer

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


# ---- helpers ---------------------------------------------------------------------------------

def f(name: str, data: bytes = b"", mode: int = 0o644, mtime: int = 1_000_000, uid: int = 0,
      gid: int = 0, pax: dict | None = None):
    ti = tarfile.TarInfo(name)
    ti.mode, ti.mtime, ti.uid, ti.gid = mode, mtime, uid, gid
    if pax:
        ti.pax_headers = pax
    return ti, data


def d(name: str, mode: int = 0o755, mtime: int = 1_000_000, uid: int = 0, gid: int = 0,
      pax: dict | None = None):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime, ti.uid, ti.gid = tarfile.DIRTYPE, mode, mtime, uid, gid
    if pax:
        ti.pax_headers = pax
    return ti


def sym(name: str, target: str, mtime: int = 1_000_000):
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mtime = tarfile.SYMTYPE, target, mtime
    return ti


def hard(name: str, target: str):
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = tarfile.LNKTYPE, target
    return ti


def node(name: str, kind: bytes, major: int = 0, minor: int = 0, mode: int = 0o666):
    ti = tarfile.TarInfo(name)
    ti.type, ti.devmajor, ti.devminor, ti.mode = kind, major, minor, mode
    return ti


def unpack(entries, dest: Path, mode: str = APPLY, compression: str = ""):
    layer = tar_entries(entries, compress=False)
    raw = layer.blob
    if compression == "gzip":
        blob = gzip.compress(raw)
    elif compression == "zstd":
        blob = zstandard.ZstdCompressor().compress(raw)
    else:
        blob = raw
    dest.mkdir(parents=True, exist_ok=True)
    res = unpack_layer(io.BytesIO(blob), dest, compression, mode)
    assert res.diff_id == layer.diff_id
    return res


def tree(root: Path) -> dict[str, str]:
    """A comparable picture of a tree: type, mode and content or target of every entry."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = os.lstat(p)
        rel = str(p.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            out[rel] = "l " + os.readlink(p)
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = f"d {stat.S_IMODE(st.st_mode):o}"
        elif stat.S_ISREG(st.st_mode):
            out[rel] = f"f {stat.S_IMODE(st.st_mode):o} {p.read_bytes()!r}"
        else:
            out[rel] = f"o {stat.S_IFMT(st.st_mode):o}"
    return out


def outside_snapshot(base: Path, root: Path) -> dict[str, str]:
    return {k: v for k, v in tree(base).items() if not (base / k).is_relative_to(root)}


# ---- formats and metadata --------------------------------------------------------------------

@pytest.mark.parametrize("compression", ["", "gzip", "zstd"])
def test_compressions_and_diff_id(tmp_path, compression):
    res = unpack([f("a/b.txt", b"hello")], tmp_path / "r", compression=compression)
    assert (tmp_path / "r/a/b.txt").read_bytes() == b"hello"
    assert res.entries == 1


def test_diff_id_covers_trailing_padding(tmp_path):
    layer = tar_entries([f("x", b"1")], compress=False)
    padded = layer.blob + b"\0" * 20480
    (tmp_path / "r").mkdir()
    res = unpack_layer(io.BytesIO(padded), tmp_path / "r", "", APPLY)
    assert res.diff_id == "sha256:" + hashlib.sha256(padded).hexdigest()
    assert res.size == len(padded)


def test_files_dirs_links_modes_and_mtimes(tmp_path):
    r = tmp_path / "r"
    unpack([
        d("usr", mode=0o755, mtime=111),
        d("usr/bin", mode=0o750, mtime=222),
        f("usr/bin/tool", b"#!/bin/sh\n", mode=0o4755, mtime=333),
        f("usr/bin/data", b"x", mode=0o600, mtime=444),
        hard("usr/bin/tool2", "usr/bin/tool"),
        sym("usr/bin/sh", "/bin/busybox", mtime=555),
        d("tmp", mode=0o1777, mtime=666),
        node("run/fifo", tarfile.FIFOTYPE, mode=0o640),
        f("implicit/parent/file", b"p"),
    ], r)
    tool = r / "usr/bin/tool"
    assert stat.S_IMODE(tool.stat().st_mode) == 0o4755   # setuid kept
    assert tool.stat().st_mtime == 333
    assert stat.S_IMODE((r / "usr/bin/data").stat().st_mode) == 0o600
    assert os.path.samefile(tool, r / "usr/bin/tool2")
    assert tool.stat().st_nlink == 2
    assert os.readlink(r / "usr/bin/sh") == "/bin/busybox"
    assert os.lstat(r / "usr/bin/sh").st_mtime == 555
    # directories get their mtimes after their content was written
    assert (r / "usr/bin").stat().st_mtime == 222
    assert (r / "usr").stat().st_mtime == 111
    assert stat.S_IMODE((r / "usr/bin").stat().st_mode) == 0o750
    assert stat.S_IMODE((r / "tmp").stat().st_mode) == 0o1777
    assert stat.S_ISFIFO(os.lstat(r / "run/fifo").st_mode)
    assert stat.S_IMODE(os.lstat(r / "run/fifo").st_mode) == 0o640
    assert (r / "implicit/parent/file").read_bytes() == b"p"


def test_root_entry_sets_target_metadata(tmp_path):
    r = tmp_path / "r"
    unpack([d("./", mode=0o750, mtime=42), f("./a", b"1")], r)
    assert stat.S_IMODE(r.stat().st_mode) == 0o750
    assert r.stat().st_mtime == 42


def test_user_xattrs(tmp_path):
    r = tmp_path / "r"
    unpack([f("x", b"1", pax={"SCHILY.xattr.user.color": "blue"}),
            d("dd", pax={"SCHILY.xattr.user.k": "v"})], r)
    try:
        assert os.getxattr(r / "x", "user.color") == b"blue"
    except OSError:
        pytest.skip("filesystem without user xattrs")
    assert os.getxattr(r / "dd", "user.k") == b"v"


@pytest.mark.root
@needs_root
def test_owners_devices_and_trusted_xattrs(tmp_path):
    r = tmp_path / "r"
    unpack([
        f("owned", b"1", mode=0o2755, uid=1000, gid=100),
        d("home/user", uid=1000, gid=1000, mode=0o700),
        sym("home/user/link", "x"),
        node("dev/null", tarfile.CHRTYPE, 1, 3),
        node("dev/loop9", tarfile.BLKTYPE, 7, 9, mode=0o660),
        f("t", b"1", pax={"SCHILY.xattr.trusted.note": "hi",
                          "SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00"
                                                              "\x00\x00\x00\x00\x00\x00\x00\x00"
                                                              "\x00\x00\x00\x00"}),
        f("evil", b"1", pax={"SCHILY.xattr.trusted.overlay.opaque": "y"}),
    ], r)
    st = (r / "owned").stat()
    assert (st.st_uid, st.st_gid) == (1000, 100)
    assert stat.S_IMODE(st.st_mode) == 0o2755   # setgid survives the chown
    assert (r / "home/user").stat().st_uid == 1000
    null = os.lstat(r / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1 and os.minor(null.st_rdev) == 3
    loop = os.lstat(r / "dev/loop9")
    assert stat.S_ISBLK(loop.st_mode) and stat.S_IMODE(loop.st_mode) == 0o660
    assert os.getxattr(r / "t", "trusted.note") == b"hi"
    assert "security.capability" in os.listxattr(r / "t")
    # overlay metadata may only come from .wh. entries, never from a layer's own xattrs
    assert "trusted.overlay.opaque" not in os.listxattr(r / "evil")


# ---- whiteouts and opaque directories ----------------------------------------------------------

LOWER = [
    d("a"), f("a/x", b"ax"), f("a/y", b"ay"),
    d("b"), f("b/inner", b"bi"),
    d("c"), f("c/old", b"co"), d("c/sub"), f("c/sub/deep", b"cd"),
    d("e"), f("e/old", b"eo"),
    f("file", b"lower"),
]
UPPER = [
    f("a/.wh.x"),                      # a file deleted
    f(".wh.b"),                        # a whole directory deleted
    d("c"), f("c/.wh..wh..opq"), f("c/new", b"cn"),   # opaque: old content hidden
    f("e/new-before", b"eb"), f("e/.wh..wh..opq"),    # this layer's entries survive its opaque
    f("file", b"upper"),
    f("a/.wh.never-existed"),
]
EXPECTED = {
    "a": "d 755", "a/y": "f 644 b'ay'",
    "c": "d 755", "c/new": "f 644 b'cn'",
    "e": "d 755", "e/new-before": "f 644 b'eb'",
    "file": "f 644 b'upper'",
}


def test_apply_whiteouts_and_opaque(tmp_path):
    r = tmp_path / "r"
    unpack(LOWER, r)
    unpack(UPPER, r)
    assert tree(r) == EXPECTED


def test_apply_whiteout_then_recreate_in_same_layer(tmp_path):
    r = tmp_path / "r"
    unpack([d("dir"), f("dir/old", b"o"), sym("s", "dir")], r)
    unpack([f(".wh.dir"), d("dir"), f("dir/new", b"n"), f(".wh.s"), f("s", b"now a file")], r)
    assert tree(r) == {"dir": "d 755", "dir/new": "f 644 b'n'", "s": "f 644 b'now a file'"}


def test_apply_does_not_write_through_hard_links_of_lower_layers(tmp_path):
    r = tmp_path / "r"
    unpack([f("a", b"one"), hard("b", "a")], r)
    unpack([f("a", b"two")], r)
    assert (r / "a").read_bytes() == b"two" and (r / "b").read_bytes() == b"one"


def test_apply_replaces_lower_symlink_instead_of_following(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"safe")
    r = tmp_path / "r"
    unpack([sym("f", str(victim)), sym("d", str(tmp_path))], r)
    unpack([f("f", b"pwned"), d("d")], r)
    assert victim.read_bytes() == b"safe"
    assert (r / "f").read_bytes() == b"pwned" and (r / "d").is_dir() and not (r / "d").is_symlink()


@pytest.mark.root
@needs_root
def test_overlay_whiteouts_and_opaque(tmp_path):
    lower, upper = tmp_path / "l1", tmp_path / "l2"
    unpack(LOWER, lower, OVERLAY)
    unpack(UPPER, upper, OVERLAY)
    for name in ("a/x", "b"):
        st = os.lstat(upper / name)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, name
    assert not (upper / "a/never-existed").exists() or stat.S_ISCHR(os.lstat(upper / "a/never-existed").st_mode)
    assert os.getxattr(upper / "c", "trusted.overlay.opaque") == b"y"
    assert not (upper / "c/.wh..wh..opq").exists() and not (upper / "a/.wh.x").exists()


@pytest.mark.root
@needs_root
def test_overlay_mount_matches_apply_mode(tmp_path):
    """The overlay layers mounted show what apply mode renders."""
    lower, upper, merged, flat = (tmp_path / n for n in ("l1", "l2", "merged", "flat"))
    unpack(LOWER, lower, OVERLAY)
    unpack(UPPER, upper, OVERLAY)
    unpack(LOWER, flat)
    unpack(UPPER, flat)
    merged.mkdir()
    p = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={upper}:{lower}",
                        str(merged)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"overlay mount not possible here: {p.stderr.strip()}")
    try:
        assert tree(merged) == tree(flat) == EXPECTED
    finally:
        subprocess.run(["umount", str(merged)], check=True)


@pytest.mark.root
@needs_root
def test_overlay_whiteout_and_directory_in_one_layer_is_opaque(tmp_path):
    layer = tmp_path / "l"
    unpack([f(".wh.dir"), d("dir"), f("dir/new", b"n")], layer, OVERLAY)
    assert os.getxattr(layer / "dir", "trusted.overlay.opaque") == b"y"


# ---- hostile layers --------------------------------------------------------------------------

HOSTILE = {
    "dotdot": [[f("../escaped", b"x")]],
    "dotdot-nested": [[f("a/b/../../../escaped", b"x")]],
    "symlink-in-layer": [[sym("lnk", "../"), f("lnk/escaped", b"x")]],
    "absolute-symlink-in-layer": [[sym("lnk", "/"), f("lnk/escaped", b"x")]],
    "symlink-dir-then-mkdir": [[sym("lnk", ".."), d("lnk/newdir")]],
    "symlink-from-lower-layer": [[sym("etc", "../..")], [f("etc/escaped", b"x")]],
    "hardlink-to-host-path": [[hard("passwd", "/etc/passwd")]],
    "hardlink-dotdot": [[hard("passwd", "../../../../../../etc/passwd")]],
    "hardlink-through-symlink": [[sym("hostetc", "/etc"), hard("passwd", "hostetc/passwd")]],
    "hardlink-to-escaping-symlink": [[sym("pw", "/etc/passwd"), hard("pw2", "pw")]],
    "hardlink-to-relative-escaping-symlink": [[sym("pw", "../../../etc/passwd"), hard("pw2", "pw")]],
    "hardlink-via-lower-symlink": [[sym("hostetc", "/etc")], [hard("passwd", "hostetc/passwd")]],
    "whiteout-dotdot": [[f(".wh..."), ]],
}


@pytest.mark.parametrize("mode", [APPLY, OVERLAY])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layers_are_refused(tmp_path, case, mode):
    if case == "symlink-from-lower-layer" and mode == OVERLAY:
        pytest.skip("each overlay layer has its own directory: covered below")
    base = tmp_path / "base"
    (base / "sibling").mkdir(parents=True)
    (base / "sibling/keep").write_bytes(b"keep")
    root = base / "deep/er/root"
    root.mkdir(parents=True)
    before = outside_snapshot(tmp_path, root)
    passwd = Path("/etc/passwd").read_bytes()
    layers = HOSTILE[case]
    with pytest.raises(UnsafeLayerError) as exc:
        for entries in layers:
            target = root if mode == APPLY else root / f"layer{layers.index(entries)}"
            unpack(entries, target, mode)
    assert "\n" not in str(exc.value)
    assert outside_snapshot(tmp_path, root) == before
    assert all(p.is_relative_to(root) for p in tmp_path.rglob("escaped"))
    assert Path("/etc/passwd").read_bytes() == passwd
    assert os.stat("/etc/passwd").st_nlink == 1


def test_overlay_layers_never_see_each_others_symlinks(tmp_path):
    """In the cache a lower layer's symlink is not in the upper layer's directory, so the
    upper layer's `etc/x` becomes a real directory there (overlay shows it over the symlink)."""
    unpack([sym("etc", "../..")], tmp_path / "l1", OVERLAY)
    unpack([f("etc/x", b"x")], tmp_path / "l2", OVERLAY)
    assert (tmp_path / "l2/etc").is_dir() and not (tmp_path / "l2/etc").is_symlink()
    assert not (tmp_path / "x").exists()


def test_absolute_paths_are_confined(tmp_path):
    """A leading `/` is relative to the target, as the spec and tar have it."""
    r = tmp_path / "r"
    unpack([f("/abs-file", b"x"), f("/etc/abs", b"y")], r)
    assert (r / "abs-file").read_bytes() == b"x" and (r / "etc/abs").read_bytes() == b"y"
    assert not Path("/abs-file").exists() and not Path("/etc/abs").exists()


def test_dotdot_that_stays_inside_is_fine(tmp_path):
    r = tmp_path / "r"
    unpack([f("a/../b", b"x")], r)
    assert (r / "b").read_bytes() == b"x"


def test_hardlink_to_relative_symlink_inside_is_kept(tmp_path):
    r = tmp_path / "r"
    unpack([f("t", b"x"), sym("s", "t"), hard("s2", "s")], r)
    assert os.readlink(r / "s2") == "t" and os.path.samestat(os.lstat(r / "s"), os.lstat(r / "s2"))


def test_truncated_and_corrupt_layers(tmp_path):
    layer = tar_entries([f("big", os.urandom(100_000))], compress=True)
    (tmp_path / "r1").mkdir()
    with pytest.raises(ManifestError):
        unpack_layer(io.BytesIO(layer.blob[:5000]), tmp_path / "r1", "gzip", APPLY)
    (tmp_path / "r2").mkdir()
    with pytest.raises(ManifestError):
        unpack_layer(io.BytesIO(b"\x1f\x8b not gzip at all"), tmp_path / "r2", "gzip", APPLY)
