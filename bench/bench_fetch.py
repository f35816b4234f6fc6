"""Benchmark: pull + unpack one image from a local registry, `rkt fetch` vs `skopeo copy` + `umoci unpack`.

Builds a deterministic ~40 MB OCI image (the busybox layer plus layers of a few thousand small
files and a couple of larger random files), starts Debian's `docker-registry` on 127.0.0.1
(tests/registry_server.py), pushes the image, then for N rounds times, alternately:

  rkt:  rkt --dir FRESH --config-dir EMPTY fetch -q --insecure-options=http docker://ADDR/bench:1
  peer: skopeo copy --src-tls-verify=false docker://ADDR/bench:1 oci:FRESH:bench
        && umoci unpack --image FRESH:bench BUNDLE

Each round starts from empty directories, so both really download and unpack every layer.
Prints per-round times, medians, the rkt/peer ratio and peak RSS (from /usr/bin/time when
available, else getrusage(RUSAGE_CHILDREN) maxima). Everything (registry process, temp dirs)
is removed at the end, also on Ctrl-C or SIGTERM.

    .venv/bin/python bench/bench_fetch.py [--rounds N] [--baseline TREE] [--keep] [--profile OUT.pstats]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rktnetes.image import builder  # noqa: E402
from tests.registry_server import RegistryServer  # noqa: E402

SEED = 20240611
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def rkt_argv() -> list[str]:
    exe = Path(sys.executable).parent / "rkt"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "rktnetes"]


# -- the image -----------------------------------------------------------------------------------

def _ti(name: str, kind=tarfile.REGTYPE, mode=0o644, **kw) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime, ti.uid, ti.gid = kind, mode, builder.EPOCH, 0, 0
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


_WORDS = ("alpha beta gamma delta epsilon zeta theta lambda sigma omega config value "
          "import return module package install library source header static").split()


def _text(rng: random.Random, size: int) -> bytes:
    """Compressible, text-like content (as source trees and configs are)."""
    out, n = [], 0
    while n < size:
        w = rng.choice(_WORDS) + (" " if rng.random() < 0.85 else "\n")
        out.append(w)
        n += len(w)
    return "".join(out).encode()[:size]


def small_files_layer(rng: random.Random, top: str, count: int, with_links: bool) -> builder.Layer:
    entries: list = [_ti(top, tarfile.DIRTYPE, 0o755)]
    dirs = [f"{top}/d{i:03d}" for i in range(count // 40)]
    for d in dirs:
        entries.append(_ti(d, tarfile.DIRTYPE, 0o755))
    files = []
    for i in range(count):
        d = dirs[i % len(dirs)]
        name = f"{d}/f{i:05d}.{rng.choice(('py', 'txt', 'conf', 'h', 'json'))}"
        size = int(rng.lognormvariate(7.5, 1.0))  # median ~1.8 KB, a tail to ~50 KB
        size = max(16, min(size, 64 * 1024))
        entries.append((_ti(name, mode=rng.choice((0o644, 0o644, 0o755))), _text(rng, size)))
        files.append(name)
    if with_links:
        for i in range(0, len(files), 50):
            entries.append(_ti(f"{files[i]}.lnk", tarfile.SYMTYPE, 0o777,
                               linkname=os.path.basename(files[i])))
            entries.append(_ti(f"{files[i]}.hard", tarfile.LNKTYPE, 0o644, linkname=files[i]))
    return builder.tar_entries(entries)


def big_files_layer(rng: random.Random, sizes_mb: list[int]) -> builder.Layer:
    entries: list = [_ti("opt", tarfile.DIRTYPE, 0o755), _ti("opt/data", tarfile.DIRTYPE, 0o755)]
    for i, mb in enumerate(sizes_mb):
        entries.append((_ti(f"opt/data/blob{i}.bin"), rng.randbytes(mb << 20)))
    # a half-compressible file too (like a binary with tables)
    entries.append((_ti("opt/data/mixed.bin"),
                    b"".join(rng.randbytes(2048) + bytes(2048) for _ in range(1024))))
    return builder.tar_entries(entries)


def build_image(layout: Path, work: Path) -> tuple[int, int, int]:
    """Write the image to an OCI layout; returns (layers, compressed bytes, uncompressed bytes)."""
    rng = random.Random(SEED)
    spec = builder.default_image_spec(work)
    spec.layers += [
        small_files_layer(rng, "usr/lib/app", 3000, with_links=True),
        small_files_layer(rng, "usr/share/doc/app", 2000, with_links=False),
        big_files_layer(rng, [16, 8]),
    ]
    builder.OCILayout(layout).add_image(spec, "1")
    # uncompressed size: the diff_id covers the tar; recompute length cheaply from gzip trailer
    raw = sum(int.from_bytes(layer.blob[-4:], "little") for layer in spec.layers)
    return len(spec.layers), sum(len(layer.blob) for layer in spec.layers), raw


# -- measuring ------------------------------------------------------------------------------------

class Timed:
    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0          # user + sys seconds of the command(s)
        self.peak_kb = 0
        self.parts: list[float] = []   # wall per command

    def run(self, argv: list[str], env: dict | None = None) -> None:
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        before = ru0.ru_maxrss
        tfile = None
        if GNU_TIME:
            fd, tfile = tempfile.mkstemp(prefix="bench-time-")
            os.close(fd)
            argv = [GNU_TIME, "-f", "%M", "-o", tfile, *argv]
        os.sync()  # the previous run's dirty pages must not be written back on this run's clock
        t0 = time.perf_counter()
        # Own process group, so an interrupt can stop the command and everything it started
        # (/usr/bin/time's child, skopeo's helpers) before the temp dirs are removed.
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                                start_new_session=True)
        try:
            _, err = proc.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if tfile:
                os.unlink(tfile)
            raise
        p = subprocess.CompletedProcess(argv, proc.returncode, None, err)
        wall = time.perf_counter() - t0
        self.wall += wall
        self.parts.append(wall)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu += (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        try:
            if p.returncode != 0:
                raise SystemExit(f"command failed ({p.returncode}): {' '.join(argv)}\n"
                                 f"{p.stderr.decode(errors='replace')[-2000:]}")
            if tfile:
                lines = Path(tfile).read_text().split()
                self.peak_kb = max(self.peak_kb, int(lines[-1]))
            else:  # RUSAGE_CHILDREN only reports the max over all children so far
                after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                self.peak_kb = max(self.peak_kb, after if after > before else 0)
        finally:
            if tfile:
                os.unlink(tfile)


def du(path: Path) -> tuple[int, int]:
    files = size = 0
    for root, _, names in os.walk(path):
        for n in names:
            st = os.lstat(os.path.join(root, n))
            files += 1
            size += st.st_size
    return files, size


def run_rkt(tmp: Path, image: str, rnd: int, profile: str | None,
            tree: Path | None = None) -> Timed:
    """One fetch by this checkout's rkt, or by the one in `tree` (--baseline)."""
    data = tmp / f"rkt-{rnd}{'-base' if tree else ''}"
    conf = tmp / "rkt-config"
    conf.mkdir(exist_ok=True)
    t = Timed()
    argv = rkt_argv()
    env = None
    if tree is not None:
        argv = [sys.executable, "-m", "rktnetes"]
        env = {**os.environ, "PYTHONPATH": str(tree)}
    if profile:
        argv = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "rktnetes"]
    t.run([*argv, "--dir", str(data), "--config-dir", str(conf), "fetch", "-q",
           "--insecure-options=http", f"docker://{image}"], env=env)
    t.files = du(data)
    shutil.rmtree(data)
    return t


def run_peer(tmp: Path, image: str, rnd: int, env: dict) -> Timed:
    layout, bundle = tmp / f"oci-{rnd}", tmp / f"bundle-{rnd}"
    t = Timed()
    t.run(["skopeo", "--insecure-policy", "copy", "-q", "--src-tls-verify=false",
           f"docker://{image}", f"oci:{layout}:bench"], env=env)
    t.run(["umoci", "unpack", "--image", f"{layout}:bench", str(bundle)], env=env)
    t.files = du(bundle / "rootfs")
    shutil.rmtree(layout)
    shutil.rmtree(bundle)
    return t


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="rounds of each (default 5)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (for debugging)")
    ap.add_argument("--baseline", metavar="TREE", type=Path,
                    help="also time another checkout of rktnetes (e.g. a `git worktree` of the "
                    "commit before a change) in the same rounds, and print this one's ratio "
                    "to it")
    ap.add_argument("--profile", metavar="OUT",
                    help="also run one extra rkt fetch under cProfile, writing OUT (pstats)")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    for tool in ("skopeo", "umoci"):
        if not shutil.which(tool):
            print(f"bench_fetch: {tool} not found", file=sys.stderr)
            return 2

    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    tmp = Path(tempfile.mkdtemp(prefix="rkt-bench-fetch-", dir="/var/tmp"))
    registry = None
    try:
        t0 = time.perf_counter()
        layers, csize, usize = build_image(tmp / "src-layout", tmp / "build")
        print(f"image: {layers} layers, {csize / 1e6:.1f} MB compressed, "
              f"{usize / 1e6:.1f} MB uncompressed (built in {time.perf_counter() - t0:.1f}s)")
        (tmp / "registry").mkdir()
        registry = RegistryServer(tmp / "registry").start()
        image = registry.push(tmp / "src-layout", "1", "bench:1")
        env = {**os.environ, "REGISTRY_AUTH_FILE": str(tmp / "no-auth.json")}
        print(f"registry: {registry.address}, image {image}; rounds: {args.rounds} each, alternating")
        print(f"rkt:  {' '.join(rkt_argv())} --dir FRESH fetch -q --insecure-options=http docker://{image}")
        print(f"peer: skopeo copy docker://{image} oci:FRESH:bench && umoci unpack --image FRESH:bench BUNDLE")
        print()

        if args.baseline:
            print(f"base: PYTHONPATH={args.baseline} python -m rktnetes ... (the same fetch)")
        rkt_t, peer_t, rkt_rss, peer_rss, rkt_cpu, peer_cpu = [], [], [], [], [], []
        base_t, base_cpu = [], []
        print(f"{'round':>5}  {'rkt s':>7}  {'peer s':>7}  {'(skopeo+umoci)':>14}  {'rkt cpu':>7}  "
              f"{'peer cpu':>8}  {'rkt RSS MB':>10}  {'peer RSS MB':>11}")
        for rnd in range(args.rounds):
            # alternate which goes first, so neither always benefits from a warm cache
            order = ("rkt", "peer") if rnd % 2 == 0 else ("peer", "rkt")
            if args.baseline:
                order = ("base", *order) if rnd % 2 else (*order, "base")
            res = {}
            for which in order:
                res[which] = (run_rkt(tmp, image, rnd, None) if which == "rkt"
                              else run_rkt(tmp, image, rnd, None, args.baseline)
                              if which == "base" else run_peer(tmp, image, rnd, env))
            r, p = res["rkt"], res["peer"]
            rkt_t.append(r.wall)
            peer_t.append(p.wall)
            rkt_cpu.append(r.cpu)
            peer_cpu.append(p.cpu)
            rkt_rss.append(r.peak_kb)
            peer_rss.append(p.peak_kb)
            if rnd == 0:
                files_note = (f"(rkt layer cache: {r.files[0]} files {r.files[1] / 1e6:.1f} MB; "
                              f"umoci rootfs: {p.files[0]} files {p.files[1] / 1e6:.1f} MB)")
            if args.baseline:
                base_t.append(res["base"].wall)
                base_cpu.append(res["base"].cpu)
            split = f"{p.parts[0]:.2f}+{p.parts[1]:.2f}"
            print(f"{rnd + 1:>5}  {r.wall:7.2f}  {p.wall:7.2f}  {split:>14}  {r.cpu:7.2f}  {p.cpu:8.2f}  "
                  f"{r.peak_kb / 1024:10.1f}  {p.peak_kb / 1024:11.1f}", flush=True)
        print(files_note)
        mr, mp = statistics.median(rkt_t), statistics.median(peer_t)
        print()
        print(f"median wall: rkt {mr:.2f}s, skopeo+umoci {mp:.2f}s")
        print(f"ratio rkt/peer: {mr / mp:.2f}x")
        cr, cp = statistics.median(rkt_cpu), statistics.median(peer_cpu)
        print(f"median CPU (user+sys): rkt {cr:.2f}s, skopeo+umoci {cp:.2f}s, ratio {cr / cp:.2f}x")
        if args.baseline:
            mb, cb = statistics.median(base_t), statistics.median(base_cpu)
            print(f"baseline {args.baseline}: median wall {mb:.2f}s, CPU {cb:.2f}s; this "
                  f"checkout / baseline: wall {mr / mb:.2f}x, CPU {cr / cb:.2f}x "
                  f"(per round: {', '.join(f'{a:.2f}/{b:.2f}' for a, b in zip(rkt_t, base_t))})")
        rss_src = "/usr/bin/time %M" if GNU_TIME else "getrusage RUSAGE_CHILDREN"
        print(f"peak RSS ({rss_src}; peer = max of skopeo, umoci): rkt {max(rkt_rss) / 1024:.1f} MB, "
              f"peer {max(peer_rss) / 1024:.1f} MB")
        if args.profile:
            run_rkt(tmp, image, 9999, args.profile)
            print(f"profile of one rkt fetch written to {args.profile}")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if registry is not None:
            registry.stop()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
