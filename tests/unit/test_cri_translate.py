"""CRI messages into stage0's typed requests (rktnetes.cri.translate): pure functions."""

from __future__ import annotations

import pytest

from rktnetes.cri import translate as t
from rktnetes.proto.runtime.v1 import api_pb2 as pb
from rktnetes.stage0.spec import InvalidSpec

HANDLERS = ["default", "fly"]
DEFAULT = ["CAP_CHOWN", "CAP_KILL"]
EVERY = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"]


def sandbox(**kw) -> pb.PodSandboxConfig:
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="web", uid="u1",
                                                             namespace="ns", attempt=1),
                              hostname="web", log_directory="/var/log/pods/ns_web_u1")
    for k, v in kw.items():
        setattr(cfg, k, v) if not hasattr(getattr(cfg, k), "CopyFrom") else \
            getattr(cfg, k).CopyFrom(v)
    return cfg


def test_flavor_from_handler_then_annotation():
    cfg = sandbox()
    assert t.flavor(cfg, "", HANDLERS) == "default"
    cfg.annotations[t.STAGE1_ANNOTATION] = "fly"
    assert t.flavor(cfg, "", HANDLERS) == "fly"
    assert t.flavor(cfg, "default", HANDLERS) == "default"      # the RuntimeClass wins
    with pytest.raises(InvalidSpec, match="runtime handler 'kvm'"):
        t.flavor(cfg, "kvm", HANDLERS)
    cfg.annotations[t.STAGE1_ANNOTATION] = "kvm"
    with pytest.raises(InvalidSpec, match="annotation"):
        t.flavor(cfg, "", HANDLERS)


def test_sandbox_spec_pod_network_ports_dns_and_origin():
    cfg = sandbox(dns_config=pb.DNSConfig(servers=["10.0.0.10"], searches=["svc"],
                                          options=["ndots:5"]))
    cfg.port_mappings.extend([pb.PortMapping(container_port=80, host_port=8080),
                              pb.PortMapping(container_port=53, host_port=5353,
                                             protocol=pb.UDP, host_ip="127.0.0.1"),
                              pb.PortMapping(container_port=9000)])   # declared only
    cfg.linux.sysctls["net.ipv4.ip_forward"] = "1"
    cfg.labels["a"] = "b"
    spec = t.sandbox_spec(cfg, "", HANDLERS, "default")
    assert spec.sandbox and spec.stage1 == "default" and spec.hostname == "web"
    assert [n.name for n in spec.networks] == ["default"]
    assert spec.networks[0].args["K8S_POD_NAME"] == "web"
    assert [(p.port, p.host_port, p.host_ip) for p in spec.ports] == [
        ("80/tcp", 8080, ""), ("53/udp", 5353, "127.0.0.1")]
    assert (spec.dns, spec.dns_search, spec.dns_options) == (["10.0.0.10"], ["svc"],
                                                             ["ndots:5"])
    assert spec.sysctls == {"net.ipv4.ip_forward": "1"}
    back = t.from_dict(spec.origin["cri"]["config"], pb.PodSandboxConfig)
    assert back == cfg


def test_sandbox_spec_host_network_and_refusals():
    cfg = sandbox()
    # as kubelet sends them: every mode given (pid POD would mean shareProcessNamespace)
    cfg.linux.security_context.namespace_options.CopyFrom(
        pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.POD))
    cfg.port_mappings.append(pb.PortMapping(container_port=80, host_port=80))
    spec = t.sandbox_spec(cfg, "", HANDLERS, "default")
    assert [n.name for n in spec.networks] == ["host"] and spec.ports == []
    assert spec.host_uts and spec.hostname == ""        # the node's name
    ipc = sandbox()
    ipc.linux.security_context.namespace_options.CopyFrom(
        pb.NamespaceOption(pid=pb.CONTAINER, ipc=pb.NODE))
    with pytest.raises(InvalidSpec, match="hostIPC"):
        t.sandbox_spec(ipc, "", HANDLERS, "default")
    with pytest.raises(InvalidSpec, match="privileged host-network"):
        t.sandbox_spec(sandbox(), "fly", HANDLERS, "default")
    shared = sandbox()
    shared.linux.security_context.namespace_options.CopyFrom(pb.NamespaceOption(pid=pb.POD))
    with pytest.raises(InvalidSpec, match="shareProcessNamespace"):
        t.sandbox_spec(shared, "", HANDLERS, "default")
    with pytest.raises(InvalidSpec, match="metadata"):
        t.sandbox_spec(pb.PodSandboxConfig(), "", HANDLERS, "default")
    sctp = sandbox()
    sctp.port_mappings.append(pb.PortMapping(container_port=1, host_port=1, protocol=pb.SCTP))
    with pytest.raises(InvalidSpec, match="SCTP"):
        t.sandbox_spec(sctp, "", HANDLERS, "default")


@pytest.mark.parametrize("parent,path", [
    ("", ""),
    ("/kubepods/burstable/pod1", "/kubepods/burstable/pod1"),
    ("kubepods-burstable-pod1.slice",
     "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"),
])
def test_cgroup_parent(parent, path):
    assert t.cgroup_path(parent) == path


@pytest.mark.parametrize("bad", ["relative/path", "/a/../b", "-x.slice"])
def test_bad_cgroup_parent(bad):
    with pytest.raises(InvalidSpec):
        t.cgroup_path(bad)


@pytest.mark.parametrize("add,drop,retain,remove", [
    ([], [], DEFAULT, []),
    (["NET_ADMIN"], [], DEFAULT + ["CAP_NET_ADMIN"], []),
    ([], ["ALL"], [], EVERY),                          # none at all
    (["NET_ADMIN"], ["ALL"], ["CAP_NET_ADMIN"], []),
    (["ALL"], ["CAP_SYS_ADMIN"], EVERY, ["CAP_SYS_ADMIN"]),
    ([], ["chown"], DEFAULT, ["CHOWN"]),
])
def test_capabilities(add, drop, retain, remove):
    cap = pb.Capability(add_capabilities=add, drop_capabilities=drop)
    assert t.capabilities(cap, DEFAULT, EVERY) == (retain, remove)


def _container(**sc) -> pb.ContainerConfig:
    cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="app", attempt=2),
                             image=pb.ImageSpec(image="sha256:" + "a" * 64),
                             command=["/bin/app"], args=["-v"], working_dir="/w",
                             envs=[pb.KeyValue(key="A", value="1"),
                                   pb.KeyValue(key="A", value="2")],
                             log_path="app/2.log", stop_signal=pb.SIGRTMINPLUS3)
    for k, v in sc.items():
        f = getattr(cfg.linux.security_context, k)
        if hasattr(f, "CopyFrom"):
            f.CopyFrom(v)
        elif isinstance(v, list):
            f.extend(v)
        else:
            setattr(cfg.linux.security_context, k, v)
    return cfg


def test_container_spec():
    cfg = _container(run_as_user=pb.Int64Value(value=0), run_as_group=pb.Int64Value(value=5),
                     readonly_rootfs=True, no_new_privs=True)
    cfg.mounts.extend([pb.Mount(container_path="/data", host_path="/srv/data",
                                propagation=pb.PROPAGATION_HOST_TO_CONTAINER),
                       pb.Mount(container_path="/ro", host_path="/srv/ro", readonly=True)])
    cfg.linux.resources.CopyFrom(pb.LinuxContainerResources(
        memory_limit_in_bytes=1 << 20, cpu_shares=100, cpu_quota=-1, cpuset_cpus="0"))
    spec, vols = t.container_spec("c" * 32, cfg, sandbox(), DEFAULT, EVERY)
    assert (spec.name, spec.command, spec.args, spec.working_dir) == ("c" * 32, ["/bin/app"],
                                                                      ["-v"], "/w")
    assert spec.env == [("A", "1"), ("A", "2")]            # in order: the last one wins later
    assert (spec.user, spec.group, spec.readonly_rootfs, spec.no_new_privileges) == \
        ("0", "5", True, True)                              # uid 0 given is not "none given"
    assert spec.log_path == "/var/log/pods/ns_web_u1/app/2.log"
    assert spec.stop_signal == "SIGRTMIN+3"
    # no seccomp given is unconfined, as the CRI defines it (kubelet always says which)
    assert spec.restart == "never" and spec.seccomp == "unconfined" and spec.pid_namespace == ""
    assert (spec.resources.memory_limit, spec.resources.cpu_shares, spec.resources.cpu_quota,
            spec.resources.cpuset_cpus) == (1 << 20, 100, 0, "0")
    assert [(v.source, v.readonly) for v in vols] == [("/srv/data", False), ("/srv/ro", True)]
    assert [(m.target, m.readonly, m.propagation) for m in spec.mounts] == [
        ("/data", False, "rslave"), ("/ro", True, "rprivate")]
    assert t.from_dict(spec.origin["cri"]["config"], pb.ContainerConfig) == cfg


def test_container_spec_security_choices():
    priv, _ = t.container_spec("c" * 32, _container(privileged=True), sandbox(), DEFAULT, EVERY)
    assert priv.privileged and priv.seccomp == "unconfined"
    local, _ = t.container_spec("c" * 32, _container(seccomp=pb.SecurityProfile(
        profile_type=pb.SecurityProfile.Localhost, localhost_ref="/p.json")), sandbox(),
        DEFAULT, EVERY)
    assert local.seccomp == "localhost//p.json"
    old, _ = t.container_spec("c" * 32, _container(seccomp_profile_path="unconfined"),
                              sandbox(), DEFAULT, EVERY)
    assert old.seccomp == "unconfined"
    rd, _ = t.container_spec("c" * 32, _container(seccomp=pb.SecurityProfile(
        profile_type=pb.SecurityProfile.RuntimeDefault)), sandbox(), DEFAULT, EVERY)
    assert rd.seccomp == ""          # the default profile
    host, _ = t.container_spec("c" * 32, _container(namespace_options=pb.NamespaceOption(
        pid=pb.NODE)), sandbox(), DEFAULT, EVERY)
    assert host.pid_namespace == "host"
    masked, _ = t.container_spec("c" * 32, _container(masked_paths=["/proc/x"]), sandbox(),
                                 DEFAULT, EVERY)
    assert masked.masked_paths == ["/proc/x"] and masked.readonly_paths is None


@pytest.mark.parametrize("change,match", [
    (lambda c: c.ClearField("metadata"), "metadata"),
    (lambda c: c.image.ClearField("image"), "no image"),
    (lambda c: c.devices.add(container_path="/dev/x", host_path="/dev/x"), "devices"),
    (lambda c: c.mounts.add(container_path="rel", host_path="/x"), "absolute"),
    (lambda c: setattr(c, "log_path", "../../x.log"), "outside"),
    (lambda c: c.linux.security_context.namespace_options.CopyFrom(
        pb.NamespaceOption(pid=pb.POD)), "PID namespace"),
    (lambda c: c.linux.security_context.run_as_group.CopyFrom(pb.Int64Value(value=1)),
     "run_as_group needs"),
    (lambda c: c.linux.security_context.seccomp.CopyFrom(pb.SecurityProfile(
        profile_type=pb.SecurityProfile.Localhost, localhost_ref="rel.json")), "absolute"),
    (lambda c: setattr(c.linux.security_context, "seccomp_profile_path", "weird"), "seccomp"),
    (lambda c: setattr(c.linux.resources, "memory_limit_in_bytes", -1), "negative"),
])
def test_container_spec_refusals(change, match):
    cfg = _container()
    change(cfg)
    with pytest.raises(InvalidSpec, match=match):
        t.container_spec("c" * 32, cfg, sandbox(), DEFAULT, EVERY)
