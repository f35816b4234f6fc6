"""CRI messages into stage0's typed requests: a PodSandboxConfig into a PodSpec, a
ContainerConfig into an AppSpec. Pure functions of the messages (and the sandbox's recorded
config); what cannot be honoured is refused here with one line (INVALID_ARGUMENT). Not
applied, and said so in the README: oom_score_adj, swap, hugepage and `unified` limits.

The whole config as kubelet sent it is kept in the pod's (or app's) `origin`, so that statuses
report metadata, labels and annotations exactly as given, and a restarted server finds them.
"""

from __future__ import annotations

import os
import re

from google.protobuf import json_format

from rktnetes.net.flags import PortSpec
from rktnetes.pod.manifest import Mount, NetworkRequest, Volume
from rktnetes.stage0.spec import AppSpec, InvalidSpec, PodSpec, Resources, short

from rktnetes.proto.runtime.v1 import api_pb2 as pb

STAGE1_ANNOTATION = "rktnetes.io/stage1"
POD, CONTAINER, NODE, TARGET = pb.POD, pb.CONTAINER, pb.NODE, pb.TARGET


def to_dict(msg) -> dict:
    """A message as JSON-able data, field names as in the .proto (kept in origin)."""
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def from_dict(d: dict, cls):
    return json_format.ParseDict(d or {}, cls(), ignore_unknown_fields=True)


# -- the sandbox -----------------------------------------------------------------------------

def flavor(cfg: pb.PodSandboxConfig, handler: str, handlers: list[str]) -> str:
    """The stage1 a sandbox runs in: the RuntimeClass handler, else the pod's annotation,
    else `default`. A handler this server does not offer is an invalid argument."""
    want = handler or cfg.annotations.get(STAGE1_ANNOTATION, "") or "default"
    if want not in handlers:
        src = "runtime handler" if handler else f"annotation {STAGE1_ANNOTATION}"
        raise InvalidSpec(f"{src} {short(want)!r}: not offered here (handlers: "
                          f"{', '.join(handlers)})")
    return want


def host_network(cfg: pb.PodSandboxConfig) -> bool:
    return cfg.linux.security_context.namespace_options.network == NODE


def cgroup_path(parent: str) -> str:
    """kubelet's cgroup parent as a cgroupfs path; a systemd slice name
    (`kubepods-burstable-pod1.slice`) becomes the path systemd gives it."""
    if not parent:
        return ""
    if parent.endswith(".slice") and "/" not in parent:
        parts = parent[:-len(".slice")].split("-")
        if not all(parts):
            raise InvalidSpec(f"cgroup parent {short(parent)!r}: not a valid slice name")
        return "/" + "/".join("-".join(parts[:i + 1]) + ".slice" for i in range(len(parts)))
    if not parent.startswith("/") or ".." in parent.split("/"):
        raise InvalidSpec(f"cgroup parent {short(parent)!r}: must be an absolute path")
    return parent


def sandbox_spec(cfg: pb.PodSandboxConfig, handler: str, handlers: list[str],
                 network: str) -> PodSpec:
    """The PodSpec of a sandbox pod. `network`: the CNI network pods join."""
    md = cfg.metadata
    if not md.name or not md.uid or not md.namespace:
        raise InvalidSpec("sandbox metadata needs a name, a uid and a namespace")
    stage1 = flavor(cfg, handler, handlers)
    sc = cfg.linux.security_context
    ns = sc.namespace_options
    if ns.ipc == NODE:
        raise InvalidSpec("the host's IPC namespace (hostIPC) is not supported")
    if ns.pid in (POD, TARGET) and cfg.linux.HasField("security_context") and \
            sc.HasField("namespace_options"):
        raise InvalidSpec("a PID namespace shared by the pod's containers "
                          "(shareProcessNamespace) is not supported")
    hostnet = ns.network == NODE
    if stage1 == "fly":
        if not (hostnet and sc.privileged):
            raise InvalidSpec("the fly stage1 runs privileged host-network pods only")
        raise InvalidSpec("the fly stage1 runs one app and no pod sandbox: it cannot run "
                          "a Kubernetes pod yet")
    ports = []
    for p in cfg.port_mappings:
        if p.protocol == pb.SCTP:
            raise InvalidSpec(f"port {p.container_port}/sctp: SCTP is not supported")
        if not 0 < p.container_port < 65536 or not 0 <= p.host_port < 65536:
            raise InvalidSpec(f"port mapping {p.container_port}:{p.host_port}: out of range")
        if p.host_port == 0:      # a declared port, nothing forwarded from the host
            continue
        if hostnet:
            continue              # the pod listens on the host's ports itself
        proto = "udp" if p.protocol == pb.UDP else "tcp"
        ports.append(PortSpec(f"{p.container_port}/{proto}", p.host_port, p.host_ip,
                              shown=f"port mapping {p.container_port}/{proto}:{p.host_port}"))
    networks = [NetworkRequest("host")] if hostnet else [NetworkRequest(network, {
        "IgnoreUnknown": "1", "K8S_POD_NAMESPACE": md.namespace, "K8S_POD_NAME": md.name,
        "K8S_POD_UID": md.uid})]
    dns = cfg.dns_config
    # a host-network pod has the node's name (kubelet sends none), as containerd gives it
    hostname = "" if hostnet else cfg.hostname
    return PodSpec(
        apps=[], stage1=stage1, sandbox=True, hostname=hostname, networks=networks,
        host_uts=hostnet,
        ports=ports,
        dns=list(dns.servers) or ([] if hostnet else ["host"]),
        dns_search=list(dns.searches), dns_options=list(dns.options),
        cgroup_parent=cgroup_path(cfg.linux.cgroup_parent),
        sysctls=dict(cfg.linux.sysctls),
        origin={"cri": {"kind": "sandbox", "config": to_dict(cfg),
                        "runtime_handler": handler}},
    )


# -- a container -------------------------------------------------------------------------------

def _stop_signal(sig: int) -> str:
    if sig == pb.RUNTIME_DEFAULT:
        return ""
    name = pb.Signal.Name(sig)
    m = re.fullmatch(r"SIGRTMINPLUS(\d+)", name) or re.fullmatch(r"SIGRTMAXMINUS(\d+)", name)
    if m:
        return name.replace("MINPLUS", "MIN+").replace("MAXMINUS", "MAX-")
    return {"SIGCLD": "SIGCHLD", "SIGIOT": "SIGABRT", "SIGPOLL": "SIGIO"}.get(name, name)


def _seccomp(sc: pb.LinuxContainerSecurityContext) -> str:
    if sc.HasField("seccomp"):
        t = sc.seccomp.profile_type
        if t == pb.SecurityProfile.Unconfined:
            return "unconfined"
        if t == pb.SecurityProfile.Localhost:
            if not os.path.isabs(sc.seccomp.localhost_ref):
                raise InvalidSpec(f"seccomp localhost profile "
                                  f"{short(sc.seccomp.localhost_ref)!r}: must be an absolute "
                                  f"path")
            return "localhost/" + sc.seccomp.localhost_ref
        return ""
    old = sc.seccomp_profile_path   # deprecated spelling, still sent by older kubelets
    if old == "":
        return "unconfined"         # the CRI: "" is identical with unconfined
    if old in ("runtime/default", "docker/default"):
        return ""
    if old == "unconfined" or old.startswith("localhost/"):
        return old
    raise InvalidSpec(f"seccomp profile {short(old)!r}: use runtime/default, unconfined or "
                      f"localhost/PATH")


def capabilities(cap: pb.Capability, default: list[str], every: list[str]
                 ) -> tuple[list[str], list[str]]:
    """(retain, remove) for the app from the CRI's add/drop lists, "ALL" included."""
    add = [c.upper() for c in cap.add_capabilities]
    drop = [c.upper() for c in cap.drop_capabilities]
    base = list(every) if "ALL" in add else list(default)
    if "ALL" in drop:
        base = []
    retain = base + [c if c.startswith("CAP_") else f"CAP_{c}" for c in add if c != "ALL"]
    remove = [c for c in drop if c != "ALL"]
    if not retain:            # none at all: an empty retain list means the defaults
        return [], list(every)
    return retain, remove


def resources(r: pb.LinuxContainerResources) -> Resources:
    for what, v in (("memory limit", r.memory_limit_in_bytes), ("cpu shares", r.cpu_shares),
                    ("cpu period", r.cpu_period)):
        if v < 0:
            raise InvalidSpec(f"{what} {v}: must not be negative")
    return Resources(memory_limit=r.memory_limit_in_bytes, cpu_shares=r.cpu_shares,
                     cpu_quota=r.cpu_quota if r.cpu_quota > 0 else 0,
                     cpu_period=r.cpu_period, cpuset_cpus=r.cpuset_cpus,
                     cpuset_mems=r.cpuset_mems)


_PROPAGATION = {pb.PROPAGATION_PRIVATE: "rprivate", pb.PROPAGATION_HOST_TO_CONTAINER: "rslave",
                pb.PROPAGATION_BIDIRECTIONAL: "rshared"}


def container_spec(cid: str, cfg: pb.ContainerConfig, sandbox: pb.PodSandboxConfig,
                   default_caps: list[str], every_cap: list[str]
                   ) -> tuple[AppSpec, list[Volume]]:
    """The app (named `cid`) for a container, and the host-path volumes its mounts need."""
    if not cfg.metadata.name:
        raise InvalidSpec("container metadata needs a name")
    if not cfg.image.image:
        raise InvalidSpec(f"container {short(cfg.metadata.name)}: no image given")
    if cfg.devices or cfg.CDI_devices:
        raise InvalidSpec(f"container {short(cfg.metadata.name)}: devices are not supported")
    sc = cfg.linux.security_context
    ns = sc.namespace_options
    pid_ns = ""
    if ns.pid == NODE:
        pid_ns = "host"
    elif sc.HasField("namespace_options") and ns.pid in (POD, TARGET):
        raise InvalidSpec("a PID namespace shared with the pod or another container is not "
                          "supported")
    volumes, mounts = [], []
    for i, m in enumerate(cfg.mounts):
        if m.HasField("image") and m.image.image:
            raise InvalidSpec(f"mount on {short(m.container_path)}: image volumes are not "
                              f"supported")
        if not os.path.isabs(m.container_path) or not os.path.isabs(m.host_path):
            raise InvalidSpec(f"mount {short(m.host_path)!r} on {short(m.container_path)!r}: "
                              f"both paths must be absolute")
        name = f"c{cid[:12]}-{i}"
        volumes.append(Volume(name, "host", source=m.host_path, readonly=m.readonly))
        mounts.append(Mount(name, m.container_path, m.readonly,
                            _PROPAGATION.get(m.propagation, "rprivate")))
    user = ""
    if sc.HasField("run_as_user"):
        user = str(sc.run_as_user.value)
    elif sc.run_as_username:
        user = sc.run_as_username
    group = str(sc.run_as_group.value) if sc.HasField("run_as_group") else ""
    if group and not user:
        raise InvalidSpec("run_as_group needs run_as_user or run_as_username")
    for g in sc.supplemental_groups:
        if g < 0:
            raise InvalidSpec(f"supplemental group {g}: must not be negative")
    retain, remove = capabilities(sc.capabilities, default_caps, every_cap)
    log_path = ""
    if cfg.log_path and sandbox.log_directory:
        log_path = os.path.normpath(os.path.join(sandbox.log_directory, cfg.log_path))
        if not log_path.startswith(os.path.normpath(sandbox.log_directory) + "/"):
            raise InvalidSpec(f"log path {short(cfg.log_path)!r}: outside the sandbox's log "
                              f"directory")
    spec = AppSpec(
        image=cfg.image.image, name=cid,
        command=list(cfg.command) or None, args=list(cfg.args) or None,
        env=[(kv.key, kv.value) for kv in cfg.envs],
        user=user, group=group, supplementary_gids=list(sc.supplemental_groups),
        working_dir=cfg.working_dir,
        readonly_rootfs=sc.readonly_rootfs,
        resources=resources(cfg.linux.resources),
        caps_retain=retain, caps_remove=remove,
        privileged=sc.privileged,
        no_new_privileges=sc.no_new_privs,
        mounts=mounts,
        restart="never",          # kubelet restarts containers itself, as new ones
        stop_signal=_stop_signal(cfg.stop_signal),
        log_path=log_path,
        seccomp="unconfined" if sc.privileged else _seccomp(sc),
        # on the wire an empty list cannot be told from none given: the defaults then, as
        # containerd keeps them (kubelet sends its defaults for the Default procMount)
        masked_paths=list(sc.masked_paths) or None,
        readonly_paths=list(sc.readonly_paths) or None,
        pid_namespace=pid_ns,
        stdin=cfg.stdin, stdin_once=cfg.stdin_once,
        origin={"cri": {"kind": "container", "config": to_dict(cfg)}},
    )
    return spec, volumes
