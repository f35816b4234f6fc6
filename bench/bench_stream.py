#!/usr/bin/env python3
"""CRI streaming, rktnetes (`rkt cri`) against containerd in one run: exec round trips and
port-forward throughput, as kubelet's clients drive them.

    sudo .venv/bin/python bench/bench_stream.py [-n ROUNDS] [--mib 16]

Both runtimes are set up as in bench_cri.py (same image, registry, CNI network), each with a
sandbox running an idle container and a TCP echo server (`nc -ll -p 9000 -e cat`). Per round,
for each runtime in turn (alternating which goes first):
- ExecSync of `true`;
- streamed Exec of `true`: the Exec call, then a WebSocket (`v4.channel.k8s.io`, the
  `websockets` package) to the URL, read until the server closes it with the exit status;
  and again over SPDY/3.1 with the tests' client (tests/spdyclient.py: against containerd,
  kubelet's own streaming library checks that client too);
- port forward: PortForward, a WebSocket to the URL with ?port=9000, MIB MiB sent through the
  echo server and read back (checked byte for byte), as MiB/s.
WebSocket for both: containerd's streaming server (kubelet's library) speaks it as we do, so
the one client measures both. Prints medians and rktnetes/containerd ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cri import NS, Peers, Runtime, check_host  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from rktnetes.proto.runtime.v1 import api_pb2 as pb  # noqa: E402
from tests.spdyclient import SpdyClient  # noqa: E402

V4 = "v4.channel.k8s.io"


def container(r: Runtime, sid: str, cfg, image: str, name: str, cmd: list[str]) -> str:
    cc = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name),
                            image=pb.ImageSpec(image=image), command=cmd,
                            log_path=f"{name}.log",
                            linux=pb.LinuxContainerConfig(
                                security_context=pb.LinuxContainerSecurityContext(
                                    namespace_options=NS)))
    cid = r.rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=cc,
                                                         sandbox_config=cfg),
                               timeout=60).container_id
    r.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=60)
    return cid


def ws(url: str) -> str:
    return "ws" + url[len("http"):]


def exec_sync(r: Runtime, cid: str) -> float:
    t = time.perf_counter()
    res = r.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["true"], timeout=10),
                        timeout=30)
    assert res.exit_code == 0, res
    return time.perf_counter() - t


def exec_streamed(r: Runtime, cid: str) -> float:
    t = time.perf_counter()
    url = r.rt.Exec(pb.ExecRequest(container_id=cid, cmd=["true"], stdout=True)).url
    status = b""
    with connect(ws(url), subprotocols=[V4], open_timeout=30) as c:
        with contextlib.suppress(Exception):
            while True:
                m = c.recv(timeout=30)
                if m[0] == 3:
                    status += m[1:]
    assert b"Success" in status, status
    return time.perf_counter() - t


def exec_spdy(r: Runtime, cid: str) -> float:
    """Streamed Exec of `true` over SPDY/3.1, as kubectl opens it (error, then stdout)."""
    t = time.perf_counter()
    url = r.rt.Exec(pb.ExecRequest(container_id=cid, cmd=["true"], stdout=True)).url
    c = SpdyClient(url, [V4])
    try:
        err = c.open_stream({"streamType": "error"})
        out = c.open_stream({"streamType": "stdout"})
        out.read_all()
        status = err.read_all()
    finally:
        c.close()
    assert b"Success" in status, (r.name, status)
    return time.perf_counter() - t


def port_forward(r: Runtime, sid: str, size: int) -> float:
    """MiB/s of `size` bytes through the pod's echo server and back."""
    payload = os.urandom(size)
    url = r.rt.PortForward(pb.PortForwardRequest(pod_sandbox_id=sid, port=[9000])).url
    with connect(ws(url) + "?port=9000", subprotocols=[V4], open_timeout=30,
                 max_size=None) as c:
        c.recv(timeout=10)
        c.recv(timeout=10)            # the two port-number prefixes
        t = time.perf_counter()

        def send():
            for i in range(0, size, 32 << 10):
                c.send(b"\x00" + payload[i:i + (32 << 10)])
        sender = threading.Thread(target=send)
        sender.start()
        back = bytearray()
        while len(back) < size:
            m = c.recv(timeout=60)
            if m[0] == 0:
                back += m[1:]
            elif m[0] == 1 and len(m) > 1:
                raise SystemExit(f"{r.name}: port forward error: {m[1:]!r}")
        elapsed = time.perf_counter() - t
        sender.join()
    assert bytes(back) == payload, f"{r.name}: the echo differs"
    return size / (1 << 20) / elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--rounds", type=int, default=10)
    ap.add_argument("--mib", type=int, default=16)
    args = ap.parse_args(argv)
    check_host("bench_stream")
    peers = Peers("bench-stream-")
    try:
        peers.start()
        work, image, runtimes = peers.work, peers.image, peers.runtimes
        pods = {}
        for r in runtimes:
            cfg = r.sandbox_config("stream", work / "logs" / r.name)
            sid = r.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg),
                                     timeout=120).pod_sandbox_id
            idle = container(r, sid, cfg, image, "idle", ["sleep", "3600"])
            container(r, sid, cfg, image, "echo", ["nc", "-ll", "-p", "9000", "-e", "cat"])
            pods[r.name] = (sid, idle)
            time.sleep(0.5)            # the echo server listens
            exec_sync(r, idle)
            exec_streamed(r, idle)
            exec_spdy(r, idle)
            port_forward(r, sid, 1 << 20)
        rows: dict[str, dict[str, list[float]]] = {
            r.name: {"ExecSync true": [], "Exec true (WebSocket)": [], "Exec true (SPDY)": [],
                     "port-forward MiB/s": []}
            for r in runtimes}
        for i in range(args.rounds):
            for r in (runtimes if i % 2 == 0 else list(reversed(runtimes))):
                sid, idle = pods[r.name]
                rows[r.name]["ExecSync true"].append(exec_sync(r, idle) * 1000)
                rows[r.name]["Exec true (WebSocket)"].append(exec_streamed(r, idle) * 1000)
                rows[r.name]["Exec true (SPDY)"].append(exec_spdy(r, idle) * 1000)
                rows[r.name]["port-forward MiB/s"].append(
                    port_forward(r, sid, args.mib << 20))
        print(f"CRI streaming, median of {args.rounds} rounds "
              f"(ms; port forward: {args.mib} MiB echoed, MiB/s)")
        print(f"{'step':24} {'rktnetes':>10} {'containerd':>11} {'ratio':>7}")
        for k in rows["rktnetes"]:
            a = statistics.median(rows["rktnetes"][k])
            b = statistics.median(rows["containerd"][k])
            print(f"{k:24} {a:10.1f} {b:11.1f} {a / b:6.2f}x")
        for r in runtimes:
            sid, _ = pods[r.name]
            r.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=120)
            r.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=120)
        return 0
    finally:
        peers.close()

if __name__ == "__main__":
    sys.exit(main())
