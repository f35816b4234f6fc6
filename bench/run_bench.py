#!/usr/bin/env python3
"""Pod start-to-exit latency against its peers, measured in one run, plus monitor memory.

    sudo .venv/bin/python bench/run_bench.py [-n RUNS] [--pods 5]

Measures (medians over N runs): `rkt run --net=none IMAGE true` (the whole CLI: prepare, run,
monitor, runc, cleanup), bare `runc run` of the image extracted into a bundle twice over: with
runc's default spec (no seccomp profile, no cgroup path), and with the very config.json rkt
writes for the app (its seccomp profile, cgroup, masks and mounts; new namespaces in place of
the pod's), `podman run --rm --network=none` (cgroupfs manager, private storage), and the
floor of any Python front end (FLOOR). Prints the ratios, then the VmRSS of the monitors of
`--pods` detached sleeping pods, and that of a foreground `rkt run` (which is its pod's monitor
itself).
Everything it creates lives in a temporary directory it removes; pods are stopped and removed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from rktnetes.supervise.helper import IDLE as HELPER_IDLE  # noqa: E402
IMAGE = "builtin:busybox"
# podman raises RLIMIT_NOFILE/NPROC by default, which needs CAP_SYS_RESOURCE (this kind of VM
# lacks it, even to keep the current values): give it lower limits, which anyone may set
ULIMITS = ["--ulimit=nofile=1024:1024", "--ulimit=nproc=4096:4096"]
CGROUP_PARENT = "rktnetes-bench"
# The least any Python front end can do: start the interpreter at its leanest (-I -S: no site,
# no environment), load rkt's config.json for the app, write it into a bundle, exec `runc run`
FLOOR = """import json, os, sys
template, bundle, root, cgroup, cid = sys.argv[1:]
with open(template) as f:
    spec = json.load(f)
spec["linux"]["cgroupsPath"] = cgroup
with open(os.path.join(bundle, "config.json"), "w") as f:
    json.dump(spec, f)
os.execvp("runc", ["runc", "--root", root, "run", "--bundle", bundle, cid])
"""


def timed(argv: list[str], **kw) -> float:
    t = time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])}... failed: {p.stderr.decode()[-300:]}")
    return dt


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


class Bench:
    def __init__(self, tmp: Path, runs: int):
        self.tmp, self.runs = tmp, runs
        self.rkt = [sys.executable, "-m", "rktnetes", "--dir", str(tmp / "data"),
                    "--config-dir", str(tmp / "config")]
        (tmp / "config").mkdir()
        self.podman = ["podman", "--root", str(tmp / "podman/root"),
                       "--runroot", str(tmp / "podman/run"), "--cgroup-manager=cgroupfs",
                       "--events-backend=file"]

    def sh(self, argv: list[str], **kw) -> str:
        return subprocess.run(argv, check=True, capture_output=True, text=True, **kw).stdout

    def prepare(self) -> None:
        # bytecode once, as an installed package has it (the environment may forbid writing it)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "rktnetes")],
                       check=True, stdout=subprocess.DEVNULL)
        self.sh(self.rkt + ["fetch", IMAGE])
        # bare runc: the same image extracted, runc's default spec running /bin/true
        bundle = self.tmp / "bundle"
        bundle.mkdir()
        self.sh(self.rkt + ["image", "extract", IMAGE, str(bundle)])  # writes bundle/rootfs
        for extra in ("config", "manifest"):
            (bundle / extra).unlink(missing_ok=True)
        self.sh(["runc", "spec", "--bundle", str(bundle)])
        spec = json.loads((bundle / "config.json").read_text())
        spec["process"]["terminal"] = False
        spec["process"]["args"] = ["/bin/true"]
        (bundle / "config.json").write_text(json.dumps(spec))
        self.bundle = bundle
        self.spec_bundle = self.rkt_spec_bundle(bundle / "rootfs")
        # podman: the same image through an OCI archive
        archive = self.tmp / "image.tar"
        self.sh(self.rkt + ["image", "export", IMAGE, str(archive)])
        out = self.sh(self.podman + ["load", "-i", str(archive)])
        self.podman_image = out.strip().splitlines()[-1].split(":", 1)[-1].strip()

    def rkt_spec_bundle(self, rootfs: Path) -> Path:
        """A bundle with the config.json rkt wrote for a pod's app, made standalone: the
        extracted rootfs, /bin/true, new namespaces instead of the (gone) infra's, copies of
        the pod's files it bind-mounts; its cgroup path is set per run (`spec_config`)."""
        f = self.tmp / "uuid-spec"
        self.sh(self.rkt + ["run", "--detach", "--net=none", f"--uuid-file-save={f}", IMAGE,
                            "--exec", "/bin/sleep", "--", "600"])
        uuid = f.read_text().strip()
        pod_dir = self.tmp / "data/pods/run" / uuid
        (cfg,) = pod_dir.glob("apps/*/bundle/config.json")
        spec = json.loads(cfg.read_text())
        files = self.tmp / "spec-files"
        files.mkdir()
        for m in spec["mounts"]:
            src = Path(m["source"])
            if src.is_relative_to(pod_dir):
                dst = files / src.name
                if src.is_dir():
                    dst.mkdir()
                else:
                    shutil.copyfile(src, dst)
                m["source"] = str(dst)
        self.sh(self.rkt + ["stop", "--force", uuid])
        self.sh(self.rkt + ["rm", uuid])
        spec["root"]["path"] = str(rootfs)
        spec["process"]["args"] = ["/bin/true"]
        spec["linux"]["namespaces"] = [{"type": n["type"]} for n in spec["linux"]["namespaces"]]
        bundle = self.tmp / "spec-bundle"
        bundle.mkdir()
        self.spec = spec
        self.spec_template = self.tmp / "spec-template.json"
        self.spec_template.write_text(json.dumps(spec))
        self.floor_bundle = self.tmp / "floor-bundle"
        self.floor_bundle.mkdir()
        return bundle

    def spec_config(self, i: int) -> None:
        self.spec["linux"]["cgroupsPath"] = f"/{CGROUP_PARENT}/{i}"  # runc removes it at exit
        (self.spec_bundle / "config.json").write_text(json.dumps(self.spec))

    def measure(self) -> dict[str, float]:
        res: dict[str, list[float]] = {"rkt": [], "runc": [], "runc-spec": [], "floor": [],
                                       "podman": []}
        runc_root = str(self.tmp / "runc")
        for i in range(self.runs):  # interleaved, so load drifts hit all alike
            res["rkt"].append(timed(self.rkt + ["run", "--net=none", IMAGE, "--exec", "/bin/true"]))
            res["runc"].append(timed(["runc", "--root", runc_root, "run", "--bundle",
                                      str(self.bundle), f"bench-{i}"]))
            self.spec_config(i)
            res["runc-spec"].append(timed(["runc", "--root", runc_root, "run", "--bundle",
                                           str(self.spec_bundle), f"bench-spec-{i}"]))
            res["floor"].append(timed([sys.executable, "-I", "-S", "-c", FLOOR,
                                       str(self.spec_template), str(self.floor_bundle), runc_root,
                                       f"/{CGROUP_PARENT}/floor-{i}", f"bench-floor-{i}"]))
            res["podman"].append(timed(self.podman + ["run", "--rm", "--network=none", *ULIMITS,
                                                      self.podman_image, "true"]))
        return {k: median_ms(v) for k, v in res.items()}

    def monitor_rss(self, pods: int) -> list[int]:
        uuids = []
        for i in range(pods):
            f = self.tmp / f"uuid{i}"
            self.sh(self.rkt + ["run", "--detach", "--net=none", f"--uuid-file-save={f}", IMAGE,
                                "--exec", "/bin/sleep", "--", "600"])
            uuids.append(f.read_text().strip())
        # a monitor's stage1 helper (rktnetes.supervise.helper) exits once idle: measure the
        # steady state, and check that no helper is left
        time.sleep(HELPER_IDLE + 0.5)
        rss = []
        for u in uuids:
            st = json.loads((self.tmp / "data/pods/run" / u / "state.json").read_text())
            with open(f"/proc/{st['monitor_pid']}/status") as f:
                kb = next(int(x.split()[1]) for x in f if x.startswith("VmRSS:"))
            rss.append(kb)
            kids = subprocess.run(["pgrep", "-P", str(st["monitor_pid"]), "python"],
                                  capture_output=True, text=True).stdout.split()
            if kids:
                raise RuntimeError(f"pod {u}: the monitor still has a helper ({kids})")
        self.sh(self.rkt + ["stop", "--force", *uuids])
        self.wait_gone(uuids)
        return rss

    def foreground_rss(self) -> int:
        """VmRSS of a foreground `rkt run` process once its pod runs (it is the monitor)."""
        f = self.tmp / "uuid-fg"
        proc = subprocess.Popen(self.rkt + ["run", "--net=none", f"--uuid-file-save={f}", IMAGE,
                                            "--exec", "/bin/sleep", "--", "600"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    u = f.read_text().strip()
                    st = json.loads((self.tmp / "data/pods/run" / u / "state.json").read_text())
                    if st.get("ready"):
                        break
                except (OSError, ValueError):
                    pass
                time.sleep(0.05)
            else:
                raise RuntimeError("the foreground pod never became ready")
            with open(f"/proc/{proc.pid}/status") as s:
                kb = next(int(x.split()[1]) for x in s if x.startswith("VmRSS:"))
            self.sh(self.rkt + ["stop", "--force", u])
            proc.wait(30)
            return kb
        finally:
            if proc.poll() is None:
                proc.kill()

    def wait_gone(self, uuids: list[str]) -> None:
        for u in uuids:
            deadline = time.monotonic() + 30
            while (self.tmp / "data/pods/run" / u).exists() and time.monotonic() < deadline:
                time.sleep(0.05)

    def cleanup(self) -> None:
        subprocess.run(self.rkt + ["gc", "--grace-period=0s"], capture_output=True)
        subprocess.run(self.podman + ["rm", "-a", "-f"], capture_output=True)
        subprocess.run(self.podman + ["rmi", "-a", "-f"], capture_output=True)
        subprocess.run(self.podman + ["system", "reset", "-f"], capture_output=True)
        for parent in [*Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}"),
                       Path("/sys/fs/cgroup", CGROUP_PARENT)]:
            try:
                parent.rmdir()
            except OSError:
                pass
        for mp in sorted((line.split()[1] for line in open("/proc/self/mounts")
                          if str(self.tmp) in line.split()[1]), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--runs", type=int, default=10)
    ap.add_argument("--pods", type=int, default=5)
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("run_bench: needs root", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="rkt-bench-", dir="/var/tmp"))
    b = Bench(tmp, a.runs)
    try:
        b.prepare()
        med = b.measure()
        print(f"start-to-exit, median of {a.runs} runs (load average {os.getloadavg()[0]:.1f}):")
        for k, label in (("rkt", "rkt run --net=none IMAGE true"),
                         ("runc", "runc run (runc's default spec)"),
                         ("runc-spec", "runc run (rkt's config.json)"),
                         ("floor", "python -I -S + that config + runc run"),
                         ("podman", "podman run --rm --network=none")):
            print(f"  {label:36s} {med[k]:8.1f} ms")
        for peer, aim in (("runc", 4.0), ("runc-spec", 4.0), ("podman", 0.5)):
            ratio = med["rkt"] / med[peer]
            print(f"  rkt / {peer:10s}= {ratio:.2f}x   {'OK' if ratio < aim else 'MISSED'} "
                  f"(aim < {aim:g}x)")
        print(f"  floor / podman = {med['floor'] / med['podman']:.2f}x: what a Python front end "
              f"that does nothing but write rkt's config and run runc costs")
        rss = b.monitor_rss(a.pods)
        print(f"monitor VmRSS over {len(rss)} running pods: median {statistics.median(rss)} kB, "
              f"max {max(rss)} kB (steady state: no stage1 helper left)")
        print(f"foreground `rkt run` (its pod's monitor) VmRSS: {b.foreground_rss()} kB")
    finally:
        b.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
