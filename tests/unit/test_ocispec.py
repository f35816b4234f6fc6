"""The OCI spec builder and its helpers are pure: checked here without runc."""

from __future__ import annotations

import pytest

from rktnetes.errors import Stage1Error
from rktnetes.image.manifest import ImageConfig
from rktnetes.pod.manifest import App
from rktnetes.stage1 import ocispec, seccomp, users
from rktnetes.stage1.ocispec import BindMount, SpecInputs, build_spec

IMAGE = ImageConfig(os="linux", architecture="amd64", diff_ids=[], entrypoint=["/bin/ep"],
                    cmd=["arg"], env=["PATH=/img/bin", "A=1"], working_dir="/srv", user="",
                    exposed_ports=[], labels={}, stop_signal="", raw={})
NS = {"network": "/proc/9/ns/net", "ipc": "/proc/9/ns/ipc", "uts": "/proc/9/ns/uts"}


def spec(app: App, **kw) -> dict:
    inp = SpecInputs(rootfs="/r", identity=users.Identity(1000, 100, [5], "/home/u"),
                     hostname="h", namespace_paths=kw.pop("ns", NS),
                     binds=kw.pop("binds", []), cgroups_path="/rktnetes/u/a")
    return build_spec(app, IMAGE, inp)


def test_defaults_are_containerds():
    s = spec(App("a", "sha256:x", "img", exec=[], working_dir=""))  # "": the image's
    p = s["process"]
    assert p["args"] == ["/bin/ep", "arg"]
    assert p["cwd"] == "/srv"
    assert p["user"] == {"uid": 1000, "gid": 100, "additionalGids": [5]}
    assert p["noNewPrivileges"] is True and p["terminal"] is False
    assert p["capabilities"]["bounding"] == ocispec.DEFAULT_CAPS
    assert "CAP_SYS_ADMIN" not in p["capabilities"]["effective"]
    assert "PATH=/img/bin" in p["env"] and "A=1" in p["env"] and "HOSTNAME=h" in p["env"]
    assert "HOME=/home/u" in p["env"]
    lx = s["linux"]
    assert "/proc/kcore" in lx["maskedPaths"] and "/sys/firmware" in lx["maskedPaths"]
    assert "/proc/sys" in lx["readonlyPaths"] and "/proc/sysrq-trigger" in lx["readonlyPaths"]
    assert lx["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert lx["cgroupsPath"] == "/rktnetes/u/a"
    kinds = {n["type"]: n.get("path") for n in lx["namespaces"]}
    assert kinds == {"pid": None, "mount": None, "network": NS["network"], "ipc": NS["ipc"],
                     "uts": NS["uts"]}
    assert "hostname" not in s  # joined UTS namespace: the infra named it
    dests = [m["destination"] for m in s["mounts"]]
    assert dests[:2] == ["/proc", "/dev"] and "/dev/shm" in dests and "/dev/pts" in dests
    assert s["root"] == {"path": "/r", "readonly": False}
    assert "oomScoreAdj" not in p and "rlimits" not in p  # this VM cannot raise or lower them


def test_limits_caps_binds_and_privileged():
    a = App("a", "sha256:x", "img", exec=["x"], memory_limit=32 << 20, cpu_millis=500,
            caps_retain=["net_admin", "CAP_CHOWN"], caps_remove=["chown"], readonly_rootfs=True,
            env={"A": "2", "PATH": "/p"}, working_dir="/w")
    s = spec(a, binds=[BindMount("/v", "/host/v", True)], ns={})
    assert s["linux"]["resources"]["memory"] == {"limit": 32 << 20}
    assert s["linux"]["resources"]["cpu"] == {"quota": 50000, "period": 100000, "shares": 512}
    assert s["process"]["capabilities"]["bounding"] == ["CAP_NET_ADMIN"]
    assert "A=2" in s["process"]["env"] and "PATH=/p" in s["process"]["env"]
    assert s["process"]["cwd"] == "/w" and s["root"]["readonly"] is True
    bind = next(m for m in s["mounts"] if m["destination"] == "/v")
    assert bind["source"] == "/host/v" and "ro" in bind["options"] and "rbind" in bind["options"]
    assert s["hostname"] == "h"
    priv = spec(App("p", "sha256:x", "img", exec=["x"], privileged=True))
    assert "seccomp" not in priv["linux"] and "maskedPaths" not in priv["linux"]
    assert "CAP_SYS_ADMIN" in priv["process"]["capabilities"]["bounding"]
    with pytest.raises(Stage1Error):
        spec(App("a", "sha256:x", "img", exec=["x"], caps_retain=["bogus"]))


def test_no_command_is_an_error():
    empty = ImageConfig("linux", "amd64", [], [], [], [], "", "", [], {}, "", {})
    inp = SpecInputs("/r", users.Identity(0, 0), "h")
    with pytest.raises(Stage1Error, match="no command"):
        build_spec(App("a", "sha256:x", "img", exec=[]), empty, inp)


def test_seccomp_profile_shape():
    prof = seccomp.default_profile(ocispec.DEFAULT_CAPS)
    allowed = prof["syscalls"][0]["names"]
    assert {"read", "execve", "clone", "wait4"} - {"clone"} <= set(allowed)
    assert "mount" not in allowed and "chroot" in allowed   # CAP_SYS_CHROOT is default
    clone = next(r for r in prof["syscalls"] if r["names"] == ["clone"])
    assert clone["args"][0]["value"] == seccomp.CLONE_NS_MASK
    assert "mount" in seccomp.default_profile(["CAP_SYS_ADMIN"])["syscalls"][0]["names"]


def test_users_resolve():
    passwd = "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"
    group = "root:x:0:\nusers:x:100:user\nwheel:x:10:user,other\nuser:x:1000:\n"
    assert users.resolve("user", "", passwd, group) == users.Identity(1000, 1000, [10, 100],
                                                                       "/home/user")
    assert users.resolve("4242", "", passwd, group) == users.Identity(4242, 0, [], "/")
    assert users.resolve("0", "users", passwd, group).gid == 100
    assert users.resolve("0", "77", passwd, group, [3]).additional_gids == [3]
    with pytest.raises(Stage1Error):
        users.resolve("nobody-here", "", passwd, group)
    with pytest.raises(Stage1Error):
        users.resolve("0", "nogroup", passwd, group)


# -- what the CRI sets beyond the CLI's flags ------------------------------------------------

def _app(**kw) -> App:
    return App("a", "sha256:x", "img", exec=["/bin/a"], **kw)


def test_explicit_cfs_settings_win_over_millicores():
    lim = ocispec.limits(_app(cpu_millis=500, cpu_shares=100, cpu_quota=20_000,
                              cpu_period=50_000, cpuset_cpus="0-1", memory_limit=1 << 20))
    assert lim == {"memory": {"limit": 1 << 20},
                   "cpu": {"quota": 20_000, "period": 50_000, "shares": 100, "cpus": "0-1"}}
    assert ocispec.limits(_app(cpu_millis=500))["cpu"] == {"quota": 50_000, "period": 100_000,
                                                           "shares": 512}
    assert ocispec.limits(_app()) == {}


def test_pid_namespace_modes():
    def pid_entry(app, ns=NS):
        return [n for n in spec(app, ns=ns)["linux"]["namespaces"] if n["type"] == "pid"]

    assert pid_entry(_app()) == [{"type": "pid"}]                       # its own
    assert pid_entry(_app(pid_namespace="host")) == []                  # the host's
    with_pid = {**NS, "pid": "/proc/9/ns/pid"}
    assert pid_entry(_app(pid_namespace="pod"), with_pid) == [{"type": "pid",
                                                              "path": "/proc/9/ns/pid"}]
    assert pid_entry(_app(), with_pid) == [{"type": "pid"}]             # not shared unless asked
    with pytest.raises(Stage1Error, match="no PID namespace"):
        spec(_app(pid_namespace="pod"))


def test_seccomp_masked_paths_and_a_read_only_sys():
    lx = spec(_app(seccomp="unconfined", masked_paths=[], readonly_paths=["/proc/x"]))["linux"]
    assert "seccomp" not in lx and lx["maskedPaths"] == []
    assert lx["readonlyPaths"] == ["/sys", "/proc/x"]      # /sys read-only whatever is given
    sysfs = next(m for m in spec(_app())["mounts"] if m["destination"] == "/sys")
    assert "ro" not in sysfs["options"]    # a read-only bind, not a read-only superblock
    priv = spec(_app(privileged=True))["linux"]
    assert "readonlyPaths" not in priv and "seccomp" not in priv
    with pytest.raises(Stage1Error, match="not loaded"):
        spec(_app(seccomp="localhost//p.json"))


def test_mount_propagation_and_sysctls():
    s = build_spec(_app(), IMAGE, SpecInputs(
        rootfs="/r", identity=users.Identity(0, 0, [], "/"), hostname="h", namespace_paths=NS,
        binds=[BindMount("/d", "/host/d", False, "rslave")], sysctls={"net.core.somaxconn": "9"}))
    bind = next(m for m in s["mounts"] if m["destination"] == "/d")
    assert bind["options"][:2] == ["rbind", "rslave"]
    assert s["linux"]["sysctl"] == {"net.core.somaxconn": "9"}
