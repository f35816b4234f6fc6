"""Pure parts of stage0: app building, volume/mount parsing, rkt's run grammar, durations."""

from __future__ import annotations

import os
import stat

import pytest

from rktnetes.cli.pod_args import parse_duration, parse_since
from rktnetes.cli.run_grammar import parse_apps
from rktnetes.errors import UsageError
from rktnetes.image.manifest import ImageConfig
from rktnetes.pod.manifest import Mount, Volume
from rktnetes.stage0 import appspec as a
from rktnetes.stage0.imagefs import LayeredFS
from rktnetes.stage0.options import parse_insecure_options
from rktnetes.cli import app_flags as af
from rktnetes.cli.app_flags import parse_kv_list
from rktnetes.cli.pod_flags import network_fields
from rktnetes.cli.volume_flags import parse_mount, parse_volume


def build(name, image_id, image_name, c, f, files):
    """An App from the CLI's flags, as `rkt run` makes it: flags -> AppSpec -> App."""
    spec, _ = af.to_spec(f, files)
    return a.build_app(name, image_id, image_name, c, spec)


def cfg(**kw) -> ImageConfig:
    base = dict(os="linux", architecture="amd64", diff_ids=[], entrypoint=[], cmd=["/bin/sh"],
                env=["PATH=/bin", "A=1"], working_dir="", user="", exposed_ports=[], labels={},
                stop_signal="", raw={})
    base.update(kw)
    return ImageConfig(**base)


# -- quantities -----------------------------------------------------------------------------

@pytest.mark.parametrize("s,n", [("32M", 32_000_000), ("32Mi", 32 << 20), ("1G", 10**9),
                                 ("1.5Gi", 3 << 29), ("65536", 65536), ("64k", 64000)])
def test_memory(s, n):
    assert af.parse_memory(s) == n


@pytest.mark.parametrize("s", ["", "lots", "32MB", "-1M", "1", "32m"])
def test_memory_bad(s):
    with pytest.raises(UsageError):
        af.parse_memory(s)


@pytest.mark.parametrize("s,n", [("500m", 500), ("1", 1000), ("1.5", 1500), ("0.25", 250)])
def test_cpu(s, n):
    assert af.parse_cpu(s) == n


@pytest.mark.parametrize("s", ["", "x", "0", "-1", "0.0001", "1.5m"])
def test_cpu_bad(s):
    with pytest.raises(UsageError):
        af.parse_cpu(s)


# -- names ----------------------------------------------------------------------------------

@pytest.mark.parametrize("image,name", [
    ("busybox", "busybox"), ("docker.io/library/nginx:1.25", "nginx"),
    ("127.0.0.1:5000/team/my_app@sha256:" + "a" * 64, "my-app"),
    ("docker://quay.io/x/Redis:7", "redis"), ("oci:/tmp/layout:latest", "layout"),
    ("oci-archive:/tmp/img.tar:v1", "img"), ("builtin:busybox", "busybox"),
    ("sha256:" + "b" * 64, "app")])
def test_default_app_name(image, name):
    assert a.default_app_name(image) == name


def test_assign_names_dedup_and_explicit():
    flags = [af.AppFlags("busybox"), af.AppFlags("busybox"), af.AppFlags("x", name="busybox-2"),
             af.AppFlags("busybox")]
    assert a.assign_names(flags) == ["busybox", "busybox-3", "busybox-2", "busybox-4"]
    with pytest.raises(UsageError):
        a.assign_names([af.AppFlags("x", name="a"), af.AppFlags("y", name="a")])
    with pytest.raises(UsageError):
        a.assign_names([af.AppFlags("x", name="Bad_Name")])


# -- exec, env, user ------------------------------------------------------------------------

def test_exec_semantics():
    c = cfg(entrypoint=["/ep"], cmd=["a", "b"])
    assert a.resolve_exec(c, None, None) == ["/ep", "a", "b"]
    assert a.resolve_exec(c, None, ["x"]) == ["/ep", "x"]
    assert a.resolve_exec(c, None, []) == ["/ep"]
    assert a.resolve_exec(c, ["/bin/echo"], None) == ["/bin/echo"]
    assert a.resolve_exec(c, ["/bin/echo"], ["hi"]) == ["/bin/echo", "hi"]
    with pytest.raises(UsageError):
        a.resolve_exec(cfg(cmd=[]), None, None)


def test_build_app_env_user_workdir():
    c = cfg(user="1000:100", working_dir="/srv", stop_signal="SIGQUIT")
    f = af.AppFlags("img", env=["A=2", "B=x=y"], memory="32M", cpu="500m",
                   caps_remove=["net_raw,CAP_CHOWN"], mounts=["volume=data,target=/d/"])
    app = build("n", "sha256:x", "img", c, f, [("f", [("A", "0"), ("C", "3")])])
    assert app.env == {"PATH": "/bin", "A": "2", "B": "x=y", "C": "3"}
    assert (app.user, app.group, app.working_dir) == ("1000", "100", "/srv")
    assert (app.memory_limit, app.cpu_millis) == (32_000_000, 500)
    assert app.caps_remove == ["CAP_NET_RAW", "CAP_CHOWN"]
    assert app.mounts == [Mount("data", "/d")]
    assert app.stop_signal == "SIGQUIT"
    # --user alone drops the image's group (it belonged to the image's user)
    app2 = build("n", "i", "img", c, af.AppFlags("img", user="0", working_dir="/tmp"), [])
    assert (app2.user, app2.group, app2.working_dir) == ("0", "", "/tmp")
    assert "PATH" in build("n", "i", "img", cfg(env=[]), af.AppFlags("img"), []).env


@pytest.mark.parametrize("f", [af.AppFlags("i", env=["NOEQ"]), af.AppFlags("i", working_dir="rel"),
                               af.AppFlags("i", caps_retain=["CAP_BOGUS"]),
                               af.AppFlags("i", mounts=["volume=x"]),
                               af.AppFlags("i", mounts=["volume=x,target=/a", "volume=y,target=/a"]),
                               af.AppFlags("i", user="a b")])
def test_build_app_bad(f):
    with pytest.raises(UsageError):
        build("n", "i", "img", cfg(), f, [])


def test_env_file():
    assert af.parse_env_file("# c\n\nA=1\nB=\n", "f") == [("A", "1"), ("B", "")]
    with pytest.raises(UsageError):
        af.parse_env_file("oops\n", "f")


# -- volumes --------------------------------------------------------------------------------

def test_volumes():
    assert parse_volume("data,kind=host,source=/srv/x/,readOnly=true") == \
        Volume("data", "host", "/srv/x", True)
    assert parse_volume("tmp,kind=empty,mode=700,uid=5") == Volume("tmp", "empty", mode="0700", uid=5)
    assert parse_volume("name=v,kind=host,source=/x").kind == "host"
    assert parse_mount("volume=data,target=/mnt,readOnly=false") == Mount("data", "/mnt", False)


@pytest.mark.parametrize("v", ["", "Data,kind=empty", "d,kind=nfs", "d,kind=host",
                               "d,kind=host,source=rel", "d,kind=empty,source=/x",
                               "d,kind=host,source=/x,readOnly=maybe", "d,kind=empty,mode=999",
                               "d,kind=empty,bogus=1", "d,kind=empty,kind=host", "d,junk",
                               "bad", "name=v,source=/x", "d,kind=host,source=/x,mode=0755",
                               "d,kind=empty,uid=4294967295"])
def test_volumes_bad(v):
    with pytest.raises(UsageError):
        parse_volume(v)


@pytest.mark.parametrize("v", ["target=/x", "volume=x", "volume=x,target=rel", "volume=x,target=/a,z=1"])
def test_mount_bad(v):
    with pytest.raises(UsageError):
        parse_mount(v)


# -- pod options ----------------------------------------------------------------------------

def test_pod_options():
    assert parse_kv_list(["a=b", "c=d=e"], "--annotation") == {"a": "b", "c": "d=e"}
    with pytest.raises(UsageError):
        parse_kv_list(["nokey"], "--label")
    assert [n.name for n in network_fields([], [])["networks"]] == ["default"]
    assert [n.name for n in network_fields(["host"], [])["networks"]] == ["host"]
    assert [n.name for n in network_fields(["a,b:K=V"], [])["networks"]] == ["a", "b"]
    assert [n.name for n in network_fields([], [], stage1="fly")["networks"]] == ["host"]
    with pytest.raises(UsageError):
        network_fields(["host,none"], [])
    with pytest.raises(UsageError):
        network_fields(["default"], [], stage1="fly")
    with pytest.raises(UsageError):
        network_fields(["none"], ["80/tcp:8080"])
    assert parse_insecure_options(["http,tls"]) == {"http", "tls"}
    assert parse_insecure_options(["ondisk", "all"]) >= {"ondisk", "http", "tls"}
    assert parse_insecure_options(["none"]) == {"none"}
    with pytest.raises(UsageError):
        parse_insecure_options(["everything"])


# -- grammar --------------------------------------------------------------------------------

def test_grammar_multi_app():
    p = parse_apps(["img1", "--name=a", "--exec", "/bin/sh", "--", "-c", "echo --x", "---",
                    "img2", "--set-env", "A=1", "--set-env=B=2", "--readonly-rootfs",
                    "--mount", "volume=v,target=/v", "img3", "--", "x"])
    a1, a2, a3 = p.apps
    assert (a1.image, a1.name, a1.exec, a1.args) == ("img1", "a", "/bin/sh", ["-c", "echo --x"])
    assert (a2.image, a2.env, a2.readonly_rootfs, a2.mounts, a2.args) == \
        ("img2", ["A=1", "B=2"], True, ["volume=v,target=/v"], None)
    assert (a3.image, a3.args) == ("img3", ["x"])


def test_grammar_globals_and_errors():
    p = parse_apps(["--", "img", "--dir", "/d", "--debug", "--readonly-rootfs=false"])
    assert p.globals == {"dir": "/d", "debug": True} and not p.apps[0].readonly_rootfs
    for bad in ([], ["--name", "x"], ["img", "--bogus"], ["img", "--name"], ["img", "---"],
                ["img", "--name", "a", "--name", "b"], ["img", "--", "a", "---", "--", "b"]):
        with pytest.raises(UsageError):
            parse_apps(bad)
    with pytest.raises(UsageError, match="pod flag"):
        parse_apps(["img", "--detach"], {"--detach"})


# -- durations ------------------------------------------------------------------------------

@pytest.mark.parametrize("s,n", [("30m", 1800), ("1h30m", 5400), ("500ms", 0.5), ("0", 0),
                                 ("10", 10), ("24h", 86400), ("1.5s", 1.5)])
def test_durations(s, n):
    assert parse_duration(s) == pytest.approx(n)


@pytest.mark.parametrize("s", ["", "abc", "10x", "m10", "-5s"])
def test_durations_bad(s):
    with pytest.raises(UsageError):
        parse_duration(s)


def test_since():
    assert parse_since("2024-01-02T03:04:05.123456789Z") == pytest.approx(1704164645.123456)
    with pytest.raises(UsageError):
        parse_since("yesterday")


# -- image filesystem lookup ----------------------------------------------------------------

def test_layered_fs(tmp_path):
    low, mid, top = (tmp_path / n for n in ("low", "mid", "top"))
    for d in (low / "bin", low / "usr/bin", low / "opt/x", mid / "bin", mid / "opt", top / "usr/bin"):
        d.mkdir(parents=True)
    for p in (low / "bin/busybox", low / "bin/gone", low / "opt/x/tool", low / "bin/noexec"):
        p.write_text("#!")
        os.chmod(p, 0o755)
    os.chmod(low / "bin/noexec", 0o644)
    os.symlink("/bin/busybox", low / "bin/sh")
    os.symlink("../../bin/busybox", low / "usr/bin/env")
    os.symlink("/loop", low / "loop")
    os.mknod(mid / "bin/gone", stat.S_IFCHR | 0o000, 0)   # overlay whiteout
    (mid / "opt/.wh..wh..opq").write_text("")             # opaque: hides low's /opt/x
    (top / "usr/bin/.wh.env").write_text("")              # OCI-style whiteout
    fs = LayeredFS([low, mid, top])
    assert fs.is_executable("/bin/busybox")
    assert fs.is_executable("/bin/sh")
    assert fs.which("sh", "/usr/bin:/bin") == "/bin/sh"
    assert not fs.is_executable("/bin/gone")
    assert not fs.is_executable("/opt/x/tool")
    assert not fs.is_executable("/usr/bin/env")
    assert not fs.is_executable("/bin/noexec")
    assert not fs.is_executable("/loop")
    assert not fs.is_executable("/bin/busybox/x")
    assert fs.is_dir("/usr/bin") and fs.is_dir("/")
    assert fs.which("nope", "/bin") is None


def test_network_fields_dns_ports_hosts():
    f = network_fields(["n1"], ["http:127.0.0.1:8080", "53/udp:5353"],
                       exposed_ports={"http": "80/tcp"}, dns=["1.1.1.1,8.8.8.8"],
                       dns_search=["a.example"], dns_opt=["ndots:2"],
                       hosts_entries=["10.0.0.1=db", "10.0.0.1=db2"], hostname="web")
    assert [(p.container_port, p.protocol, p.host_ip, p.host_port) for p in f["ports"]] == \
        [(80, "tcp", "127.0.0.1", 8080), (53, "udp", "", 5353)]
    assert f["dns"] == ["1.1.1.1", "8.8.8.8"] and f["dns_search"] == ["a.example"]
    assert f["dns_options"] == ["ndots:2"] and f["hosts_entries"] == {"10.0.0.1": ["db", "db2"]}
    assert f["hostname"] == "web"
    assert network_fields([], [], dns=["none"])["dns"] == ["none"]
    for bad in ({"dns": ["nope"]}, {"dns": ["host,1.1.1.1"]}, {"hosts_entries": ["x=y"]},
                {"hosts_entries": ["10.0.0.1"]}, {"hostname": "-bad"}):
        with pytest.raises(UsageError):
            network_fields([], [], **bad)
    with pytest.raises(UsageError):
        network_fields([], ["80/tcp:8080", "81/tcp:8080"])


def test_volume_kind_is_required():
    with pytest.raises(UsageError, match="kind= is required"):
        parse_volume("bad")


# -- users, groups, signals -------------------------------------------------------------------

@pytest.mark.parametrize("field", ["user", "group"])
@pytest.mark.parametrize("value", ["99999999999", "4294967295"])
def test_ids_out_of_range(field, value):
    f = af.AppFlags(image="img", **{field: value})
    with pytest.raises(UsageError, match="out of range"):
        build("x", "id", "img", cfg(), f, [])


def test_ids_in_range_and_names():
    f = af.AppFlags(image="img", user="4294967294", group="0")
    app = build("x", "id", "img", cfg(), f, [])
    assert (app.user, app.group) == ("4294967294", "0")
    assert build("x", "id", "img", cfg(), af.AppFlags(image="img", user="nobody"), []).user \
        == "nobody"
    with pytest.raises(UsageError):  # the image's own user is checked too
        build("x", "id", "img", cfg(user="99999999999"), af.AppFlags(image="img"), [])


@pytest.mark.parametrize("v,want", [("SIGTERM", "SIGTERM"), ("TERM", "SIGTERM"),
                                    ("term", "SIGTERM"), ("15", "SIGTERM"), ("9", "SIGKILL"),
                                    ("SIGQUIT", "SIGQUIT"), ("sighup", "SIGHUP"), ("1", "SIGHUP"),
                                    ("64", "SIGRTMAX")])
def test_parse_signal(v, want):
    assert af.parse_signal(v) == want


@pytest.mark.parametrize("v", ["SIGBOGUS", "BOGUS", "99", "0", "65", "-1", "", "SIG_DFL",
                               "SIGRTMAX+1", "15x"])
def test_parse_signal_bad(v):
    with pytest.raises(UsageError, match="--stop-signal"):
        af.parse_signal(v)


def test_short():
    assert a.short("abc") == "abc"
    assert a.short("x" * 5000) == "x" * 80 + "\u2026"


# -- reading files through the layers -----------------------------------------------------------

def test_layered_read_file(tmp_path):
    low, up = tmp_path / "low", tmp_path / "up"
    (low / "etc").mkdir(parents=True)
    (low / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (low / "etc/group").write_text("root:x:0:\n")
    (low / "etc/hosts").write_text("old\n")
    (up / "etc").mkdir(parents=True)
    (up / "etc/passwd").write_text("web:x:33:33::/:/bin/sh\n")
    (up / "etc/.wh.group").write_text("")
    (up / "etc/hosts").symlink_to("/etc/passwd")       # followed, inside the image
    (up / "cfg").symlink_to("etc")                      # a directory symlink too
    fs = LayeredFS([low, up])
    assert fs.read_file("/etc/passwd", 1 << 20).startswith(b"web:")
    assert fs.read_file("/cfg/passwd", 1 << 20).startswith(b"web:")
    assert fs.read_file("/etc/hosts", 1 << 20).startswith(b"web:")
    assert fs.read_file("/etc/group", 1 << 20) is None
    assert fs.read_file("/etc/nope", 99) is None and fs.read_file("/nope/passwd", 99) is None
    with pytest.raises(OSError, match="not a regular file"):
        fs.read_file("/etc", 99)
    with pytest.raises(OSError, match="larger than 3 bytes"):
        fs.read_file("/etc/passwd", 3)


def test_layered_fs_hidden_below_a_lower_non_directory(tmp_path):
    """overlayfs semantics: a layer whose /etc is a symlink (or a whiteout) ends the stack of
    /etc there: what the layers below hold in /etc is not in the merged view."""
    bottom, mid, top = (tmp_path / n for n in ("bottom", "mid", "top"))
    (bottom / "etc").mkdir(parents=True)
    (bottom / "etc/group").write_text("hidden:x:1:\n")
    mid.mkdir()
    (mid / "etc").symlink_to("/elsewhere")
    (top / "etc").mkdir(parents=True)
    (top / "etc/passwd").write_text("root:x:0:0::/:/bin/sh\n")
    fs = LayeredFS([bottom, mid, top])
    assert fs.read_file("/etc/passwd", 99).startswith(b"root:")
    assert fs.read_file("/etc/group", 99) is None


def test_layered_fs_never_follows_host_symlinks(tmp_path):
    """A symlink in a layer names a path in the image; the host's file of that name is never
    read (the image's /etc here points at a host directory with its own passwd)."""
    host = tmp_path / "host-etc"
    host.mkdir()
    (host / "passwd").write_text("alice:x:4321:4321::/:/bin/sh\n")
    layer = tmp_path / "layer"
    (layer / str(host).lstrip("/")).mkdir(parents=True)
    (layer / str(host).lstrip("/") / "passwd").write_text("alice:x:1234:1234::/:/bin/sh\n")
    (layer / "etc").symlink_to(str(host))
    (layer / "up").symlink_to("../../../../../../..")
    fs = LayeredFS([layer])
    assert fs.read_file("/etc/passwd", 99).startswith(b"alice:x:1234")
    assert fs.read_file(f"/up{host}/passwd", 99).startswith(b"alice:x:1234")


def test_check_identity(tmp_path):
    from rktnetes.errors import PodError
    from rktnetes.stage0.prepare import check_identity

    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nweb:x:33:33::/:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\nwww:x:33:web\n")
    fs = LayeredFS([tmp_path])

    def app(user="", group=""):
        return build("x", "id", "img", cfg(), af.AppFlags(image="img", user=user,
                                                               group=group), [])

    for ok in (app(), app("web"), app("web", "www"), app("1234"), app("1234", "5678"),
               app("0", "www")):
        check_identity(ok, fs)
    with pytest.raises(PodError, match="user 'nosuchuser' not found"):
        check_identity(app("nosuchuser"), fs)
    with pytest.raises(PodError, match="group 'nosuchgroup' not found"):
        check_identity(app("web", "nosuchgroup"), fs)
    with pytest.raises(PodError, match="user 'web' not found"):
        check_identity(app("web"), LayeredFS([tmp_path / "etc"]))  # no /etc/passwd at all


def test_check_uuid_file(tmp_path):
    from rktnetes.stage0.prepare import check_uuid_file

    check_uuid_file("")
    check_uuid_file(str(tmp_path / "u"))
    (tmp_path / "u").write_text("old")
    check_uuid_file(str(tmp_path / "u"))
    for bad, why in ((tmp_path / "nonexistent/dir/u", "does not exist"),
                     (tmp_path, "is a directory"), (tmp_path / "u" / "x", "not a directory")):
        with pytest.raises(UsageError, match=why):
            check_uuid_file(str(bad))


def test_fly_rejects_resource_limits(tmp_path):
    from rktnetes.config import Paths
    from rktnetes.stage0.prepare import build_manifest
    from rktnetes.stage0.spec import AppSpec, PodSpec, Resources

    paths = Paths.resolve(str(tmp_path / "data"), str(tmp_path / "config"))
    for res in (Resources(memory_limit=1 << 20), Resources(cpu_millis=1000)):
        app = AppSpec(image="builtin:busybox", command=["/bin/true"], resources=res)
        with pytest.raises(UsageError, match="fly applies no resource limits"):
            build_manifest(paths, PodSpec([app], stage1="fly"))
    assert not (tmp_path / "data").exists()  # rejected before any fetch


def test_app_names_are_short_and_never_empty():
    assert parse_apps(["img", "--name", "x"]).apps[0].name == "x"
    with pytest.raises(UsageError, match="--name needs a value"):
        parse_apps(["img", "--name="])
    with pytest.raises(UsageError, match="at most 63"):
        a.assign_names([af.AppFlags(image="img", name="a" * 64)])
    assert a.assign_names([af.AppFlags(image="img", name="a" * 63)]) == ["a" * 63]
    long = "oci:/x/" + "b" * 100 + ":v1"
    names = a.assign_names([af.AppFlags(image=long), af.AppFlags(image=long)])
    assert names == ["b" * 56, "b" * 56 + "-2"]
