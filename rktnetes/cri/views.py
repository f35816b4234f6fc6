"""The CRI's view of sandboxes and containers: their messages built from what the pod
directory says (the manifest, the monitor's state files, the origin kept at creation)."""

from __future__ import annotations

from rktnetes.errors import RktError
from rktnetes.pod import state as st
from rktnetes.pod.state import AppState
from rktnetes.pod.store import RUN
from rktnetes.proto.runtime.v1 import api_pb2 as pb
from rktnetes.stage0 import apps as stage0_apps

from .inventory import Container, Sandbox
from .translate import from_dict

_STATES = {st.CREATED: pb.CONTAINER_CREATED, st.RUNNING: pb.CONTAINER_RUNNING,
           st.EXITED: pb.CONTAINER_EXITED, st.UNKNOWN: pb.CONTAINER_UNKNOWN}


def ns(t: float) -> int:
    return int(t * 1e9) if t else 0


def sandbox_config(sb: Sandbox) -> pb.PodSandboxConfig:
    return from_dict(sb.record.get("config", {}), pb.PodSandboxConfig)


def container_config(c: Container) -> pb.ContainerConfig:
    return from_dict(c.record.get("config", {}), pb.ContainerConfig)


def sandbox_ready(sb: Sandbox) -> bool:
    pod = sb.pod
    try:
        pod.refresh()
    except RktError:
        return False
    if pod.state != RUN:
        return False
    if (pod.path / "stop-request.json").exists():
        return False
    return pod.pod_state().ready and stage0_apps.monitor_alive(pod)


def sandbox_state(sb: Sandbox) -> int:
    return pb.SANDBOX_READY if sandbox_ready(sb) else pb.SANDBOX_NOTREADY


def pod_sandbox(sb: Sandbox) -> pb.PodSandbox:
    cfg = sandbox_config(sb)
    return pb.PodSandbox(id=sb.pod.uuid, metadata=cfg.metadata, state=sandbox_state(sb),
                         created_at=ns(sb.manifest.created_at), labels=cfg.labels,
                         annotations=cfg.annotations,
                         runtime_handler=sb.record.get("runtime_handler", ""))


def sandbox_status(sb: Sandbox) -> pb.PodSandboxStatus:
    cfg = sandbox_config(sb)
    net = pb.PodSandboxNetworkStatus()
    if cfg.linux.security_context.namespace_options.network != pb.NODE:
        ips: list[str] = []
        for n in sb.pod.pod_state().networks:
            for ip in [n.get("ip", "")] + list(n.get("ips") or []):
                ip = (ip or "").split("/")[0]
                if ip and ip not in ips:
                    ips.append(ip)
        if ips:
            net = pb.PodSandboxNetworkStatus(ip=ips[0],
                                             additional_ips=[pb.PodIP(ip=i) for i in ips[1:]])
    return pb.PodSandboxStatus(
        id=sb.pod.uuid, metadata=cfg.metadata, state=sandbox_state(sb),
        created_at=ns(sb.manifest.created_at), network=net,
        linux=pb.LinuxPodSandboxStatus(namespaces=pb.Namespace(
            options=cfg.linux.security_context.namespace_options)),
        labels=cfg.labels, annotations=cfg.annotations,
        runtime_handler=sb.record.get("runtime_handler", ""))


def _app_state(c: Container) -> AppState:
    """The app's state, `unknown` for one recorded running in a pod whose monitor is gone."""
    s = c.sandbox.pod.app_state(c.app.name)
    if s.state == st.RUNNING and not stage0_apps.monitor_alive(c.sandbox.pod) and \
            not s.process_alive():
        s.state = st.UNKNOWN
    return s


def container(c: Container) -> pb.Container:
    cfg = container_config(c)
    s = _app_state(c)
    return pb.Container(id=c.id, pod_sandbox_id=c.sandbox.pod.uuid, metadata=cfg.metadata,
                        image=cfg.image, image_ref=c.app.image_id,
                        state=_STATES.get(s.state, pb.CONTAINER_UNKNOWN),
                        created_at=ns(s.created_at), labels=cfg.labels,
                        annotations=cfg.annotations, image_id=c.app.image_id)


def _resources(c: Container) -> pb.ContainerResources:
    a = c.app
    return pb.ContainerResources(linux=pb.LinuxContainerResources(
        cpu_period=a.cpu_period, cpu_quota=a.cpu_quota, cpu_shares=a.cpu_shares,
        memory_limit_in_bytes=a.memory_limit, cpuset_cpus=a.cpuset_cpus,
        cpuset_mems=a.cpuset_mems))


def container_status(c: Container) -> pb.ContainerStatus:
    cfg = container_config(c)
    s = _app_state(c)
    state = _STATES.get(s.state, pb.CONTAINER_UNKNOWN)
    exit_code, reason, message = 0, "", ""
    if s.state == st.EXITED:
        exit_code = s.exit_code if s.exit_code is not None else 128 + (s.signal or 9)
        reason = s.reason or (st.COMPLETED if exit_code == 0 else st.ERROR)
        message = s.message
    out = pb.ContainerStatus(
        id=c.id, metadata=cfg.metadata, state=state, created_at=ns(s.created_at),
        started_at=ns(s.started_at), finished_at=ns(s.finished_at), exit_code=exit_code,
        image=cfg.image, image_ref=c.app.image_id, reason=reason, message=message,
        labels=cfg.labels, annotations=cfg.annotations, mounts=cfg.mounts,
        log_path=c.app.log_path, resources=_resources(c), image_id=c.app.image_id,
        stop_signal=cfg.stop_signal)
    return out
