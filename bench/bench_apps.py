#!/usr/bin/env python3
"""Latency of the mutable-pod commands, each run as a user runs it (a new `rkt` process).

    sudo .venv/bin/python bench/bench_apps.py [-n RUNS] [--net none|default]

Per round: `rkt app sandbox` (until the pod is ready), `rkt app add` + `rkt app start` of a
busybox app (until it runs), `rkt app stop` (it exits on SIGTERM), `rkt app rm`, then `rkt stop`
+ `rkt rm` of the sandbox. Prints the medians (and min/max) over N rounds (default 20) and the
VmRSS of a sandbox's monitor with one app running. Everything lives in a temporary directory
that is removed at the end; pods left by an interrupted run are stopped and removed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "builtin:busybox"
SLEEPER = "trap 'exit 0' TERM; while :; do sleep 0.1; done"


class Rkt:
    def __init__(self, data: Path, config: Path):
        self.base = [sys.executable, "-m", "rktnetes", "--dir", str(data), "--config-dir",
                     str(config)]

    def __call__(self, *args: str) -> str:
        p = subprocess.run([*self.base, *args], capture_output=True, text=True, cwd=ROOT)
        if p.returncode != 0:
            raise RuntimeError(f"rkt {' '.join(args[:3])} failed: {p.stderr.strip()[-300:]}")
        return p.stdout

    def timed(self, *args: str) -> tuple[float, str]:
        t = time.perf_counter()
        out = self(*args)
        return time.perf_counter() - t, out


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def one_round(rkt: Rkt, net: str) -> dict[str, float]:
    t = {}
    t["app sandbox"], out = rkt.timed("app", "sandbox", f"--net={net}")
    uuid = out.split()[-1]
    a, _ = rkt.timed("app", "add", uuid, IMAGE, "--name", "a", "--exec", "/bin/sh", "--", "-c",
                     SLEEPER, "---")
    b, _ = rkt.timed("app", "start", uuid, "--app", "a")
    t["app add"], t["app start"], t["app add+start"] = a, b, a + b
    t["app stop"], _ = rkt.timed("app", "stop", uuid, "--app", "a")
    t["app rm"], _ = rkt.timed("app", "rm", uuid, "--app", "a")
    s, _ = rkt.timed("stop", uuid)
    r, _ = rkt.timed("rm", uuid)
    t["stop"], t["rm"], t["stop+rm (sandbox)"] = s, r, s + r
    return t


def monitor_rss(rkt: Rkt, data: Path, net: str) -> int:
    uuid = rkt("app", "sandbox", f"--net={net}").split()[-1]
    try:
        rkt("app", "add", uuid, IMAGE, "--name", "a", "--exec", "/bin/sh", "--", "-c", SLEEPER,
            "---")
        rkt("app", "start", uuid, "--app", "a")
        time.sleep(0.5)
        st = json.loads((data / "pods" / "run" / uuid / "state.json").read_text())
        return rss_kb(st["monitor_pid"])
    finally:
        rkt("stop", "--force", uuid)
        rkt("rm", uuid)


def cleanup(rkt: Rkt) -> None:
    try:
        pods = json.loads(rkt("list", "--format", "json") or "[]")
        running = [p["uuid"] for p in pods if p["state"] == "running"]
        if running:
            rkt("stop", "--force", *running)
        rkt("gc", "--grace-period=0", "--expire-prepared=0")
    except RuntimeError as e:
        print(f"cleanup: {e}", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=20, help="rounds (default 20)")
    ap.add_argument("--net", default="none", help="the sandbox's network (default none)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-apps-", dir="/var/tmp"))
    data, config = tmp / "data", tmp / "config"
    config.mkdir()
    rkt = Rkt(data, config)
    try:
        rkt("fetch", "-q", IMAGE)
        one_round(rkt, args.net)  # warm-up: layer cache, page cache
        rounds = []
        for i in range(args.runs):
            rounds.append(one_round(rkt, args.net))
            print(f"\rround {i + 1}/{args.runs}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        rss = monitor_rss(rkt, data, args.net)
    finally:
        cleanup(rkt)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"rkt app latency, --net={args.net}, medians over {args.runs} rounds (seconds)")
    print(f"{'step':<20} {'median':>8} {'min':>8} {'max':>8}")
    for key in rounds[0]:
        xs = [r[key] for r in rounds]
        print(f"{key:<20} {statistics.median(xs):8.3f} {min(xs):8.3f} {max(xs):8.3f}")
    print(f"monitor VmRSS with one app running: {rss / 1024:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
