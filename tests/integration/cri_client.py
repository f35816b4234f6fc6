"""A CRI client that does what kubelet does, over the real `rkt cri` process's socket, and the
fixtures that start that process (its own data and config directories) beside a real
docker-registry holding the busybox image. Nothing is mocked: the server runs real sandbox
pods with runc and the CNI bridge."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from rktnetes.image import builder
from rktnetes.proto.runtime.v1 import api_pb2 as pb
from rktnetes.proto.runtime.v1 import api_pb2_grpc as pb_grpc
from tests.integration.pod_helpers import need_root_tools
from tests.registry_server import RegistryServer

DEFAULT_NS = pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD)


class CriServer:
    """`python -m rktnetes cri` as a child process; restartable, killable."""

    def __init__(self, data: Path, config: Path, sock: Path, handlers: str = "default,fly"):
        self.data, self.config, self.sock, self.handlers = data, config, sock, handlers
        self.proc: subprocess.Popen | None = None
        self.log = data.parent / "cri.log"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "rktnetes", "--dir", str(self.data), "--config-dir",
                str(self.config), "cri", f"--listen=unix://{self.sock}",
                f"--runtime-handlers={self.handlers}"]

    def start(self) -> "CriServer":
        self.proc = subprocess.Popen(self.argv(), stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"rkt cri exited: {self.log.read_text()[-2000:]}")
            if self.sock.exists():
                try:
                    Client(self.sock).runtime.Version(pb.VersionRequest(), timeout=2)
                    return self
                except grpc.RpcError:
                    pass
            time.sleep(0.05)
        raise AssertionError("rkt cri did not answer within 30s")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(30)
        return self.proc.returncode if self.proc else 0


class Client:
    def __init__(self, sock: Path):
        self.channel = grpc.insecure_channel(f"unix://{sock}")
        self.runtime = pb_grpc.RuntimeServiceStub(self.channel)
        self.images = pb_grpc.ImageServiceStub(self.channel)

    # -- what kubelet sends -----------------------------------------------------------------

    def sandbox_config(self, name: str, log_dir: Path, *, uid: str = "", attempt: int = 0,
                       host_network: bool = False, labels=None, annotations=None,
                       **linux) -> pb.PodSandboxConfig:
        ns = pb.NamespaceOption(network=pb.NODE if host_network else pb.POD,
                                pid=pb.CONTAINER, ipc=pb.POD)
        sc = pb.LinuxSandboxSecurityContext(namespace_options=ns,
                                            privileged=linux.pop("privileged", False))
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid or f"uid-{name}",
                                           namespace="default", attempt=attempt),
            hostname=name, log_directory=str(log_dir), labels=labels or {"app": name},
            annotations=annotations or {}, dns_config=linux.pop("dns", None),
            port_mappings=linux.pop("ports", []),
            linux=pb.LinuxPodSandboxConfig(security_context=sc, **linux))

    def run_sandbox(self, cfg: pb.PodSandboxConfig, handler: str = "") -> str:
        return self.runtime.RunPodSandbox(pb.RunPodSandboxRequest(
            config=cfg, runtime_handler=handler), timeout=120).pod_sandbox_id

    def container_config(self, name: str, image: str, cmd: list[str], *, attempt: int = 0,
                         security=None, resources=None, **kw) -> pb.ContainerConfig:
        sc = security or pb.LinuxContainerSecurityContext()
        if not sc.HasField("namespace_options"):
            sc.namespace_options.CopyFrom(DEFAULT_NS)
        return pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name, attempt=attempt),
            image=pb.ImageSpec(image=image), command=cmd, log_path=f"{name}/{attempt}.log",
            linux=pb.LinuxContainerConfig(security_context=sc,
                                          resources=resources or pb.LinuxContainerResources()),
            **kw)

    def create(self, sid: str, cfg: pb.ContainerConfig,
               sandbox: pb.PodSandboxConfig | None = None) -> str:
        return self.runtime.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, config=cfg, sandbox_config=sandbox), timeout=60).container_id

    def start(self, cid: str) -> None:
        self.runtime.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=60)

    def run(self, sid: str, cfg: pb.ContainerConfig, sandbox=None) -> str:
        cid = self.create(sid, cfg, sandbox)
        self.start(cid)
        return cid

    def status(self, cid: str) -> pb.ContainerStatus:
        return self.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cid),
                                            timeout=30).status

    def sandbox_status(self, sid: str) -> pb.PodSandboxStatus:
        return self.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid),
                                             timeout=30).status

    def exec_sync(self, cid: str, cmd: list[str], timeout: int = 10) -> pb.ExecSyncResponse:
        return self.runtime.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=cmd,
                                                        timeout=timeout), timeout=timeout + 30)

    def wait_exited(self, cid: str, timeout: float = 30) -> pb.ContainerStatus:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.status(cid)
            if s.state == pb.CONTAINER_EXITED:
                return s
            time.sleep(0.05)
        raise AssertionError(f"container {cid} did not exit within {timeout}s")

    def stop_container(self, cid: str, timeout: int = 5) -> None:
        self.runtime.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=timeout),
                                   timeout=timeout + 60)

    def remove_container(self, cid: str) -> None:
        self.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60)

    def stop_sandbox(self, sid: str) -> None:
        self.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=120)

    def remove_sandbox(self, sid: str) -> None:
        self.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid),
                                      timeout=120)

    def teardown(self, sid: str) -> None:
        """As kubelet ends a pod: stop its containers, stop the sandbox, remove everything."""
        for c in self.runtime.ListContainers(pb.ListContainersRequest(
                filter=pb.ContainerFilter(pod_sandbox_id=sid))).containers:
            self.stop_container(c.id, 0)
            self.remove_container(c.id)
        self.stop_sandbox(sid)
        self.remove_sandbox(sid)


def code_of(call, *args, **kw) -> tuple[grpc.StatusCode, str]:
    """The status code and message a call fails with (AssertionError if it succeeds)."""
    try:
        call(*args, **kw)
    except grpc.RpcError as e:
        return e.code(), e.details()
    raise AssertionError(f"{getattr(call, '_method', call)} unexpectedly succeeded")


@dataclass
class CriEnv:
    server: CriServer
    client: Client
    image: str            # a registry reference kubelet would pull
    image_id: str
    logs: Path
    tmp: Path


def push_busybox(registry, work: Path) -> str:
    layout = builder.OCILayout(work / "layout")
    layout.add_image(builder.default_image_spec(work), "1")
    return registry.push(layout.path, "1", "library/busybox:1")


def insecure_registries_conf(config: Path, address: str) -> None:
    # a node's registries.conf for a plain-HTTP local registry, as for podman and CRI-O
    (config / "registries.conf").write_text(
        f'[[registry]]\nlocation = "{address}"\ninsecure = true\n')


def bridge_ports(bridge: str = "rkt0") -> set[str]:
    """The veths on the pods' bridge (each pod network attachment adds one)."""
    p = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True,
                       text=True)
    return {line.split(":")[1].strip().split("@")[0] for line in p.stdout.splitlines()
            if ":" in line}


@contextlib.contextmanager
def cri_environment(tmp: Path):
    """A `rkt cri` server on its own data directory, a registry with busybox, the image
    pulled: what a module of CRI tests shares. Everything is torn down at the end."""
    need_root_tools()
    for tool in ("docker-registry", "skopeo"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    reg = RegistryServer(tmp / "registry").start()
    try:
        image = push_busybox(reg, tmp)
        data, config = tmp / "data", tmp / "config"
        config.mkdir()
        insecure_registries_conf(config, reg.address)
        server = CriServer(data, config, tmp / "cri.sock").start()
        client = Client(server.sock)
        image_id = client.images.PullImage(pb.PullImageRequest(
            image=pb.ImageSpec(image=image)), timeout=120).image_ref
        env = CriEnv(server, client, image, image_id, tmp / "logs", tmp)
        env.registry = reg
        env.ports_before = bridge_ports()
        env.made = []            # every sandbox id the tests made
        yield env
        for s in client.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items:
            client.teardown(s.id)
        server.stop()
    finally:
        reg.stop()
