"""ListPods and `rkt list` latency with 1,000 pods.

Creates 1,000 exited pods with the project's own code paths (PodStore.create, Pod.move under
the pod's lock, Pod.save_pod_state / save_app_state — what stage0 and the monitor write), starts
`rkt api-service` as a real process, and measures:
  - ListPods over gRPC (median of N calls, after the first call, which is also reported: it
    reads every pod once; later calls revalidate the cache with stat calls),
  - ListPods with detail=true (manifests included),
  - `rkt list` as a user runs it (a new Python process each time, so interpreter start-up counts).
Aims (issue 6): ListPods < 50 ms, `rkt list` < 0.3 s, both with 1,000 pods.

Usage: python bench/bench_api.py [--pods 1000] [--runs 30]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from rktnetes.config import Paths  # noqa: E402
from rktnetes.pod.manifest import App, PodManifest  # noqa: E402
from rktnetes.pod.state import AppState  # noqa: E402
from rktnetes.pod.store import PodStore  # noqa: E402
from rktnetes.proto.v1alpha import api_pb2 as pb  # noqa: E402
from rktnetes.proto.v1alpha import api_pb2_grpc as pb_grpc  # noqa: E402

AIM_LISTPODS = 0.050
AIM_RKT_LIST = 0.300


def make_exited_pods(paths: Paths, n: int) -> None:
    store = PodStore(paths.pods)
    image = "sha256:" + "ab" * 32
    for i in range(n):
        m = PodManifest(uuid="", apps=[App("app", image, "docker.io/library/busybox:latest",
                                           ["/bin/sh", "-c", f"echo {i}"])],
                        annotations={"bench": "1", "index": str(i)}, created_at=time.time())
        pod, lock = store.create(m)
        pod.move("prepare")
        pod.move("prepared")
        pod.move("run")
        now = time.time()
        pod.save_pod_state({"monitor_pid": 1, "started_at": now})
        pod.save_app_state(AppState("app", "running", pid=2, created_at=now, started_at=now))
        pod.save_app_state(AppState("app", "exited", pid=2, exit_code=0, reason="Completed",
                                    created_at=now, started_at=now, finished_at=now))
        pod.save_pod_state({"monitor_pid": 1, "started_at": now, "finished_at": now})
        pod.move("exited-garbage")
        lock.close()


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def verdict(value: float, aim: float) -> str:
    return f"{'OK' if value < aim else 'MISSED'} (aim < {aim * 1000:.0f} ms, {value / aim:.2f}x of aim)"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="rkt-bench-api-"))
    paths = Paths(tmp / "data", tmp / "config")
    paths.config.mkdir(parents=True)
    proc = None
    try:
        t = time.perf_counter()
        make_exited_pods(paths, args.pods)
        print(f"created {args.pods} exited pods in {time.perf_counter() - t:.1f} s")

        proc = subprocess.Popen(
            [sys.executable, "-m", "rktnetes", "--dir", str(paths.data), "--config-dir",
             str(paths.config), "api-service", "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, text=True, cwd=ROOT)
        address = proc.stdout.readline().split(" on ", 1)[1].strip()
        channel = grpc.insecure_channel(address)
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = pb_grpc.PublicAPIStub(channel)

        def list_pods(detail=False):
            n = len(stub.ListPods(pb.ListPodsRequest(detail=detail)).pods)
            assert n == args.pods, n

        first = timed(list_pods, 1)[0]
        plain = statistics.median(timed(list_pods, args.runs))
        detail = statistics.median(timed(lambda: list_pods(True), args.runs))
        filt = statistics.median(timed(lambda: stub.ListPods(pb.ListPodsRequest(filters=[
            pb.PodFilter(annotations=[pb.KeyValue(Key="index", value="7")])])), args.runs))
        channel.close()

        print(f"ListPods, first call (reads every pod):   {first * 1000:7.1f} ms")
        print(f"ListPods, median of {args.runs}:                {plain * 1000:7.1f} ms  "
              f"{verdict(plain, AIM_LISTPODS)}")
        print(f"ListPods detail=true, median:             {detail * 1000:7.1f} ms  "
              f"{verdict(detail, AIM_LISTPODS)}")
        print(f"ListPods with an annotation filter:       {filt * 1000:7.1f} ms")

        rkt_list = [sys.executable, "-m", "rktnetes", "--dir", str(paths.data),
                    "--config-dir", str(paths.config), "list", "--no-legend"]
        probe = subprocess.run(rkt_list, capture_output=True, text=True, cwd=ROOT)
        if probe.returncode != 0:
            print(f"rkt list: not measured (it failed: {probe.stderr.strip()[:200]})")
        else:
            runs = max(3, args.runs // 5)
            t_list = statistics.median(timed(lambda: subprocess.run(
                rkt_list, capture_output=True, check=True, cwd=ROOT), runs))
            py = statistics.median(timed(lambda: subprocess.run(
                [sys.executable, "-c", "pass"], check=True), runs))
            print(f"rkt list, median of {runs}:                  {t_list * 1000:7.1f} ms  "
                  f"{verdict(t_list, AIM_RKT_LIST)}  (python start-up alone: {py * 1000:.0f} ms)")
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
