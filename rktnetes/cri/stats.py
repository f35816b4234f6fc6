"""ContainerStats and PodSandboxStats from the cgroups (rktnetes.metrics): CPU as cumulative
nanoseconds and as nanocores since the previous sample of the same cgroup, memory as
cAdvisor counts it, the writable layer's size, the pod's network from its namespace."""

from __future__ import annotations

import threading
import time

from rktnetes.metrics import cgroups as m
from rktnetes.metrics.disk import tree_usage
from rktnetes.metrics.netns import net_dev
from rktnetes.proto.runtime.v1 import api_pb2 as pb
from rktnetes.stage1.base import PodContext

from . import views
from .inventory import Container, Sandbox


def _u64(v: int | None) -> pb.UInt64Value | None:
    return pb.UInt64Value(value=max(0, int(v))) if v is not None else None


class Sampler:
    def __init__(self):
        self._mu = threading.Lock()
        self._last: dict[str, tuple[int, int]] = {}   # cgroup -> (time ns, cpu ns)

    def _cpu(self, cg: str, u: m.Usage, now: int) -> pb.CpuUsage:
        cpu = pb.CpuUsage(timestamp=now)
        if u.cpu_ns is None:
            return cpu
        cpu.usage_core_nano_seconds.value = u.cpu_ns
        with self._mu:
            prev = self._last.get(cg)
            self._last[cg] = (now, u.cpu_ns)
        if prev and now > prev[0] and u.cpu_ns >= prev[1]:
            cpu.usage_nano_cores.value = (u.cpu_ns - prev[1]) * 1_000_000_000 // (now - prev[0])
        return cpu

    @staticmethod
    def _memory(u: m.Usage, now: int) -> pb.MemoryUsage:
        mem = pb.MemoryUsage(timestamp=now)
        for name, v in (("working_set_bytes", u.working_set_bytes),
                        ("usage_bytes", u.memory_bytes), ("rss_bytes", u.rss_bytes),
                        ("page_faults", u.page_faults),
                        ("major_page_faults", u.major_page_faults)):
            if v is not None:
                getattr(mem, name).value = max(0, v)
        return mem

    def container(self, c: Container) -> pb.ContainerStats:
        cfg = views.container_config(c)
        ctx = PodContext(None, c.sandbox.pod, c.sandbox.manifest)   # for its cgroup's path
        cg = ctx.cgroup(c.app)
        now = time.time_ns()
        u = m.read(cg)
        used, inodes = tree_usage(str(c.sandbox.pod.app_dir(c.id) / "overlay" / "upper"))
        return pb.ContainerStats(
            attributes=pb.ContainerAttributes(id=c.id, metadata=cfg.metadata,
                                              labels=cfg.labels, annotations=cfg.annotations),
            cpu=self._cpu(cg, u, now), memory=self._memory(u, now),
            writable_layer=pb.FilesystemUsage(
                timestamp=now,
                fs_id=pb.FilesystemIdentifier(mountpoint=str(c.sandbox.pod.app_dir(c.id))),
                used_bytes=_u64(used), inodes_used=_u64(inodes)))

    def sandbox(self, sb: Sandbox, containers: list[Container]) -> pb.PodSandboxStats:
        cfg = views.sandbox_config(sb)
        ctx = PodContext(None, sb.pod, sb.manifest)
        cg = ctx.cgroup()
        now = time.time_ns()
        u = m.read(cg)
        running = [c for c in containers if views.container(c).state == pb.CONTAINER_RUNNING]
        cstats = [self.container(c) for c in running]
        procs = sum(m.read(ctx.cgroup(c.app)).processes or 0 for c in running)
        net = pb.NetworkUsage(timestamp=now)
        infra = sb.pod.pod_state().infra_pid or sb.pod.pod_state().stage1_state.get("infra_pid")
        if infra and cfg.linux.security_context.namespace_options.network != pb.NODE:
            ifaces = [pb.NetworkInterfaceUsage(name=i.name, rx_bytes=_u64(i.rx_bytes),
                                               rx_errors=_u64(i.rx_errors),
                                               tx_bytes=_u64(i.tx_bytes),
                                               tx_errors=_u64(i.tx_errors))
                      for i in net_dev(int(infra))]
            if ifaces:
                default = next((i for i in ifaces if i.name == "eth0"), ifaces[0])
                net.default_interface.CopyFrom(default)
                net.interfaces.extend(ifaces)
        return pb.PodSandboxStats(
            attributes=pb.PodSandboxAttributes(id=sb.pod.uuid, metadata=cfg.metadata,
                                               labels=cfg.labels, annotations=cfg.annotations),
            linux=pb.LinuxPodSandboxStats(
                cpu=self._cpu(cg, u, now), memory=self._memory(u, now), network=net,
                process=pb.ProcessUsage(timestamp=now, process_count=_u64(procs)),
                containers=cstats))
