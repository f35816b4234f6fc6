#!/usr/bin/env python3
"""The CRI over its socket, rktnetes (`rkt cri`) against containerd (Debian's, its CRI plugin
and runc), measured in one run, doing what kubelet does.

    sudo .venv/bin/python bench/bench_cri.py [-n ROUNDS]

Both get their own data and state under one temporary directory, the same busybox image from
a docker-registry on 127.0.0.1, the same CNI network (bridge + portmap, each its own bridge
and subnet), cgroupfs. containerd runs with `restrict_oom_score_adj = true` (this VM lacks
CAP_SYS_RESOURCE) and a pause image built from the same busybox (no registry.k8s.io here).

Per round, for each runtime in turn (alternating which goes first):
- sandbox lifecycle: RunPodSandbox, PodSandboxStatus, StopPodSandbox, RemovePodSandbox;
- container lifecycle, in a sandbox made for it: CreateContainer, StartContainer,
  ContainerStatus, StopContainer (the app exits on SIGTERM), RemoveContainer;
- pull: RemoveImage, then PullImage of a registry image.
Prints the median of each step and each total, and rktnetes/containerd ratios; then the RSS
of `rkt cri` and of one sandbox's monitor against containerd's and its sandbox's shim's, and
the per-pod processes' Pss and private memory (a monitor shares its pages with the launcher
that forked it, supervise/launcher.py: its VmRSS counts them whole).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from rktnetes.image import builder  # noqa: E402
from rktnetes.proto.runtime.v1 import api_pb2 as pb  # noqa: E402
from rktnetes.proto.runtime.v1 import api_pb2_grpc as pb_grpc  # noqa: E402
from tests.registry_server import RegistryServer  # noqa: E402

SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
NS = pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD)


def wait_socket(path: Path, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited at start (code {proc.returncode})")
        if path.exists():
            try:
                stub = pb_grpc.RuntimeServiceStub(grpc.insecure_channel(f"unix://{path}"))
                stub.Version(pb.VersionRequest(), timeout=2)
                return
            except grpc.RpcError:
                pass
        time.sleep(0.1)
    raise SystemExit(f"{what} did not answer on {path}")


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def smaps_kb(pid: int) -> dict[str, int]:
    """Pss and the private (Private_Clean + Private_Dirty) kB of `pid`."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Pss", "Private_Clean", "Private_Dirty"):
                out[k] = int(v.split()[0])
    return {"pss": out["Pss"], "private": out["Private_Clean"] + out["Private_Dirty"]}


def children_named(name: str) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{p}/comm").read_text().strip() == name:
                    out.append(int(p))
    return out


class Runtime:
    name = ""

    def __init__(self, sock: Path):
        self.sock = sock
        self.proc: subprocess.Popen | None = None

    def connect(self) -> None:
        ch = grpc.insecure_channel(f"unix://{self.sock}")
        self.rt = pb_grpc.RuntimeServiceStub(ch)
        self.im = pb_grpc.ImageServiceStub(ch)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def sandbox_config(self, name: str, logs: Path) -> pb.PodSandboxConfig:
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="bench"),
            hostname=name, log_directory=str(logs / name),
            linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=NS)))


class Rktnetes(Runtime):
    name = "rktnetes"

    def start(self, work: Path, registry: str) -> None:
        data, config = work / "rkt-data", work / "rkt-config"
        config.mkdir(parents=True)
        (config / "registries.conf").write_text(
            f'[[registry]]\nlocation = "{registry}"\ninsecure = true\n')
        # the network containerd's pods get (bridge + portmap), on a bridge of its own
        cni = json.loads(json.dumps(CNI_CONFIG))
        cni["plugins"][0].update(bridge="cnibenchr0")
        cni["plugins"][0]["ipam"].update(ranges=[[{"subnet": "10.99.1.0/24"}]],
                                         dataDir=str(work / "rkt-ipam"))
        (config / "net.d").mkdir()
        (config / "net.d" / "10-bench.conflist").write_text(json.dumps(cni))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rktnetes", "--dir", str(data), "--config-dir", str(config),
             "cri", f"--listen=unix://{self.sock}", f"--net={CNI_CONFIG['name']}"], cwd=ROOT,
            stdout=open(work / "rkt-cri.log", "wb"), stderr=subprocess.STDOUT)
        wait_socket(self.sock, self.proc, "rkt cri")
        self.connect()

    def monitor_pid(self, sid: str) -> int:
        st = self.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid,
                                                                 verbose=True))
        return int(json.loads(st.info["info"])["state"]["monitor_pid"])


CONTAINERD_CONFIG = """version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{netd}"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."{registry}"]
    endpoint = ["http://{registry}"]
"""

CNI_CONFIG = {
    "cniVersion": "0.4.0", "name": "bench",
    "plugins": [{"type": "bridge", "bridge": "cnibench0", "isGateway": True, "ipMasq": False,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.99.0.0/24"}]],
                          "dataDir": ""}},
                {"type": "portmap", "capabilities": {"portMappings": True}}],
}


class Containerd(Runtime):
    name = "containerd"

    def start(self, work: Path, registry: str, pause: str) -> None:
        d = work / "containerd"
        netd = d / "net.d"
        netd.mkdir(parents=True)
        cni = json.loads(json.dumps(CNI_CONFIG))
        cni["plugins"][0]["ipam"]["dataDir"] = str(d / "ipam")
        (netd / "10-bench.conflist").write_text(json.dumps(cni))
        cfg = d / "config.toml"
        cfg.write_text(CONTAINERD_CONFIG.format(root=d / "root", state=d / "state",
                                                sock=self.sock, pause=pause, netd=netd,
                                                registry=registry))
        self.proc = subprocess.Popen(["containerd", "--config", str(cfg)],
                                     stdout=open(work / "containerd.log", "wb"),
                                     stderr=subprocess.STDOUT)
        wait_socket(self.sock, self.proc, "containerd")
        self.connect()

    def shim_pid(self, sid: str) -> int:
        """The shim of sandbox `sid` (its command line names the sandbox's id)."""
        for p in children_named("containerd-shim") + children_named("containerd-shim-runc-v2"):
            with contextlib.suppress(OSError):
                if sid.encode() in Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0"):
                    return p
        return 0


def timed(fn, *args, **kw):
    t = time.perf_counter()
    r = fn(*args, **kw)
    return time.perf_counter() - t, r


def sandbox_round(r: Runtime, logs: Path, i: int) -> dict[str, float]:
    cfg = r.sandbox_config(f"sb-{i}", logs)
    t = {}
    t["RunPodSandbox"], res = timed(r.rt.RunPodSandbox, pb.RunPodSandboxRequest(config=cfg),
                                    timeout=120)
    sid = res.pod_sandbox_id
    t["PodSandboxStatus"], _ = timed(r.rt.PodSandboxStatus,
                                     pb.PodSandboxStatusRequest(pod_sandbox_id=sid))
    t["StopPodSandbox"], _ = timed(r.rt.StopPodSandbox,
                                   pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=120)
    t["RemovePodSandbox"], _ = timed(r.rt.RemovePodSandbox,
                                     pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=120)
    t["sandbox total"] = sum(t.values())
    return t


def container_round(r: Runtime, sid: str, cfg: pb.PodSandboxConfig, image: str,
                    i: int) -> dict[str, float]:
    cc = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=f"c-{i}"),
                            image=pb.ImageSpec(image=image), command=SLEEPER,
                            log_path=f"c-{i}.log",
                            linux=pb.LinuxContainerConfig(
                                security_context=pb.LinuxContainerSecurityContext(
                                    namespace_options=NS)))
    t = {}
    t["CreateContainer"], res = timed(r.rt.CreateContainer, pb.CreateContainerRequest(
        pod_sandbox_id=sid, config=cc, sandbox_config=cfg), timeout=60)
    cid = res.container_id
    t["StartContainer"], _ = timed(r.rt.StartContainer,
                                   pb.StartContainerRequest(container_id=cid), timeout=60)
    t["ContainerStatus"], _ = timed(r.rt.ContainerStatus,
                                    pb.ContainerStatusRequest(container_id=cid))
    t["StopContainer"], _ = timed(r.rt.StopContainer,
                                  pb.StopContainerRequest(container_id=cid, timeout=10),
                                  timeout=60)
    t["RemoveContainer"], _ = timed(r.rt.RemoveContainer,
                                    pb.RemoveContainerRequest(container_id=cid), timeout=60)
    t["container total"] = sum(t.values())
    return t


def pull_round(r: Runtime, ref: str) -> dict[str, float]:
    r.im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)), timeout=60)
    t, _ = timed(r.im.PullImage, pb.PullImageRequest(image=pb.ImageSpec(image=ref)),
                 timeout=300)
    return {"PullImage": t}


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def check_host(what: str) -> None:
    """Root and the peer's tools, or a one-line exit."""
    if os.geteuid() != 0:
        raise SystemExit(f"{what} needs root (it runs pods)")
    for tool in ("containerd", "containerd-shim-runc-v2", "runc", "docker-registry", "skopeo"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (apt-get install containerd "
                             f"docker-registry skopeo)")


class Peers:
    """What a CRI benchmark runs on: a work directory under /var/tmp, a registry holding the
    busybox image and a pause image made of it, and rktnetes and containerd started on them
    with both images pulled. `close()` removes all of it (pods, bridges, mounts, files)."""

    def __init__(self, prefix: str):
        self.work = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
        self.reg = RegistryServer(self.work / "registry").start()
        self.runtimes: list[Runtime] = []
        self.layout = builder.OCILayout(self.work / "layout")
        self.spec = builder.default_image_spec(self.work)

    def start(self) -> "Peers":
        spec, layout = self.spec, self.layout
        layout.add_image(spec, "1")
        pause = builder.ImageSpec(layers=spec.layers, config={
            **spec.config, "Entrypoint": ["/bin/sleep", "2147483647"], "Cmd": []})
        layout.add_image(pause, "pause")
        self.image = self.reg.push(layout.path, "1", "library/busybox:1")
        self.pause_ref = self.reg.push(layout.path, "pause", "library/pause:1")
        self.rk = Rktnetes(self.work / "rkt-cri.sock")
        self.rk.start(self.work, self.reg.address)
        self.runtimes.append(self.rk)
        self.cd = Containerd(self.work / "containerd.sock")
        self.cd.start(self.work, self.reg.address, self.pause_ref)
        self.runtimes.append(self.cd)
        for r in self.runtimes:
            for ref in (self.image, self.pause_ref):
                r.im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=300)
        return self

    def close(self) -> None:
        for r in self.runtimes:
            with contextlib.suppress(Exception):
                for s in r.rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items:
                    r.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=s.id))
                    r.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=s.id))
            r.stop()
        self.reg.stop()
        for bridge in ("cnibench0", "cnibenchr0"):
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        for m in reversed([line.split()[4] for line in open("/proc/self/mountinfo")
                           if str(self.work) in line.split()[4]]):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)
        # containerd leaves its parent cgroups (kubepods/..., k8s.io) behind, empty: rmdir
        # takes only empty ones, deepest first
        for root in Path("/sys/fs/cgroup").iterdir():
            for top in ("kubepods", "k8s.io"):
                for d in sorted((root / top).glob("**/"), key=lambda p: -len(p.parts)):
                    with contextlib.suppress(OSError):
                        d.rmdir()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--rounds", type=int, default=10)
    args = ap.parse_args(argv)
    check_host("bench_cri")
    peers = Peers("bench-cri-")
    try:
        peers.start()
        work, reg, layout, spec = peers.work, peers.reg, peers.layout, peers.spec
        image, rk, cd, runtimes = peers.image, peers.rk, peers.cd, peers.runtimes
        # pulled and removed each round: an image of its own (removing an image removes
        # every name it has, in both runtimes), the busybox layer plus a small one
        pulled = builder.ImageSpec(layers=spec.layers + [builder.tar_entries([])],
                                   config={**spec.config, "Labels": {"bench": "pull"}})
        layout.add_image(pulled, "pulled")
        pull_ref = reg.push(layout.path, "pulled", "library/pulled:1")
        results: dict[str, dict[str, list]] = {r.name: {"sb": [], "c": [], "pull": []}
                                               for r in runtimes}
        homes = {}
        for r in runtimes:        # the sandbox the container rounds run in, and a warm-up
            cfg = r.sandbox_config("home", work / "logs" / r.name)
            sid = r.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=120
                                     ).pod_sandbox_id
            homes[r.name] = (sid, cfg)
            sandbox_round(r, work / "logs" / r.name, -1)
            container_round(r, sid, cfg, image, -1)
        for i in range(args.rounds):
            order = runtimes if i % 2 == 0 else list(reversed(runtimes))
            for r in order:
                logs = work / "logs" / r.name
                results[r.name]["sb"].append(sandbox_round(r, logs, i))
                sid, cfg = homes[r.name]
                results[r.name]["c"].append(container_round(r, sid, cfg, image, i))
                results[r.name]["pull"].append(pull_round(r, pull_ref))
        print(f"CRI over its unix socket, median of {args.rounds} rounds (ms)")
        print(f"{'step':22} {'rktnetes':>10} {'containerd':>11} {'ratio':>7}")
        for group in ("sb", "c", "pull"):
            keys = list(results["rktnetes"][group][0])
            for k in keys:
                a = median(results["rktnetes"][group], k) * 1000
                b = median(results["containerd"][group], k) * 1000
                print(f"{k:22} {a:10.1f} {b:11.1f} {a / b:6.2f}x")
        # memory: the servers, and one sandbox's per-pod process
        rk_sid = homes["rktnetes"][0]
        mon = rk.monitor_pid(rk_sid)
        shim = cd.shim_pid(homes["containerd"][0])
        print("\nRSS (kB)")
        print(f"{'server':22} {rss_kb(rk.proc.pid):10d} {rss_kb(cd.proc.pid):11d} "
              f"{rss_kb(rk.proc.pid) / rss_kb(cd.proc.pid):6.2f}x   (rkt cri / containerd)")
        if mon and shim:
            print(f"{'per-pod process':22} {rss_kb(mon):10d} {rss_kb(shim):11d} "
                  f"{rss_kb(mon) / rss_kb(shim):6.2f}x   (monitor / containerd-shim-runc-v2)")
            m, c = smaps_kb(mon), smaps_kb(shim)
            for k in ("pss", "private"):
                print(f"{'per-pod process, ' + k:22} {m[k]:10d} {c[k]:11d} "
                      f"{m[k] / c[k]:6.2f}x")
        for r in runtimes:
            sid, _ = homes[r.name]
            r.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=120)
            r.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=120)
        return 0
    finally:
        peers.close()


if __name__ == "__main__":
    sys.exit(main())
