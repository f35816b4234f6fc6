"""Hostile images, as an attacker would make them: each is refused with one line or contained,
the host is left untouched, a start on one always ends and `rkt stop --force` always works.

The images are built here (a busybox base layer and a hand-made hostile layer on top), written
as OCI layouts and fetched with `rkt fetch oci:...`, then run for real.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import textwrap
import time
import uuid as uuidlib
from pathlib import Path

import pytest

from rktnetes.image import builder
from rktnetes.image import mediatypes as mt
from rktnetes.store import digest as dg
from tests.conftest import store_snapshot

from .pod_helpers import (FLAVORS, assert_nothing_left, log_lines, need_root_tools,
                          processes_mentioning, run_detached, status, wait_for)

pytestmark = [pytest.mark.root, pytest.mark.containers]


# -- building images ---------------------------------------------------------------------------

def _ti(name: str, kind=tarfile.REGTYPE, mode: int = 0o644, **kw) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime = kind, mode, builder.EPOCH
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


def reg(name: str, data: bytes = b"", mode: int = 0o644, uid: int = 0, gid: int = 0):
    return _ti(name, mode=mode, uid=uid, gid=gid), data


def dir_(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    return _ti(name, tarfile.DIRTYPE, mode)


def sym(name: str, target: str) -> tarfile.TarInfo:
    return _ti(name, tarfile.SYMTYPE, 0o777, linkname=target)


def node(name: str, kind, major: int = 0, minor: int = 0, mode: int = 0o666) -> tarfile.TarInfo:
    return _ti(name, kind, mode, devmajor=major, devminor=minor)


@pytest.fixture(scope="module")
def base_layer(tmp_path_factory) -> builder.Layer:
    """The built-in image's busybox layer, built once for the module."""
    need_root_tools()
    return builder.default_image_spec(tmp_path_factory.mktemp("base")).layers[0]


def write_image(where: Path, layers: list[builder.Layer], config: dict | None = None,
                raw_config: dict | None = None) -> str:
    """An OCI layout holding one image; returns its `oci:` reference. raw_config replaces
    the whole image config (for malformed ones), config only its `config` section."""
    layout = builder.OCILayout(where)
    if raw_config is None:
        spec = builder.ImageSpec(layers=layers, config={"Cmd": ["/bin/sh"], **(config or {})})
        layout.add_image(spec, "img")
        return f"oci:{where}:img"
    cfg = json.dumps(raw_config).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": layout.put(cfg), "size": len(cfg)},
        "layers": [{"mediaType": x.media_type, "digest": layout.put(x.blob), "size": len(x.blob)}
                   for x in layers]}).encode()
    layout._index_entry(mt.OCI_MANIFEST, layout.put(manifest), len(manifest), "img",
                        {"os": "linux", "architecture": "amd64"})
    return f"oci:{where}:img"


def hostile(rkt, tmp_path: Path, base: builder.Layer, *tops: list, config: dict | None = None,
            name: str = "img") -> str:
    """Fetch an image of the busybox base and hostile layers `tops` (lists of tar entries)."""
    ref = write_image(tmp_path / name, [base, *(builder.tar_entries(t) for t in tops)], config)
    rkt("fetch", ref)
    return ref


def as_nobody(code: str) -> dict:
    """Run Python `code` as the host user nobody (no groups); it prints a JSON answer."""
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


PROBE = textwrap.dedent("""
    import json, os
    res = {}
    for p in PATHS:
        try:
            if os.path.isdir(p):
                os.listdir(p)
                res[p] = "listed"
            else:
                os.close(os.open(p, os.O_RDONLY | os.O_NONBLOCK))
                res[p] = "opened"
        except OSError as e:
            res[p] = e.strerror
    try:
        os.execv(SUID, [SUID, "id", "-u"])
    except OSError as e:
        res["exec"] = e.strerror
    print(json.dumps(res))
""")


# -- the store and every rootfs: out of other users' reach -------------------------------------

@pytest.fixture
def public_rkt(tmp_path):
    """An Rkt whose data directory lies in a directory every user may enter (pytest's own
    temporary directories are root's alone, which would hide everything anyway)."""
    import shutil
    import tempfile

    from tests.conftest import Rkt

    top = Path(tempfile.mkdtemp(prefix="rkt-public-", dir="/var/tmp"))
    top.chmod(0o755)
    (top / "config").mkdir()
    yield Rkt(top / "data", top / "config")
    shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_store_and_rootfs_unreachable_by_other_users(public_rkt, tmp_path, base_layer, flavor):
    """A layer's setuid-root binary, setgid file and world-writable device nodes: a host user
    other than root reaches none of them, through the store or through a running pod, while
    the app sees them with their owners and modes; the device nodes do not work inside."""
    rkt = public_rkt
    rkt.data.mkdir(mode=0o755)             # an older, looser data directory is tightened
    busybox = Path("/bin/busybox").read_bytes()
    ref = hostile(rkt, tmp_path, base_layer, [
        dir_("opt"), reg("opt/suid", busybox, 0o4755), reg("opt/sgid", b"x", 0o2755, 0, 42),
        node("opt/kmsg", tarfile.CHRTYPE, 1, 11), node("opt/kvm", tarfile.CHRTYPE, 10, 232),
        node("opt/loop", tarfile.BLKTYPE, 7, 0)])
    assert stat.S_IMODE(rkt.data.stat().st_mode) == 0o700
    uuid = run_detached(rkt, f"--stage1={flavor}", ref, "--exec", "/bin/sh", "--", "-c",
                        "stat -c '%a %u %g %F' /opt/suid /opt/sgid /opt/kmsg; "
                        "echo x > /opt/kmsg && echo kmsg-writable; "
                        "echo ready; exec sleep 600", "---")
    try:
        wait_for(lambda: "ready" in "".join(log_lines(rkt, uuid, "img")), 30,
                 "the app to start")
        lines = log_lines(rkt, uuid, "img")
        assert "4755 0 0 regular file" in lines and "2755 0 42 regular file" in lines
        assert "666 0 0 character special file" in lines
        assert "kmsg-writable" not in lines                     # the image's node does not work
        layers = [p for p in rkt.store.layers_dir.iterdir() if not p.name.startswith(".")]
        top = next(p for p in layers if (p / "opt/suid").exists())
        pod = next(rkt.paths.pods.glob(f"*/{uuid}"))
        rootfs = pod / "apps/img/rootfs/opt"
        if flavor == "default":   # (a fly app's rootfs is mounted in its own namespace)
            assert (rootfs / "suid").exists()                  # root sees the mounted rootfs
        # the check can fail: nobody reaches the directory the data directory is in
        assert as_nobody(f"import json, os; print(json.dumps(os.listdir("
                         f"{str(rkt.data.parent)!r})))")
        targets = [str(rkt.data), str(rkt.paths.store), str(top / "opt/kmsg"),
                   str(top / "opt/kvm"), str(top / "opt/loop"), str(rootfs / "kmsg"),
                   str(pod), str(pod / "apps/img/log"), str(rkt.data / "runc")]
        code = f"PATHS = {targets!r}\nSUID = {str(top / 'opt/suid')!r}\n" + PROBE
        got = as_nobody(code)
        assert got.pop("exec") == "Permission denied"
        assert set(got.values()) == {"Permission denied"}, got
        if flavor == "default":   # its pod has a network namespace, under /run/rktnetes
            assert stat.S_IMODE(Path("/run/rktnetes").stat().st_mode) == 0o711
            assert stat.S_IMODE(Path("/run/rktnetes/netns").stat().st_mode) == 0o700
    finally:
        rkt("stop", "--force", uuid)
        rkt("gc", "--grace-period=0")
    assert_nothing_left(rkt, [uuid])


# -- files rktnetes reads from an image: regular files only, inside the image -----------------

FIFO_VARIANTS = {
    "fifo": ([[dir_("etc"), node("etc/passwd", tarfile.FIFOTYPE)]], "FIFO"),
    "chardev-zero": ([[dir_("etc"), node("etc/passwd", tarfile.CHRTYPE, 1, 5)]],
                     "character device"),
    "blockdev": ([[dir_("etc"), node("etc/group", tarfile.BLKTYPE, 7, 0)]], "block device"),
    "relative-symlink": ([[node("p", tarfile.FIFOTYPE), dir_("etc"), sym("etc/passwd", "../p")]],
                         "FIFO"),
    "absolute-symlink": ([[node("p", tarfile.FIFOTYPE), dir_("etc"), sym("etc/passwd", "/p")]],
                         "FIFO"),
    "across-layers": ([[node("p", tarfile.FIFOTYPE)], [dir_("etc"), sym("etc/passwd", "/p")]],
                      "FIFO"),
    "directory": ([[dir_("etc"), dir_("etc/passwd")]], "directory"),
}


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("variant", sorted(FIFO_VARIANTS))
def test_passwd_not_a_regular_file_is_refused(rkt, tmp_path, base_layer, variant, flavor):
    tops, kind = FIFO_VARIANTS[variant]
    ref = hostile(rkt, tmp_path, base_layer, *tops)
    res = rkt.fails("run", f"--stage1={flavor}", ref, "--exec", "/bin/true", timeout=60)
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert f"is a {kind}, not a regular file" in res.stderr
    assert_nothing_left(rkt)


def test_a_fifo_passwd_the_app_made_itself_ends_its_restart(rkt, tmp_path, base_layer):
    """The start step's own read, end to end: the app replaces /etc/passwd with a FIFO in its
    writable layer and fails; its restart refuses that file at once (not blocking on it), and
    the pod is stopped as usual."""
    ref = write_image(tmp_path / "self", [base_layer])
    rkt("fetch", ref)
    uuid = run_detached(rkt, "--restart=on-failure", ref, "--exec", "/bin/sh", "--", "-c",
                        "if [ -p /etc/passwd ]; then sleep 600; fi; rm /etc/passwd && "
                        "mkfifo /etc/passwd && exit 3", "---")

    def start_refused():
        a = status(rkt, uuid)["apps"][0]
        return a["reason"] == "StartError" and "FIFO, not a regular file" in a["message"]

    wait_for(start_refused, 30, "the restart to be refused")
    rkt("stop", "--force", uuid, timeout=60)
    rkt("gc", "--grace-period=0")
    assert_nothing_left(rkt, [uuid])


def test_fly_never_makes_a_mount_point_on_the_hosts_dev(rkt, tmp_path, base_layer):
    """An image's `/x -> /dev` with a volume mounted at /x/foo: the host's /dev is already in
    the rootfs then, and nothing is made on it."""
    vol = tmp_path / "vol"
    vol.mkdir()
    ref = write_image(tmp_path / "devlink", [base_layer, builder.tar_entries([
        _ti("x", tarfile.SYMTYPE, 0o777, linkname="/dev")])])
    rkt("fetch", ref)
    name = f"rkt-test-{uuidlib.uuid4().hex[:8]}"
    res = rkt.fails("run", "--stage1=fly", f"--volume=v,kind=host,source={vol}", ref,
                    f"--mount=volume=v,target=/x/{name}", "--exec", "/bin/true")
    assert "not the image's" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not os.path.lexists(f"/dev/{name}")
    rkt("gc", "--grace-period=0")
    assert_nothing_left(rkt)


def test_start_reads_identity_files_in_the_rootfs_only(tmp_path):
    """The start step's reader (on the mounted rootfs) refuses a FIFO at once instead of
    blocking on it, and never follows a link out of the rootfs."""
    from rktnetes.errors import Stage1Error
    from rktnetes.stage1.users import resolve_in

    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.mkfifo(root / "etc/passwd")
    with pytest.raises(Stage1Error, match="FIFO, not a regular file"):
        resolve_in(root, "0", "")    # opening it to read would block for ever
    os.unlink(root / "etc/passwd")
    host_file = tmp_path / "host-passwd"
    host_file.write_text("root:x:777:777::/:/bin/sh\n")
    os.symlink(str(host_file), root / "etc/passwd")     # names a host file: not read
    with pytest.raises(Stage1Error, match="user 'root' not found"):
        resolve_in(root, "root", "")
    os.makedirs(root / str(host_file.parent).lstrip("/"))
    (root / str(host_file).lstrip("/")).write_text("root:x:0:0::/:/bin/sh\n")
    assert resolve_in(root, "root", "").uid == 0        # the image's file of that name is


@pytest.mark.parametrize("flavor", FLAVORS)
def test_etc_symlink_to_a_host_directory_resolves_in_the_image(rkt, tmp_path, base_layer, flavor):
    """/etc is a symlink to a path that exists on the host with a passwd of its own: both the
    prepare check and the start read the image's file of that path, never the host's."""
    host_etc = tmp_path / f"host-etc-{uuidlib.uuid4().hex[:8]}"
    host_etc.mkdir()
    (host_etc / "passwd").write_text("root:x:0:0::/:/bin/sh\nalice:x:4321:4321::/:/bin/sh\n")
    (host_etc / "group").write_text("root:x:0:\nalice:x:4321:\n")
    inside = str(host_etc).lstrip("/")
    parts = inside.split("/")
    dirs = [dir_("/".join(parts[:i + 1])) for i in range(len(parts))]
    ref = hostile(rkt, tmp_path, base_layer, [
        *dirs, reg(f"{inside}/passwd", b"root:x:0:0::/:/bin/sh\nalice:x:1234:1235::/:/bin/sh\n"),
        reg(f"{inside}/group", b"root:x:0:\nalicegrp:x:1235:\n"),
        _ti("etc", tarfile.SYMTYPE, 0o777, linkname=str(host_etc))], name="etc-link")
    out = rkt("run", f"--stage1={flavor}", ref, "--user=alice", "--exec", "/bin/sh", "--", "-c",
              "echo ids=$(id -u):$(id -g)", "---").stdout
    assert "ids=1234:1235" in out, out
    # the same link with nothing behind it in the image: refused, though the host has alice
    ref2 = hostile(rkt, tmp_path, base_layer, [
        _ti("etc", tarfile.SYMTYPE, 0o777, linkname=str(host_etc))], name="dangling")
    res = rkt.fails("run", f"--stage1={flavor}", ref2, "--user=alice", "--exec", "/bin/true")
    assert "user 'alice' not found" in res.stderr
    rkt("gc", "--grace-period=0")
    assert_nothing_left(rkt)


def test_fly_dev_as_a_file_is_one_line(rkt, tmp_path, base_layer):
    ref = write_image(tmp_path / "devfile", [base_layer, builder.tar_entries([
        _ti("dev", tarfile.REGTYPE, 0o644)])])
    rkt("fetch", ref)
    res = rkt.fails("run", "--stage1=fly", ref, "--exec", "/bin/true")
    assert "/dev is not a directory in the image" in res.stderr
    assert "Errno" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    rkt("gc", "--grace-period=0")
    assert_nothing_left(rkt)


def test_fly_mount_target_symlink_stays_in_the_rootfs(rkt, tmp_path, base_layer):
    """A volume's mount point that is an absolute symlink in the image is made inside the
    rootfs: the host path it names is never mounted over."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("host file\n")
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "from-volume").write_text("v\n")
    ref = write_image(tmp_path / "mnt", [base_layer, builder.tar_entries([
        _ti("data", tarfile.SYMTYPE, 0o777, linkname=str(victim))])])
    rkt("fetch", ref)
    out = rkt("run", "--stage1=fly", f"--volume=v,kind=host,source={vol}", ref,
              "--mount=volume=v,target=/data", "--exec", "/bin/sh", "--", "-c",
              "ls /data/", "---").stdout
    assert "from-volume" in out
    assert sorted(os.listdir(victim)) == ["keep"]
    rkt("gc", "--grace-period=0")
    assert_nothing_left(rkt)


# -- decompression bombs ------------------------------------------------------------------------

class _Zeros(io.RawIOBase):
    def __init__(self, n: int):
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def bomb_layer(size: int) -> builder.Layer:
    """A gzip layer holding one file of `size` zeros (a few hundred KB on the wire)."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w|") as tf:
            ti = _ti("zeros")
            ti.size = size
            tf.addfile(ti, io.BufferedReader(_Zeros(size), 1 << 20))
    blob = raw.getvalue()
    return builder.Layer(blob, mt.OCI_LAYER_GZIP, _diff_id(blob))


def _diff_id(blob: bytes) -> str:
    import hashlib

    h = hashlib.sha256()
    with gzip.GzipFile(fileobj=io.BytesIO(blob)) as gz:
        while chunk := gz.read(1 << 20):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


@pytest.fixture(scope="module")
def bomb() -> builder.Layer:
    return bomb_layer(256 << 20)


def test_bomb_stops_at_the_limit_and_leaves_the_store_as_it_was(rkt, tmp_path, base_layer, bomb):
    (rkt.config / "store.toml").write_text('max_layer_size = "64Mi"\n')
    rkt("fetch", write_image(tmp_path / "ok", [base_layer]))   # a store with something in it
    before = store_snapshot(rkt.paths.store)
    ref = write_image(tmp_path / "bomb", [base_layer, bomb])
    res = rkt.fails("fetch", ref)
    assert "expands past 64.0 MiB" in res.stderr and "store.toml" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert store_snapshot(rkt.paths.store) == before
    # the default bound (100x the compressed size, at least 1 GiB) lets a real layer through
    # and this one too (256 MiB < 1 GiB); the free-space floor is checked before unpacking
    (rkt.config / "store.toml").write_text('min_free_space = "100000Ti"\n')
    res = rkt.fails("fetch", ref)
    assert "would stay free" in res.stderr
    assert store_snapshot(rkt.paths.store) == before


@pytest.mark.parametrize("gc", [["gc", "--grace-period=0"], ["image", "gc"]])
def test_killed_unpack_is_swept_by_gc_once_nobody_holds_it(rkt, tmp_path, base_layer, bomb, gc):
    """(gc leaving a live unpack's directory alone: tests/unit/test_layer_cache.py)"""
    ref = write_image(tmp_path / "bomb", [base_layer, bomb])
    rkt("fetch", write_image(tmp_path / "ok", [base_layer]))
    p = subprocess.Popen(rkt.argv("fetch", ref), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    layers = rkt.paths.store / "layers"

    def unpacking() -> list[Path]:
        return [x for x in layers.glob(".tmp-*") if any(x.iterdir())]

    temps = wait_for(unpacking, 60, "the unpack to start")
    p.kill()
    p.wait()
    from rktnetes.store.tmpfiles import is_held

    assert temps[0].exists() and not is_held(temps[0])
    rkt(*gc)                               # young, but nobody holds it: swept
    assert not temps[0].exists()
    staging = rkt.paths.store / "tmp"
    assert not staging.exists() or not list(staging.iterdir())


# -- configs that are not what the spec says ---------------------------------------------------

def _config(**over) -> dict:
    cfg = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
           "rootfs": {"type": "layers", "diff_ids": []}}
    for k, v in over.items():
        if k == "diff_ids":
            cfg["rootfs"]["diff_ids"] = v
        else:
            cfg["config"][k] = v
    return cfg


BAD_CONFIGS = {
    "entrypoint-int": ({"Entrypoint": 5}, "config.Entrypoint is 5, not a list of strings"),
    "cmd-string": ({"Cmd": "echo hi"}, "config.Cmd is the string 'echo hi'"),
    "ports-list": ({"ExposedPorts": ["80/tcp"]}, "config.ExposedPorts"),
    "labels-string": ({"Labels": "x"}, "config.Labels"),
    "env-ints": ({"Env": [1, 2]}, "config.Env"),
    "diff-ids-int": ({"diff_ids": [5]}, "rootfs.diff_ids holds 5"),
    "stop-signal": ({"StopSignal": "SIGBOGUS"}, "config.StopSignal 'SIGBOGUS'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_malformed_config_is_refused_at_fetch(rkt, tmp_path, base_layer, case):
    over, words = BAD_CONFIGS[case]
    rkt("fetch", write_image(tmp_path / "ok", [base_layer]))
    cfg = _config(**over)
    if "diff_ids" not in over:
        cfg["rootfs"]["diff_ids"] = [base_layer.diff_id]
    ref = write_image(tmp_path / case, [base_layer], raw_config=cfg)
    before = store_snapshot(rkt.paths.store)
    res = rkt.fails("fetch", ref)
    assert words in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert store_snapshot(rkt.paths.store) == before


def test_relative_working_dir_names_the_image_config(rkt, tmp_path, base_layer):
    ref = hostile(rkt, tmp_path, base_layer, [dir_("work")], config={"WorkingDir": "work"})
    res = rkt.fails("run", ref, "--exec", "/bin/true")
    assert "its config's WorkingDir 'work' is not an absolute path" in res.stderr
    assert "--working-dir" not in res.stderr.split("(")[0]
    assert "ran-in=/work" in rkt("run", ref, "--working-dir=/work", "--exec", "/bin/sh", "--",
                                 "-c", "echo ran-in=$(pwd)", "---").stdout


# -- a start that hangs: stop --force always works ---------------------------------------------

HANG_PLUGIN = """#!/bin/sh
case "$CNI_COMMAND" in
  ADD) echo $$ > "$0.pid"; touch "$0.started"; exec sleep 600 ;;
  VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}' ;;
  *) cat >/dev/null ;;
esac
"""


@pytest.mark.parametrize("how", ["stop-force", "stop-grace", "sigint-twice-foreground"])
def test_a_hung_start_never_blocks_stop(rkt, tmp_path, base_layer, how):
    """A pod whose start hangs (its network's plugin never answers ADD) is stopped by
    `rkt stop --force` at once, by `rkt stop` after its grace period, by ^C ^C in the
    foreground; the hung plugin goes too and nothing is left."""
    plugdir = tmp_path / "plugins"
    plugdir.mkdir()
    (plugdir / "hang").write_text(HANG_PLUGIN)
    (plugdir / "hang").chmod(0o755)
    netd = rkt.config / "net.d"
    netd.mkdir()
    (netd / "hung.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "hung", "plugins": [{"type": "hang"}]}))
    rkt("fetch", "builtin:busybox")
    env = {**os.environ, "RKTNETES_CNI_PATH": str(plugdir)}
    uuid_file = tmp_path / "uuid"
    detach = how != "sigint-twice-foreground"
    argv = rkt.argv("run", *(["--detach"] if detach else []), "--net=hung",
                    f"--uuid-file-save={uuid_file}", "builtin:busybox", "--exec", "/bin/sleep",
                    "--", "600", "---")
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         text=True)
    wait_for(lambda: (plugdir / "hang.started").exists(), 60, "the plugin's ADD")
    uuid = uuid_file.read_text().strip()
    if how == "stop-force":
        rkt("stop", "--force", uuid, timeout=60)
    elif how == "stop-grace":
        rkt("stop", "--timeout=1s", uuid, timeout=60)
    else:
        p.send_signal(2)
        time.sleep(0.3)
        p.send_signal(2)
    out, err = p.communicate(timeout=60)
    assert p.returncode != 0 and "Traceback" not in err
    assert "abandoned" in err and "abandoned" in json.dumps(status(rkt, uuid)), err
    plugin = int((plugdir / "hang.pid").read_text())

    def plugin_gone() -> bool:
        try:
            return b"600" not in Path(f"/proc/{plugin}/cmdline").read_bytes()
        except OSError:
            return True

    wait_for(plugin_gone, 10, "the hung plugin to be gone")
    rkt("gc", "--grace-period=0")
    assert_nothing_left(rkt, [uuid])
