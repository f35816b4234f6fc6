"""The CRI v1 server as kubelet and crictl use it: a real `rkt cri` process on a unix socket,
real sandbox pods (runc, the CNI bridge), a real registry to pull from. One server for the
module (its restart is a test of its own); each test makes and removes its own pods, and the
last one checks that nothing is left on the host."""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from rktnetes.proto.runtime.v1 import api_pb2 as pb
from tests.conftest import Rkt
from tests.integration.cri_client import (Client, CriEnv, bridge_ports, code_of,
                                          cri_environment)
from tests.integration.pod_helpers import (cgroups_mentioning, mounts_mentioning,
                                           processes_mentioning, wait_for)

BUSYBOX_SH = ["sh", "-c"]


@pytest.fixture(scope="module")
def cri(tmp_path_factory):
    with cri_environment(tmp_path_factory.mktemp("cri")) as env:
        yield env


@pytest.fixture(autouse=True)
def _remove_what_a_failed_test_left(request):
    """A test removes its own pods; one that failed midway leaves them to this, so that the
    next tests (and the final check of the host) start clean."""
    yield
    if "cri" not in request.fixturenames:
        return
    cri = request.getfixturevalue("cri")
    for s in cri.client.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items:
        cri.client.teardown(s.id)


def sandbox(cri: CriEnv, name: str, **kw) -> tuple[str, pb.PodSandboxConfig]:
    cfg = cri.client.sandbox_config(name, cri.logs / name, **kw)
    sid = cri.client.run_sandbox(cfg)
    cri.made.append(sid)
    return sid, cfg


def shell(cri: CriEnv, name: str, script: str, **kw) -> pb.ContainerConfig:
    return cri.client.container_config(name, cri.image_id, BUSYBOX_SH + [script], **kw)


def sleeper(cri: CriEnv, name: str = "sleeper", **kw) -> pb.ContainerConfig:
    return cri.client.container_config(name, cri.image_id, ["sleep", "3600"], **kw)


def out(cri: CriEnv, cid: str, script: str) -> str:
    r = cri.client.exec_sync(cid, BUSYBOX_SH + [script])
    assert r.exit_code == 0, (r.exit_code, r.stderr)
    return r.stdout.decode()


# -- the server -----------------------------------------------------------------------------

def test_version_status_config_and_reflection(cri):
    c = cri.client
    v = c.runtime.Version(pb.VersionRequest())
    assert (v.runtime_name, v.runtime_api_version) == ("rktnetes", "v1") and v.runtime_version
    st = c.runtime.Status(pb.StatusRequest(verbose=True))
    conds = {x.type: x.status for x in st.status.conditions}
    assert conds == {"RuntimeReady": True, "NetworkReady": True}
    assert {h.name for h in st.runtime_handlers} >= {"default", "fly"}
    assert json.loads(st.info["config"])["network"] == "default"
    assert c.runtime.RuntimeConfig(pb.RuntimeConfigRequest()).linux.cgroup_driver == pb.CGROUPFS
    from grpc_reflection.v1alpha import reflection_pb2 as rpb
    from grpc_reflection.v1alpha import reflection_pb2_grpc as rgrpc

    stub = rgrpc.ServerReflectionStub(c.channel)
    answer = next(stub.ServerReflectionInfo(iter([rpb.ServerReflectionRequest(
        list_services="")])))
    names = {s.name for s in answer.list_services_response.service}
    assert {"runtime.v1.RuntimeService", "runtime.v1.ImageService"} <= names
    assert oct(os.stat(cri.server.sock).st_mode & 0o777) == "0o660"


# -- images ---------------------------------------------------------------------------------

def test_image_status_list_and_fs_info(cri):
    im = cri.client.images
    assert cri.image_id.startswith("sha256:")
    for name in (cri.image, cri.image_id, cri.image_id[7:19]):
        img = im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=name))).image
        assert img.id == cri.image_id, name
    assert cri.image in img.repo_tags
    assert img.repo_digests and all(d.startswith(cri.image.rsplit(":", 1)[0] + "@sha256:")
                                    for d in img.repo_digests)
    assert img.size > 100_000 and img.HasField("uid") and img.uid.value == 0
    verbose = im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=cri.image),
                                                   verbose=True))
    assert json.loads(verbose.info["info"])["config"]["config"]["Cmd"] == ["/bin/sh"]
    # absent: no image and no error, as the CRI says
    none = im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image="nothere:1")))
    assert not none.HasField("image")
    assert cri.image_id in {i.id for i in im.ListImages(pb.ListImagesRequest()).images}
    only = im.ListImages(pb.ListImagesRequest(filter=pb.ImageFilter(
        image=pb.ImageSpec(image=cri.image)))).images
    assert [i.id for i in only] == [cri.image_id]
    fs = im.ImageFsInfo(pb.ImageFsInfoRequest())
    assert fs.image_filesystems[0].used_bytes.value > 100_000
    assert fs.image_filesystems[0].inodes_used.value > 0
    assert fs.image_filesystems[0].fs_id.mountpoint.startswith(str(cri.server.data))


def test_pull_missing_and_remove_twice(cri, oci_image):
    im = cri.client.images
    code, msg = code_of(im.PullImage, pb.PullImageRequest(image=pb.ImageSpec(
        image=f"{cri.registry.address}/library/busybox:nope")))
    assert code == grpc.StatusCode.NOT_FOUND, msg
    ref = cri.registry.push(oci_image.layout, oci_image.ref, "small:v1")
    got = im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref))).image_ref
    assert got == oci_image.config_digest
    for _ in range(2):
        im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=got)))
    assert not im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=got))).HasField(
        "image")


def test_pull_with_kubelet_auth(cri, token_registry, oci_image):
    """kubelet's AuthConfig (from an imagePullSecret) is used for that pull only."""
    from tests.integration.cri_client import insecure_registries_conf as conf

    conf(cri.server.config, cri.registry.address)
    with open(cri.server.config / "registries.conf", "a") as f:
        f.write(f'[[registry]]\nlocation = "{token_registry.address}"\ninsecure = true\n')
    ref = token_registry.push(oci_image.layout, oci_image.ref, "private/app:v1",
                              creds="alice:s3cret")
    im = cri.client.images
    code, _ = code_of(im.PullImage, pb.PullImageRequest(image=pb.ImageSpec(image=ref)))
    assert code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
    code, _ = code_of(im.PullImage, pb.PullImageRequest(
        image=pb.ImageSpec(image=ref), auth=pb.AuthConfig(username="alice", password="wrong")))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    import base64

    auth = base64.b64encode(b"alice:s3cret").decode()
    got = im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref),
                                           auth=pb.AuthConfig(auth=auth))).image_ref
    assert got == oci_image.config_digest
    im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=got)))


# -- sandboxes ------------------------------------------------------------------------------

def test_sandbox_lifecycle_is_reported_exactly_and_idempotent(cri):
    c = cri.client
    labels = {"app": "web", "io.kubernetes.pod.namespace": "default"}
    annotations = {"kubernetes.io/config.seen": "2026-12-02T00:00:00Z", "empty": ""}
    sid, cfg = sandbox(cri, "lifecycle", labels=labels, annotations=annotations, attempt=2)
    st = c.sandbox_status(sid)
    assert st.id == sid and st.state == pb.SANDBOX_READY
    assert st.metadata == cfg.metadata and st.metadata.attempt == 2
    assert dict(st.labels) == labels and dict(st.annotations) == annotations
    assert st.network.ip.startswith("172.16.28.")
    assert st.linux.namespaces.options == cfg.linux.security_context.namespace_options
    assert abs(st.created_at / 1e9 - time.time()) < 60
    # the rest of the system sees it as a pod like any other
    rkt = Rkt(cri.server.data, cri.server.config)
    assert sid in rkt("list", "--no-legend", "--full").stdout
    items = c.runtime.ListPodSandbox(pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(
        id=sid[:8]))).items
    assert [s.id for s in items] == [sid] and items[0].labels == st.labels
    ready = pb.PodSandboxStateValue(state=pb.SANDBOX_READY)
    assert sid in {s.id for s in c.runtime.ListPodSandbox(pb.ListPodSandboxRequest(
        filter=pb.PodSandboxFilter(state=ready, label_selector={"app": "web"}))).items}
    assert sid not in {s.id for s in c.runtime.ListPodSandbox(pb.ListPodSandboxRequest(
        filter=pb.PodSandboxFilter(label_selector={"app": "other"}))).items}
    for _ in range(2):
        c.stop_sandbox(sid)
    assert c.sandbox_status(sid).state == pb.SANDBOX_NOTREADY
    notready = pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY)
    assert [s.id for s in c.runtime.ListPodSandbox(pb.ListPodSandboxRequest(
        filter=pb.PodSandboxFilter(id=sid, state=notready))).items] == [sid]
    for _ in range(2):
        c.remove_sandbox(sid)
    code, _ = code_of(c.runtime.PodSandboxStatus, pb.PodSandboxStatusRequest(pod_sandbox_id=sid))
    assert code == grpc.StatusCode.NOT_FOUND
    assert not cgroups_mentioning(sid) and not processes_mentioning(sid)
    assert bridge_ports() == cri.ports_before


def test_host_network_dns_hostname_and_sysctls(cri):
    c = cri.client
    dns = pb.DNSConfig(servers=["10.96.0.10"], searches=["default.svc.cluster.local"],
                       options=["ndots:5"])
    sid, cfg = sandbox(cri, "dns", dns=dns,
                       sysctls={"net.ipv4.ip_unprivileged_port_start": "80",
                                "kernel.shmmni": "1000"})
    cid = c.run(sid, sleeper(cri), cfg)
    resolv = out(cri, cid, "cat /etc/resolv.conf")
    assert "nameserver 10.96.0.10" in resolv and "search default.svc.cluster.local" in resolv
    assert "options ndots:5" in resolv
    assert out(cri, cid, "hostname").strip() == "dns"
    assert out(cri, cid, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start").strip() == "80"
    assert out(cri, cid, "cat /proc/sys/kernel/shmmni").strip() == "1000"
    c.teardown(sid)
    # a host-network pod: the host's interfaces, no pod IP
    hsid, hcfg = sandbox(cri, "hostnet", host_network=True)
    assert c.sandbox_status(hsid).network.ip == ""
    hcid = c.run(hsid, sleeper(cri), hcfg)
    assert out(cri, hcid, "hostname").strip() == os.uname().nodename   # the node's name
    with open("/proc/net/dev") as f:
        host_ifaces = {line.split(":")[0].strip() for line in f.readlines()[2:]}
    inside = {line.split(":")[0].strip()
              for line in out(cri, hcid, "cat /proc/net/dev").splitlines()[2:]}
    assert inside == host_ifaces
    c.teardown(hsid)
    # a host-network pod cannot set the host's network sysctls
    bad = c.sandbox_config("hostsysctl", cri.logs, host_network=True,
                           sysctls={"net.ipv4.ip_forward": "1"})
    assert code_of(c.run_sandbox, bad)[0] == grpc.StatusCode.INVALID_ARGUMENT


# -- containers -----------------------------------------------------------------------------

def test_two_containers_share_the_pods_localhost(cri):
    c = cri.client
    sid, cfg = sandbox(cri, "shared")
    web = c.run(sid, cri.client.container_config(
        "web", cri.image_id, ["httpd", "-f", "-p", "8080", "-h", "/var/www"]), cfg)
    client = c.run(sid, sleeper(cri, "client"), cfg)
    page = wait_for(lambda: c.exec_sync(client, ["wget", "-q", "-O-",
                                                 "http://127.0.0.1:8080/"]).stdout, 20, "httpd")
    assert b"hello from a rktnetes pod" in page
    assert web != client
    c.teardown(sid)


def test_container_config_is_honoured(cri, tmp_path):
    c = cri.client
    sid, cfg = sandbox(cri, "config")
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir(mode=0o777)
    os.chmod(rw, 0o777)      # written by uid 1000
    ro.mkdir()
    (ro / "file").write_text("from the host\n")
    sc = pb.LinuxContainerSecurityContext(
        run_as_user=pb.Int64Value(value=1000), run_as_group=pb.Int64Value(value=1000),
        supplemental_groups=[2000], readonly_rootfs=True)
    cfg1 = sleeper(cri, "configured", security=sc, working_dir="/tmp",
                   envs=[pb.KeyValue(key="GREETING", value="hi there"),
                         pb.KeyValue(key="PATH", value="/bin:/usr/bin")],
                   mounts=[pb.Mount(container_path="/data", host_path=str(rw)),
                           pb.Mount(container_path="/config", host_path=str(ro), readonly=True),
                           ])
    cid = c.run(sid, cfg1, cfg)
    uid, gid, *groups = out(cri, cid, "id -u; id -g; id -G").split()
    # the image's /etc/group puts user 1000 in group 100 too: kept, as containerd does
    assert (uid, gid) == ("1000", "1000") and set(groups) == {"1000", "100", "2000"}
    assert out(cri, cid, "pwd").strip() == "/tmp"
    assert out(cri, cid, 'echo "$GREETING|$PATH"').strip() == "hi there|/bin:/usr/bin"
    assert c.exec_sync(cid, ["touch", "/rootfs-file"]).exit_code != 0       # read-only rootfs
    out(cri, cid, "echo written > /data/x")
    assert (rw / "x").read_text() == "written\n"
    assert out(cri, cid, "cat /config/file") == "from the host\n"
    assert c.exec_sync(cid, ["touch", "/config/y"]).exit_code != 0
    st = c.status(cid)
    assert [m.container_path for m in st.mounts] == ["/data", "/config"]
    missing = sleeper(cri, "missing", mounts=[pb.Mount(container_path="/m",
                                                       host_path=str(tmp_path / "none"))])
    code, msg = code_of(c.create, sid, missing)          # the CRI: an error, not a new dir
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "does not exist" in msg
    assert not (tmp_path / "none").exists()
    assert st.log_path == str(cri.logs / "config" / "configured" / "0.log")
    c.teardown(sid)


def _cap_eff(cri, cid) -> int:
    line = next(x for x in out(cri, cid, "cat /proc/self/status").splitlines()
                if x.startswith("CapEff:"))
    return int(line.split()[1], 16)


def _seccomp_mode(cri, cid) -> str:
    return next(x for x in out(cri, cid, "cat /proc/self/status").splitlines()
                if x.startswith("Seccomp:")).split()[1]


def test_capabilities_privileged_masked_paths_and_seccomp(cri):
    c = cri.client
    sid, cfg = sandbox(cri, "security")
    none = c.run(sid, sleeper(cri, "nocaps", security=pb.LinuxContainerSecurityContext(
        capabilities=pb.Capability(drop_capabilities=["ALL"]))), cfg)
    assert _cap_eff(cri, none) == 0
    netadmin = c.run(sid, sleeper(cri, "netadmin", security=pb.LinuxContainerSecurityContext(
        capabilities=pb.Capability(add_capabilities=["NET_ADMIN"],
                                   drop_capabilities=["CHOWN"]))), cfg)
    eff = _cap_eff(cri, netadmin)
    assert eff & (1 << 12) and not eff & (1 << 0)      # CAP_NET_ADMIN 12, CAP_CHOWN 0
    default = c.run(sid, sleeper(cri, "defaults", security=pb.LinuxContainerSecurityContext(
        seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault))), cfg)
    assert not _cap_eff(cri, default) & (1 << 12)
    assert _seccomp_mode(cri, default) == "2"          # a filter: the default profile
    unset = c.run(sid, sleeper(cri, "unset"), cfg)
    assert _seccomp_mode(cri, unset) == "0"            # none given: unconfined, as the CRI says
    assert "ro" in out(cri, default, "grep ' /sys ' /proc/mounts | tail -1").split()[3].split(",")
    masked = next(p for p in ("/proc/keys", "/proc/timer_list", "/proc/kcore")
                  if os.path.exists(p))        # what this kernel has of the masked paths
    assert out(cri, default, f"wc -c < {masked}").strip() == "0"
    assert c.exec_sync(default, ["sh", "-c", "echo 1 > /proc/sys/kernel/domainname"]
                       ).exit_code != 0                 # read-only /proc/sys
    unconfined = c.run(sid, sleeper(cri, "unconfined", security=pb.LinuxContainerSecurityContext(
        seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.Unconfined))), cfg)
    assert _seccomp_mode(cri, unconfined) == "0"
    priv = c.run(sid, sleeper(cri, "privileged", security=pb.LinuxContainerSecurityContext(
        privileged=True)), cfg)
    assert _cap_eff(cri, priv) & (1 << 21)              # CAP_SYS_ADMIN
    assert set(os.listdir("/dev")) <= set(out(cri, priv, "ls -a /dev").split())  # the host's
    assert _seccomp_mode(cri, priv) == "0"
    assert "rw" in out(cri, priv, "grep ' /sys ' /proc/mounts | tail -1").split()[3].split(",")
    c.teardown(sid)


def test_localhost_seccomp_profile(cri, tmp_path):
    c = cri.client
    prof = tmp_path / "deny-mkdir.json"
    prof.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    sid, cfg = sandbox(cri, "seccomp")
    cid = c.run(sid, sleeper(cri, security=pb.LinuxContainerSecurityContext(
        seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.Localhost,
                                   localhost_ref=str(prof)))), cfg)
    r = c.exec_sync(cid, ["mkdir", "/tmp/x"])
    assert r.exit_code != 0 and b"not permitted" in r.stderr.lower()
    assert c.exec_sync(cid, ["touch", "/tmp/y"]).exit_code == 0
    c.teardown(sid)


def test_pid_namespace_modes(cri):
    c = cri.client
    sid, cfg = sandbox(cri, "pidns")
    own = c.run(sid, sleeper(cri, "own"), cfg)
    assert out(cri, own, "cat /proc/1/cmdline | tr '\\0' ' '").strip() == "sleep 3600"
    host = c.run(sid, sleeper(cri, "host", security=pb.LinuxContainerSecurityContext(
        namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.NODE, ipc=pb.POD))), cfg)
    with open("/proc/1/cmdline", "rb") as f:
        init = f.read().replace(b"\0", b" ").decode().strip()
    assert out(cri, host, "cat /proc/1/cmdline | tr '\\0' ' '").strip() == init
    shared = sleeper(cri, "shared", security=pb.LinuxContainerSecurityContext(
        namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.POD, ipc=pb.POD)))
    code, msg = code_of(c.create, sid, shared)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "PID namespace" in msg
    c.teardown(sid)


def _app_cgroup(parent: str, sid: str, cid: str, controller: str) -> Path:
    d = Path(f"/sys/fs/cgroup/{controller}{parent}/rktnetes-{sid}/{cid}")
    assert d.is_dir(), f"no {controller} cgroup {d}"
    return d


def test_resources_and_their_update(cri):
    c = cri.client
    parent = "/kubepods/burstable/poduid-resources"     # kubelet's pod cgroup (cgroupfs)
    sid, cfg = sandbox(cri, "resources", cgroup_parent=parent)
    res = pb.LinuxContainerResources(memory_limit_in_bytes=64 << 20, cpu_shares=512,
                                     cpu_quota=50_000, cpu_period=100_000)
    cid = c.run(sid, sleeper(cri, resources=res), cfg)
    mem = _app_cgroup(parent, sid, cid, "memory")
    assert int((mem / "memory.limit_in_bytes").read_text()) == 64 << 20
    cpu = _app_cgroup(parent, sid, cid, "cpu")
    assert int((cpu / "cpu.shares").read_text()) == 512
    assert int((cpu / "cpu.cfs_quota_us").read_text()) == 50_000
    st = c.status(cid)
    assert st.resources.linux.memory_limit_in_bytes == 64 << 20
    c.runtime.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
        container_id=cid, linux=pb.LinuxContainerResources(
            memory_limit_in_bytes=128 << 20, cpu_shares=256, cpu_quota=20_000,
            cpu_period=100_000)))
    assert int((mem / "memory.limit_in_bytes").read_text()) == 128 << 20
    assert int((cpu / "cpu.shares").read_text()) == 256
    assert int((cpu / "cpu.cfs_quota_us").read_text()) == 20_000
    assert c.status(cid).resources.linux.memory_limit_in_bytes == 128 << 20
    c.teardown(sid)
    assert not mem.parent.exists()              # ours removed, kubelet's parent left to it


def test_exit_codes_and_reasons(cri):
    c = cri.client
    sid, cfg = sandbox(cri, "exits")
    ok = c.run(sid, shell(cri, "ok", "true"), cfg)
    bad = c.run(sid, shell(cri, "bad", "exit 3"), cfg)
    s_ok, s_bad = c.wait_exited(ok), c.wait_exited(bad)
    assert (s_ok.exit_code, s_ok.reason) == (0, "Completed")
    assert (s_bad.exit_code, s_bad.reason) == (3, "Error")
    assert s_bad.finished_at >= s_bad.started_at >= s_bad.created_at > 0
    oom = c.run(sid, shell(cri, "oom", "head -c 200000000 /dev/zero | tail -c 1 > /dev/null; "
                           "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived",
                           resources=pb.LinuxContainerResources(
                               memory_limit_in_bytes=16 << 20)), cfg)
    s_oom = c.wait_exited(oom, 60)
    assert (s_oom.reason, s_oom.exit_code) == ("OOMKilled", 137), s_oom
    c.teardown(sid)


def test_exec_sync(cri):
    c = cri.client
    sid, cfg = sandbox(cri, "exec")
    cid = c.run(sid, sleeper(cri), cfg)
    r = c.exec_sync(cid, ["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (r.stdout, r.stderr, r.exit_code) == (b"out\n", b"err\n", 7)
    t = time.monotonic()
    code, msg = code_of(c.exec_sync, cid, ["sleep", "30"], timeout=1)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - t < 10, msg
    assert "sleep 30" not in out(cri, cid, "ps -o args")      # the timed-out command is gone
    missing = c.exec_sync(cid, ["/no/such/tool"])
    assert missing.exit_code == 127 and b"/no/such/tool" in missing.stderr
    big = c.exec_sync(cid, ["sh", "-c", "head -c 3000000 /dev/zero"])
    assert len(big.stdout) == 3_000_000
    assert code_of(c.exec_sync, "0" * 32, ["true"])[0] == grpc.StatusCode.NOT_FOUND
    assert code_of(c.exec_sync, cid, [])[0] == grpc.StatusCode.INVALID_ARGUMENT
    c.stop_container(cid, 0)
    assert code_of(c.exec_sync, cid, ["true"])[0] == grpc.StatusCode.FAILED_PRECONDITION
    c.teardown(sid)


def _log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_logs_at_kubelets_path_and_reopen(cri):
    c = cri.client
    sid, cfg = sandbox(cri, "logs")
    cid = c.run(sid, shell(cri, "talker", "i=0; while true; do echo line$i; echo e$i >&2; "
                           "i=$((i+1)); sleep 0.1; done"), cfg)
    log = cri.logs / "logs" / "talker" / "0.log"
    wait_for(lambda: len(_log_lines(log)) >= 4, 20, "log lines")
    first = _log_lines(log)[0].split(" ", 3)
    assert first[1] in ("stdout", "stderr") and first[2] == "F"
    assert time.strptime(first[0][:19], "%Y-%m-%dT%H:%M:%S")
    rotated = log.with_name("0.log.20261202-000000")
    os.rename(log, rotated)
    c.runtime.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid))
    wait_for(lambda: len(_log_lines(log)) >= 2, 20, "lines in the reopened log")
    n = len(_log_lines(rotated))
    time.sleep(0.5)
    assert len(_log_lines(rotated)) == n          # nothing more goes to the rotated file
    c.stop_container(cid, 0)
    code, _ = code_of(c.runtime.ReopenContainerLog,
                      pb.ReopenContainerLogRequest(container_id=cid))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    c.teardown(sid)


def test_stats(cri):
    c = cri.client
    sid, cfg = sandbox(cri, "stats")
    cid = c.run(sid, shell(cri, "busy", "head -c 20000000 /dev/urandom > /tmp/blob; "
                           "while true; do :; done"), cfg)
    c.exec_sync(cid, ["wget", "-q", "-T", "1", "-O-", "http://172.16.28.1:1/"])  # some traffic
    wait_for(lambda: c.exec_sync(cid, ["test", "-s", "/tmp/blob"]).exit_code == 0, 20, "blob")
    time.sleep(0.3)
    s1 = c.runtime.ContainerStats(pb.ContainerStatsRequest(container_id=cid)).stats
    assert s1.attributes.id == cid and s1.attributes.metadata.name == "busy"
    assert s1.cpu.usage_core_nano_seconds.value > 0
    assert s1.memory.working_set_bytes.value > 0 and s1.memory.page_faults.value > 0
    assert s1.writable_layer.used_bytes.value >= 19_000_000          # /tmp/blob
    time.sleep(0.5)
    s2 = c.runtime.ContainerStats(pb.ContainerStatsRequest(container_id=cid)).stats
    assert s2.cpu.usage_core_nano_seconds.value > s1.cpu.usage_core_nano_seconds.value
    assert s2.cpu.usage_nano_cores.value > 100_000_000                # a busy loop: > 0.1 CPU
    listed = c.runtime.ListContainerStats(pb.ListContainerStatsRequest(
        filter=pb.ContainerStatsFilter(pod_sandbox_id=sid))).stats
    assert [x.attributes.id for x in listed] == [cid]
    ps = c.runtime.PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=sid)).stats
    assert ps.attributes.id == sid and ps.linux.cpu.usage_core_nano_seconds.value > 0
    assert ps.linux.network.default_interface.name == "eth0"
    assert ps.linux.network.default_interface.tx_bytes.value > 0
    assert ps.linux.process.process_count.value >= 1
    assert [x.attributes.id for x in ps.linux.containers] == [cid]
    assert sid in {x.attributes.id for x in c.runtime.ListPodSandboxStats(
        pb.ListPodSandboxStatsRequest()).stats}
    c.teardown(sid)


def test_container_events(cri):
    c = cri.client
    seen: list[tuple[str, int]] = []
    call = c.runtime.GetContainerEvents(pb.GetEventsRequest())

    def reader():
        try:
            for ev in call:
                seen.append((ev.container_id, ev.container_event_type))
        except grpc.RpcError:
            pass

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    time.sleep(0.3)
    sid, cfg = sandbox(cri, "events")
    cid = c.run(sid, sleeper(cri), cfg)
    quick = c.run(sid, shell(cri, "quick", "sleep 0.5"), cfg)     # exits on its own
    c.stop_container(cid, 0)
    c.remove_container(cid)
    want = [pb.CONTAINER_CREATED_EVENT, pb.CONTAINER_STARTED_EVENT, pb.CONTAINER_STOPPED_EVENT,
            pb.CONTAINER_DELETED_EVENT]
    wait_for(lambda: [k for i, k in seen if i == cid] == want, 10, f"events of {cid}: {seen}")
    wait_for(lambda: (quick, pb.CONTAINER_STOPPED_EVENT) in seen, 10, "the exit of `quick`")
    ev_sandbox = c.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid))
    assert ev_sandbox.containers_statuses
    call.cancel()
    c.teardown(sid)


def test_list_filters_and_id_prefixes(cri):
    c = cri.client
    sid, cfg = sandbox(cri, "filters")
    running = c.run(sid, sleeper(cri, "running", labels={"tier": "a"}), cfg)
    created = c.create(sid, sleeper(cri, "created", labels={"tier": "b"}), cfg)
    other, ocfg = sandbox(cri, "filters-other")
    elsewhere = c.run(other, sleeper(cri, "elsewhere", labels={"tier": "a"}), ocfg)

    def ids(**f):
        return {x.id for x in c.runtime.ListContainers(pb.ListContainersRequest(
            filter=pb.ContainerFilter(**f))).containers}

    assert ids(pod_sandbox_id=sid) == {running, created}
    assert ids(pod_sandbox_id=sid[:6]) == {running, created}
    assert ids(id=running[:10]) == {running}
    assert ids(state=pb.ContainerStateValue(state=pb.CONTAINER_CREATED)) >= {created}
    assert running not in ids(state=pb.ContainerStateValue(state=pb.CONTAINER_CREATED))
    assert ids(label_selector={"tier": "a"}) >= {running, elsewhere}
    assert ids(label_selector={"tier": "a"}, pod_sandbox_id=other) == {elsewhere}
    assert c.status(running[:12]).id == running                   # a unique prefix is an id
    listed = next(x for x in c.runtime.ListContainers(pb.ListContainersRequest()).containers
                  if x.id == running)
    assert listed.pod_sandbox_id == sid and listed.image_ref == cri.image_id
    assert listed.metadata.name == "running" and dict(listed.labels) == {"tier": "a"}
    streamed = [x.id for r in c.runtime.StreamContainers(pb.StreamContainersRequest(
        filter=pb.ContainerFilter(pod_sandbox_id=sid))) for x in r.containers]
    assert set(streamed) == {running, created}
    c.teardown(sid)
    c.teardown(other)


def test_stop_and_remove_twice(cri):
    c = cri.client
    sid, cfg = sandbox(cri, "twice")
    cid = c.run(sid, sleeper(cri), cfg)
    never = c.create(sid, sleeper(cri, "never"), cfg)
    for _ in range(2):
        c.stop_container(cid, 1)
        c.stop_container(never, 1)
    assert c.status(cid).state == pb.CONTAINER_EXITED
    for _ in range(2):
        c.remove_container(cid)
        c.remove_container(never)
    assert code_of(c.status, cid)[0] == grpc.StatusCode.NOT_FOUND
    # containers left in a stopped sandbox are removed too (kubelet removes them after it)
    left = c.run(sid, sleeper(cri, "left"), cfg)
    c.stop_sandbox(sid)
    assert c.status(left).state == pb.CONTAINER_EXITED
    c.remove_container(left)
    assert code_of(c.status, left)[0] == grpc.StatusCode.NOT_FOUND
    c.remove_sandbox(sid)


def test_restart_after_kill_9_finds_everything(cri):
    c = cri.client
    sid, cfg = sandbox(cri, "survivor")
    alive = c.run(sid, sleeper(cri, "alive"), cfg)
    done = c.run(sid, shell(cri, "done", "exit 4"), cfg)
    c.wait_exited(done)
    created = c.create(sid, sleeper(cri, "later"), cfg)
    before = {x: c.status(x) for x in (alive, done, created)}
    cri.server.kill9()
    cri.server.start()
    c2 = Client(cri.server.sock)
    assert c2.sandbox_status(sid).state == pb.SANDBOX_READY
    for cid, was in before.items():
        now = c2.status(cid)
        assert (now.state, now.exit_code, now.metadata, now.created_at) == \
            (was.state, was.exit_code, was.metadata, was.created_at), cid
    assert c2.exec_sync(alive, ["true"]).exit_code == 0
    c2.start(created)
    assert c2.status(created).state == pb.CONTAINER_RUNNING
    cri.client = c2
    c2.teardown(sid)


def test_ten_sandboxes_in_parallel(cri):
    c = cri.client
    with futures.ThreadPoolExecutor(10) as pool:
        ids = list(pool.map(lambda i: sandbox(cri, f"parallel-{i}")[0], range(10)))
        assert len(set(ids)) == 10
        assert all(c.sandbox_status(s).state == pb.SANDBOX_READY for s in ids)
        ips = {c.sandbox_status(s).network.ip for s in ids}
        assert len(ips) == 10
        list(pool.map(c.teardown, ids))


def test_bad_requests_get_the_right_codes(cri):
    c = cri.client
    INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    cfg = c.sandbox_config("bad", cri.logs)
    assert code_of(c.run_sandbox, cfg, "gvisor")[0] == INVALID
    annotated = c.sandbox_config("bad", cri.logs, annotations={"rktnetes.io/stage1": "nope"})
    assert code_of(c.run_sandbox, annotated)[0] == INVALID
    code, msg = code_of(c.run_sandbox, c.sandbox_config("flybad", cri.logs), "fly")
    assert code == INVALID and "privileged host-network" in msg
    no_md = pb.PodSandboxConfig()
    assert code_of(c.run_sandbox, no_md)[0] == INVALID
    assert code_of(c.create, "f" * 8, sleeper(cri))[0] == NOT_FOUND
    sid, scfg = sandbox(cri, "dup")
    code, msg = code_of(c.run_sandbox, scfg)
    assert code == grpc.StatusCode.ALREADY_EXISTS and sid in msg
    cid = c.run(sid, sleeper(cri, "one"), scfg)
    assert code_of(c.create, sid, sleeper(cri, "one"))[0] == grpc.StatusCode.ALREADY_EXISTS
    assert code_of(c.start, cid)[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert code_of(c.create, sid, c.container_config("x", "nothere:1", ["true"]))[0] == NOT_FOUND
    bad_env = sleeper(cri, "badenv", envs=[pb.KeyValue(key="A=B", value="1")])
    assert code_of(c.create, sid, bad_env)[0] == INVALID
    rel = sleeper(cri, "rel", mounts=[pb.Mount(container_path="data", host_path="/tmp")])
    assert code_of(c.create, sid, rel)[0] == INVALID
    cpus = sleeper(cri, "cpus", resources=pb.LinuxContainerResources(cpuset_cpus="0-"))
    assert code_of(c.create, sid, cpus)[0] == INVALID
    caps = sleeper(cri, "caps", security=pb.LinuxContainerSecurityContext(
        capabilities=pb.Capability(add_capabilities=["FLY"])))
    assert code_of(c.create, sid, caps)[0] == INVALID
    escape = sleeper(cri, "escape")
    escape.log_path = "../../escape.log"
    assert code_of(c.create, sid, escape)[0] == INVALID
    for call, req in ((c.runtime.ContainerStatus, pb.ContainerStatusRequest(container_id="nope")),
                      (c.runtime.StartContainer, pb.StartContainerRequest(container_id="")),
                      (c.runtime.ContainerStats, pb.ContainerStatsRequest(container_id="nope"))):
        assert code_of(call, req)[0] == NOT_FOUND
    assert code_of(c.runtime.Exec, pb.ExecRequest(container_id=cid, cmd=["sh"]))[0] == INVALID
    code, msg = code_of(c.runtime.CheckpointContainer, pb.CheckpointContainerRequest(
        container_id=cid))
    assert code == grpc.StatusCode.UNIMPLEMENTED
    # none of these left anything behind: the sandbox has its one container only
    assert [x.id for x in c.runtime.ListContainers(pb.ListContainersRequest(
        filter=pb.ContainerFilter(pod_sandbox_id=sid))).containers] == [cid]
    c.teardown(sid)
    assert [s.metadata.name for s in c.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items
            if s.metadata.name in ("bad", "flybad")] == []


def test_nothing_is_left(cri):
    """Last: every test removed what it made; the host has nothing of this data directory."""
    c = cri.client
    assert not c.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items
    rkt = Rkt(cri.server.data, cri.server.config)
    assert not [p for p in rkt.paths.pods.glob("*/*")], "pod directories left"
    assert not mounts_mentioning(str(rkt.paths.data))
    assert processes_mentioning(str(rkt.paths.data)) == [cri.server.proc.pid]   # itself only
    for sid in cri.made:
        assert not cgroups_mentioning(sid), cgroups_mentioning(sid)
    assert bridge_ports() == cri.ports_before
    from rktnetes.stage1.default import runtime_root

    root = runtime_root(rkt.paths)
    assert not (os.listdir(root) if root.is_dir() else []), "runc containers left"
