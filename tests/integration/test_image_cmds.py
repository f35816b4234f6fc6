"""`rkt fetch` from files and `rkt image`, through the real CLI, checked with skopeo and umoci."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from rktnetes.image import builder
from rktnetes.image import mediatypes as mt
from rktnetes.store import digest as dg
from tests.conftest import store_snapshot


def _file(name: str, data: bytes, mode: int = 0o644):
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    return ti, data


def _dir(name: str, mode: int = 0o755):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode = tarfile.DIRTYPE, mode
    return ti


def _sym(name: str, target: str):
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = tarfile.SYMTYPE, target
    return ti


def two_layer_spec() -> builder.ImageSpec:
    base = builder.tar_entries([
        _dir("etc"), _file("etc/os-release", b"ID=test\n"), _file("etc/old", b"old"),
        _dir("var"), _dir("var/cache"), _file("var/cache/a", b"a"), _file("var/cache/b", b"b"),
        _dir("bin"), _file("bin/tool", b"#!/bin/sh\necho hi\n", 0o755)])
    top = builder.tar_entries([
        _dir("etc"), _file("etc/.wh.old", b""),
        _dir("var/cache"), _file("var/cache/.wh..wh..opq", b""), _file("var/cache/c", b"c"),
        _file("etc/motd", b"hello\n")], compress=False)
    return builder.ImageSpec(layers=[base, top], config={"Cmd": ["/bin/tool"]})


@pytest.fixture
def layout(tmp_path) -> Path:
    lay = builder.OCILayout(tmp_path / "layout")
    lay.add_image(two_layer_spec(), "v1")
    return lay.path


def oci_archive(layout: Path, out: Path) -> Path:
    with tarfile.open(out, "w") as tf:
        for p in sorted(layout.rglob("*")):
            tf.add(p, arcname=str(p.relative_to(layout)), recursive=False)
    return out


def docker_archive(spec: builder.ImageSpec, out: Path, tags: list[str]) -> Path:
    """What `docker save` writes: manifest.json, the config as <hex>.json, <id>/layer.tar."""
    cfg = builder.config_blob(spec)
    cfg_name = dg.short(dg.of_bytes(cfg), 64) + ".json"
    with tarfile.open(out, "w") as tf:
        def add(name: str, data: bytes):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))

        layer_names = []
        for i, layer in enumerate(spec.layers):
            raw = gzip.decompress(layer.blob) if layer.media_type.endswith("gzip") else layer.blob
            # one layer stays gzipped: docker-archive readers must detect compression by magic
            data = layer.blob if i == 0 else raw
            name = f"{dg.short(layer.diff_id, 64)}/layer.tar"
            add(name, data)
            layer_names.append(name)
        add(cfg_name, cfg)
        add("manifest.json", json.dumps([{"Config": cfg_name, "RepoTags": tags,
                                          "Layers": layer_names}]).encode())
        add("repositories", b"{}")
    return out


def image_id(res) -> str:
    return res.stdout.strip().splitlines()[-1]


def check_rootfs(rootfs: Path) -> None:
    assert (rootfs / "etc/os-release").read_bytes() == b"ID=test\n"
    assert (rootfs / "etc/motd").read_bytes() == b"hello\n"
    assert not (rootfs / "etc/old").exists()
    assert sorted(p.name for p in (rootfs / "var/cache").iterdir()) == ["c"]
    assert os.access(rootfs / "bin/tool", os.X_OK)


# ---- imports ---------------------------------------------------------------------------------

def test_fetch_oci_layout_and_list(rkt, layout):
    iid = image_id(rkt("fetch", f"oci:{layout}:v1"))
    assert iid.startswith("sha256:")
    out = rkt("image", "list").stdout
    assert out.splitlines()[0].split() == ["ID", "NAME", "SIZE", "IMPORT", "TIME", "LAST", "USED"]
    assert f"sha256:{dg.short(iid)}" in out and f"oci:{layout}:v1" in out
    listed = json.loads(rkt("image", "list", "--format", "json").stdout)
    assert [x["id"] for x in listed] == [iid]
    assert f"oci:{layout}:v1" in listed[0]["references"]
    assert iid in rkt("image", "list", "--no-trunc").stdout


def test_fetch_oci_layout_errors(rkt, tmp_path, layout):
    before = store_snapshot(rkt.paths.store)
    assert "no image named 'nope'" in rkt.fails("fetch", f"oci:{layout}:nope").stderr
    rkt.fails("fetch", f"oci:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    assert "not an OCI image layout" in rkt.fails("fetch", f"oci:{tmp_path / 'empty'}").stderr
    assert store_snapshot(rkt.paths.store) == before


def test_oci_layout_choice_by_name(rkt, tmp_path):
    lay = builder.OCILayout(tmp_path / "multi")
    lay.add_image(two_layer_spec(), "first")
    other = builder.ImageSpec([builder.tar_entries([_file("x", b"x")])], {"Cmd": ["/x"]})
    lay.add_image(other, "example.com/team/app:2.0")
    err = rkt.fails("fetch", f"oci:{lay.path}").stderr
    assert "2 images match" in err and "first" in err
    iid = image_id(rkt("fetch", f"oci:{lay.path}:example.com/team/app:2.0"))
    rec = rkt.store.images.get(iid)
    # a ref name that is a full image name becomes that name
    assert rec.references[0] == "example.com/team/app:2.0"
    assert image_id(rkt("fetch", f"oci:{lay.path}:first")) != iid


def test_oci_layout_index_resolved_to_host_platform(rkt, tmp_path):
    lay = builder.OCILayout(tmp_path / "multiarch")
    specs = []
    for arch in ("arm64", "amd64", "s390x"):
        specs.append(builder.ImageSpec([builder.tar_entries([_file("arch", arch.encode())])],
                                       {"Cmd": ["/x"]}, architecture=arch))
    lay.add_index(specs, "multi")
    iid = image_id(rkt("fetch", f"oci:{lay.path}"))
    rec = rkt.store.images.get(iid)
    from rktnetes.image.manifest import host_platform

    assert rec.platform == f"linux/{host_platform()['architecture']}"
    rkt("image", "render", iid, str(tmp_path / "r"), "--rootfs-only")
    assert (tmp_path / "r/arch").read_text() == host_platform()["architecture"]


def test_fetch_oci_archive(rkt, layout, tmp_path):
    archive = oci_archive(layout, tmp_path / "img.tar")
    iid = image_id(rkt("fetch", f"oci-archive:{archive}"))
    rec = rkt.store.images.get(iid)
    assert f"oci-archive:{archive}:v1" in rec.references
    # the same blobs from a layout: the same image
    assert image_id(rkt("fetch", f"oci:{layout}:v1")) == iid


def test_fetch_docker_archive(rkt, tmp_path):
    spec = two_layer_spec()
    archive = docker_archive(spec, tmp_path / "saved.tar", ["myapp:1.0", "example.com/x/y:latest"])
    iid = image_id(rkt("fetch", f"docker-archive:{archive}"))
    rec = rkt.store.images.get(iid)
    assert iid == dg.of_bytes(builder.config_blob(spec))
    assert rec.references[:2] == ["docker.io/library/myapp:1.0", "example.com/x/y:latest"]
    assert [x.media_type for x in rec.layers] == [mt.OCI_LAYER_GZIP, mt.OCI_LAYER]
    manifest = json.loads(rkt("image", "cat-manifest", "myapp:1.0").stdout)
    assert manifest["mediaType"] == mt.OCI_MANIFEST and manifest["config"]["digest"] == iid
    rkt("image", "extract", "docker.io/library/myapp:1.0", str(tmp_path / "x"))
    check_rootfs(tmp_path / "x/rootfs")


def test_docker_archive_with_wrong_layer_fails_cleanly(rkt, layout, tmp_path):
    rkt("fetch", f"oci:{layout}:v1")   # a store with content, some of it shareable
    spec = two_layer_spec()
    spec.layers[1], spec.layers[0] = spec.layers[0], spec.layers[1]   # diff_ids now mismatch
    cfg_spec = two_layer_spec()
    archive = docker_archive(spec, tmp_path / "bad.tar", ["bad:1"])
    # rewrite the config so it lists the original order's diff_ids
    with tarfile.open(archive) as tf:
        members = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}
    entry = json.loads(members["manifest.json"])[0]
    members[entry["Config"]] = builder.config_blob(cfg_spec)
    with tarfile.open(archive, "w") as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    before = store_snapshot(rkt.paths.store)
    err = rkt.fails("fetch", f"docker-archive:{archive}").stderr
    assert "digest" in err and len(err.strip().splitlines()) == 1
    assert store_snapshot(rkt.paths.store) == before


def test_hostile_layer_leaves_store_unchanged(rkt, layout, tmp_path):
    rkt("fetch", f"oci:{layout}:v1")   # a store with content, some of it shareable
    before = store_snapshot(rkt.paths.store)
    good = two_layer_spec().layers[0]
    evil = builder.tar_entries([_sym("link", "/"), _file("link/tmp/rkt-pwned", b"x"),
                                _file("../../escaped", b"x")])
    lay = builder.OCILayout(tmp_path / "evil")
    fresh = builder.tar_entries([_file("fresh", b"a layer the store does not have yet")])
    lay.add_image(builder.ImageSpec([good, fresh, evil], {"Cmd": ["/x"]}), "latest")
    err = rkt.fails("fetch", f"oci:{lay.path}").stderr
    assert "unsafe entry" in err and len(err.strip().splitlines()) == 1
    assert store_snapshot(rkt.paths.store) == before
    assert not Path("/tmp/rkt-pwned").exists() and not list(tmp_path.rglob("escaped"))


def test_two_concurrent_imports_of_one_image(rkt, layout, tmp_path):
    archive = oci_archive(layout, tmp_path / "img.tar")
    procs = [subprocess.Popen(rkt.argv("fetch", f"oci-archive:{archive}"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    ids = {o[0].strip().splitlines()[-1] for o in outs}
    assert len(ids) == 1
    store = rkt.store
    assert len(list(store.images.all())) == 1
    assert sorted(p.name for p in store.layers_dir.iterdir()) == sorted(
        store.layer_path(x.digest).name for x in store.images.get(ids.pop()).layers)
    leftovers = [p for p in rkt.paths.store.rglob("*") if ".tmp" in p.name or p.name.endswith(".part")]
    assert leftovers == []


# ---- rm / gc -------------------------------------------------------------------------------

def test_rm_by_name_and_prefix(rkt, layout, tmp_path):
    iid = image_id(rkt("fetch", f"oci:{layout}:v1"))
    other = builder.OCILayout(tmp_path / "other")
    other.add_image(builder.ImageSpec([builder.tar_entries([_file("o", b"o")])], {"Cmd": ["/o"]}))
    oid = image_id(rkt("fetch", f"oci:{other.path}"))
    res = rkt.fails("image", "rm", "no-such-image", dg.short(oid, 10))
    assert "not found" in res.stderr and f"removed image {oid}" in res.stdout
    rkt("image", "rm", f"oci:{layout}:v1")
    assert list(rkt.store.images.all()) == []
    assert list(rkt.store.blobs.all()) == []
    assert list(rkt.store.layers_dir.iterdir()) == []
    assert iid


def test_gc_grace_period(rkt, layout):
    iid = image_id(rkt("fetch", f"oci:{layout}:v1"))
    out = rkt("image", "gc").stdout
    assert "removed 0 image(s)" in out
    assert rkt.store.images.get(iid)
    assert "invalid duration" in rkt.fails("image", "gc", "--grace-period", "soon").stderr
    out = rkt("image", "gc", "--grace-period=0").stdout
    assert f"removed image {iid}" in out
    assert list(rkt.store.blobs.all()) == [] and list(rkt.store.layers_dir.iterdir()) == []


def test_gc_keeps_images_used_by_pods(rkt, layout):
    iid = image_id(rkt("fetch", f"oci:{layout}:v1"))
    pod = rkt.paths.pods / "run" / "0e2e3b3c-0000-0000-0000-000000000000"
    pod.mkdir(parents=True)
    (pod / "pod.json").write_text(json.dumps({"apps": [{"name": "a", "image_id": iid}]}))
    rkt("image", "gc", "--grace-period=0")
    assert rkt.store.images.get(iid)
    err = rkt.fails("image", "rm", iid).stderr
    assert err.count("\n") == 1 and "used by pod 0e2e3b3c;" in err, err
    other = rkt.paths.pods / "exited-garbage" / "5f00aa11-0000-0000-0000-000000000000"
    other.mkdir(parents=True)
    (other / "pod.json").write_text(json.dumps({"apps": [{"name": "b", "image_id": iid},
                                                         {"name": "c", "image_id": iid}]}))
    err = rkt.fails("image", "rm", iid).stderr
    assert "used by pods 0e2e3b3c, 5f00aa11;" in err and err.count("5f00aa11") == 1, err
    assert rkt.store.images.get(iid)


# ---- export / extract / render / cat-manifest ------------------------------------------------

@pytest.mark.skipif(not shutil.which("skopeo") or not shutil.which("umoci"),
                    reason="skopeo and umoci are needed")
def test_export_is_accepted_by_skopeo_and_umoci(rkt, tmp_path):
    archive = docker_archive(two_layer_spec(), tmp_path / "saved.tar", ["myapp:1.0"])
    iid = image_id(rkt("fetch", f"docker-archive:{archive}"))
    out = tmp_path / "export.tar"
    rkt("image", "export", "myapp:1.0", str(out))
    assert "exists" in rkt.fails("image", "export", "myapp:1.0", str(out)).stderr
    rkt("image", "export", "myapp:1.0", str(out), "--overwrite")

    info = json.loads(subprocess.run(["skopeo", "inspect", f"oci-archive:{out}"], check=True,
                                     capture_output=True, text=True).stdout)
    assert len(info["Layers"]) == 2
    cfg = json.loads(subprocess.run(["skopeo", "inspect", "--config", f"oci-archive:{out}:1.0"],
                                    check=True, capture_output=True, text=True).stdout)
    assert cfg["config"]["Cmd"] == ["/bin/tool"]

    lay = tmp_path / "untarred"
    lay.mkdir()
    with tarfile.open(out) as tf:
        tf.extractall(lay)
    bundle = tmp_path / "bundle"
    p = subprocess.run(["umoci", "unpack", "--image", f"{lay}:1.0", str(bundle)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    check_rootfs(bundle / "rootfs")

    # re-importing the export restores the name and the very same image
    rkt("image", "rm", iid)
    assert image_id(rkt("fetch", f"oci-archive:{out}")) == iid
    assert rkt.store.images.get(iid).references[0] == "docker.io/library/myapp:1.0"


def test_extract_render_and_cat_manifest(rkt, layout, tmp_path):
    iid = image_id(rkt("fetch", f"oci:{layout}:v1"))
    rkt("image", "render", iid, str(tmp_path / "full"))
    check_rootfs(tmp_path / "full/rootfs")
    manifest = json.loads((tmp_path / "full/manifest").read_bytes())
    assert manifest["config"]["digest"] == iid
    assert json.loads((tmp_path / "full/config").read_bytes())["config"]["Cmd"] == ["/bin/tool"]

    rkt("image", "extract", dg.short(iid, 8), str(tmp_path / "flat"), "--rootfs-only")
    check_rootfs(tmp_path / "flat")
    assert "not empty" in rkt.fails("image", "extract", iid, str(tmp_path / "flat")).stderr
    rkt("image", "extract", iid, str(tmp_path / "flat"), "--rootfs-only", "--overwrite")
    check_rootfs(tmp_path / "flat")

    raw = rkt("image", "cat-manifest", iid).stdout
    assert json.loads(raw) == manifest and "\n  " not in raw
    pretty = rkt("image", "cat-manifest", iid, "--pretty-print").stdout
    assert json.loads(pretty) == manifest and "\n  " in pretty
    assert "not found" in rkt.fails("image", "cat-manifest", "nothing:here").stderr


def test_render_of_cross_layer_symlink_escape_is_refused(rkt, tmp_path):
    """The cache keeps each layer apart (safe for overlay), but rendering layers into one
    tree must refuse a lower layer's symlink being written through."""
    l1 = builder.tar_entries([_sym("etc", "/tmp")])
    l2 = builder.tar_entries([_dir("etc"), _file("etc/rkt-pwned-render", b"x")])
    lay = builder.OCILayout(tmp_path / "lay")
    lay.add_image(builder.ImageSpec([l1, l2], {"Cmd": ["/x"]}))
    iid = image_id(rkt("fetch", f"oci:{lay.path}"))
    rkt("image", "render", iid, str(tmp_path / "out"), "--rootfs-only")
    # `etc/` as a directory entry replaces the symlink instead of following it
    assert (tmp_path / "out/etc/rkt-pwned-render").exists()
    assert not Path("/tmp/rkt-pwned-render").exists()

    l2b = builder.tar_entries([_file("etc/rkt-pwned-render", b"x")])
    lay2 = builder.OCILayout(tmp_path / "lay2")
    lay2.add_image(builder.ImageSpec([l1, l2b], {"Cmd": ["/x"]}))
    iid2 = image_id(rkt("fetch", f"oci:{lay2.path}"))
    err = rkt.fails("image", "render", iid2, str(tmp_path / "out2"), "--rootfs-only").stderr
    assert "symlink 'etc'" in err
    assert not (tmp_path / "out2").exists() and not Path("/tmp/rkt-pwned-render").exists()
    assert [p for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_image_without_subcommand_and_unknown_image(rkt):
    assert rkt("image", check=False).returncode == 2
    assert "not found" in rkt.fails("image", "export", "sha256:abcd", "/tmp/x.tar").stderr


# ---- bad targets and bad archives: one line, nothing written -----------------------------------

def test_export_replaces_only_regular_files(rkt, layout, tmp_path):
    iid = image_id(rkt("fetch", f"oci:{layout}:v1"))
    targets = {"directory": tmp_path / "adir", "named pipe": tmp_path / "fifo",
               "symbolic link": tmp_path / "link"}
    targets["directory"].mkdir()
    os.mkfifo(targets["named pipe"])
    (tmp_path / "real.tar").write_bytes(b"keep")
    targets["symbolic link"].symlink_to(tmp_path / "real.tar")
    try:   # a device node of our own (the /dev/null numbers), never one under /dev
        os.mknod(tmp_path / "dev", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        targets["character device"] = tmp_path / "dev"
    except PermissionError:
        pass
    for kind, path in targets.items():
        before = os.lstat(path)
        for extra in ([], ["--overwrite"]):
            err = rkt.fails("image", "export", iid, str(path), *extra).stderr
            assert err.count("\n") == 1 and kind in err and str(path) in err, err
        after = os.lstat(path)
        assert (stat.S_IFMT(after.st_mode), after.st_ino) == (stat.S_IFMT(before.st_mode),
                                                             before.st_ino)
    assert (tmp_path / "real.tar").read_bytes() == b"keep"
    assert [p for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    # a regular file is replaced with --overwrite (and only with it)
    assert "exists" in rkt.fails("image", "export", iid, str(tmp_path / "real.tar")).stderr
    rkt("image", "export", iid, str(tmp_path / "real.tar"), "--overwrite")
    assert tarfile.is_tarfile(tmp_path / "real.tar")


@pytest.mark.skipif(not os.path.isfile("/proc/version"), reason="needs /proc")
def test_export_into_an_unwritable_directory_is_one_line(rkt, layout):
    iid = image_id(rkt("fetch", f"oci:{layout}:v1"))
    err = rkt.fails("image", "export", iid, "/proc/version", "--overwrite").stderr
    assert err.startswith("rkt: cannot write /proc/version") and err.count("\n") == 1, err


def test_targets_need_an_existing_parent_and_a_name(rkt, layout, tmp_path):
    iid = image_id(rkt("fetch", f"oci:{layout}:v1"))
    missing = tmp_path / "no" / "such"
    for args in (["export", iid, str(missing / "out.tar")], ["extract", iid, str(missing / "x")],
                 ["render", iid, str(missing / "x"), "--rootfs-only"]):
        err = rkt.fails("image", *args).stderr
        assert f"parent directory {missing} does not exist" in err, err
        assert not (tmp_path / "no").exists()
    (tmp_path / "file").write_text("x")
    assert "is not a directory" in rkt.fails("image", "export", iid,
                                             str(tmp_path / "file/out.tar")).stderr
    for sub in ("export", "extract", "render"):
        err = rkt.fails("image", sub, iid, "").stderr
        assert "empty path" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config", "data", "file", "layout"]


def test_export_to_standard_output(rkt, layout, tmp_path):
    iid = image_id(rkt("fetch", f"oci:{layout}:v1"))
    rkt("image", "export", iid, str(tmp_path / "file.tar"))
    piped = subprocess.run(rkt.argv("image", "export", iid, "-"), capture_output=True,
                           check=True, cwd=tmp_path).stdout
    assert piped == (tmp_path / "file.tar").read_bytes()   # the same archive, byte for byte
    assert not (tmp_path / "-").exists()
    (tmp_path / "piped.tar").write_bytes(piped)
    from tests.conftest import Rkt

    (tmp_path / "other-config").mkdir()
    other = Rkt(tmp_path / "other-data", tmp_path / "other-config")   # a store of its own
    assert image_id(other("fetch", f"oci-archive:{tmp_path / 'piped.tar'}")) == iid


def test_extract_never_replaces_a_non_directory(rkt, layout, tmp_path):
    iid = image_id(rkt("fetch", f"oci:{layout}:v1"))
    (tmp_path / "file").write_text("keep")
    os.mkfifo(tmp_path / "fifo")
    for name, kind in (("file", "regular file"), ("fifo", "named pipe")):
        err = rkt.fails("image", "extract", iid, str(tmp_path / name), "--overwrite").stderr
        assert f"is a {kind}, not a directory" in err, err
    assert (tmp_path / "file").read_text() == "keep"
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)


@pytest.mark.root
def test_extract_overwrite_never_replaces_rktnetes_dirs_or_mounts(rkt, layout, tmp_path):
    iid = image_id(rkt("fetch", f"oci:{layout}:v1"))
    before = store_snapshot(rkt.paths.store)
    # the data dir itself, a directory holding it (tmp_path), one inside it, the config dir
    for target in (rkt.paths.data, tmp_path, rkt.paths.store, rkt.paths.config):
        err = rkt.fails("image", "extract", "--overwrite", iid, str(target)).stderr
        assert f"refusing to replace {target}" in err and err.count("\n") == 1, err
    assert store_snapshot(rkt.paths.store) == before
    assert [r.id for r in rkt.store.images.all()] == [iid]
    # a directory with a mount point inside
    target = tmp_path / "holds-a-mount"
    (target / "m").mkdir(parents=True)
    (target / "keep").write_text("x")
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(target / "m")], check=True)
    try:
        err = rkt.fails("image", "extract", "--overwrite", iid, str(target)).stderr
        assert f"{target / 'm'} is a mount point" in err, err
        assert (target / "keep").read_text() == "x"
    finally:
        subprocess.run(["umount", str(target / "m")], check=True)
    # without the mount, --overwrite replaces it as before
    rkt("image", "extract", "--overwrite", iid, str(target))
    assert sorted(p.name for p in target.iterdir()) == ["config", "manifest", "rootfs"]


@pytest.mark.parametrize("transport", ["docker-archive", "oci-archive"])
def test_fetch_of_a_file_that_is_no_tar(rkt, tmp_path, transport):
    junk = tmp_path / "passwd"
    junk.write_text("root:x:0:0:root:/root:/bin/sh\n")
    err = rkt.fails("fetch", f"{transport}:{junk}").stderr
    assert err == f"rkt: {transport}:{junk}: not a tar archive\n"
    assert store_snapshot(rkt.paths.store) == set() or list(rkt.store.images.all()) == []


def test_image_help_describes_every_argument():
    from rktnetes.cli.main import build_parser

    parser = build_parser()

    def sub(p, name):
        action = next(a for a in p._actions if a.__class__.__name__ == "_SubParsersAction")
        return action.choices[name]

    image = sub(parser, "image")
    for name in ("rm", "export", "extract", "render", "cat-manifest"):
        for a in sub(image, name)._actions:
            if not a.option_strings:
                assert a.help, f"image {name}: {a.metavar} has no help"
    assert sub(image, "render").description != sub(image, "extract").description
    assert "extract" in sub(image, "render").description
    assert [a.help for a in sub(parser, "help")._actions if not a.option_strings] != [None]
