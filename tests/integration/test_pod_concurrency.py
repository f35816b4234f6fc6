"""20 `rkt run` at once beside `rkt gc` and `rkt list` loops: every pod runs and exits with its
own exit code, none is lost, no command fails."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from .pod_helpers import IMAGE, assert_nothing_left, with_image

pytestmark = [pytest.mark.root, pytest.mark.containers]

N = 20


@pytest.mark.parametrize("flavor", ["default", "fly"])
def test_many_runs_beside_gc_and_list(rkt, flavor):
    r = with_image(rkt)
    stop = threading.Event()
    failures: list[str] = []

    def loop(*args: str) -> None:
        while not stop.is_set():
            p = subprocess.run(r.argv(*args), capture_output=True, text=True, timeout=120)
            if p.returncode != 0 or "Traceback" in p.stderr:
                failures.append(f"rkt {' '.join(args)}: {p.returncode}: {p.stderr.strip()}")
            time.sleep(0.05)

    loops = [threading.Thread(target=loop, args=a) for a in
             (("gc",), ("gc", "--expire-prepared=1h"), ("list",), ("list", "--format", "json"))]
    for t in loops:
        t.start()
    try:
        procs = []
        for i in range(N):
            uf = r.data.parent / f"uuid-{i}"
            procs.append((i, uf, subprocess.Popen(
                r.argv("run", f"--stage1={flavor}", "--uuid-file-save", str(uf), IMAGE,
                       "--exec", "/bin/sh", "--", "-c", f"echo pod-{i}; sleep 0.5; exit {i % 5}"),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
        results = [(i, uf, *p.communicate(timeout=300), p.returncode) for i, uf, p in procs]
    finally:
        stop.set()
        for t in loops:
            t.join(timeout=120)
    for i, _uf, out, err, rc in results:
        assert rc == i % 5, f"pod {i}: exit {rc}: {err}"
        assert f"pod-{i}" in out, f"pod {i}: output {out!r}"
    assert not failures, failures[:5]
    uuids = [uf.read_text().strip() for _i, uf, *_ in results]
    listed = {p["uuid"]: p for p in json.loads(r("list", "--format", "json").stdout)}
    for i, u in enumerate(uuids):
        assert u in listed, f"pod {i} lost"
        assert listed[u]["state"] in ("exited", "exited garbage")
        assert listed[u]["apps"][0]["exit_code"] == i % 5
    r("gc", "--grace-period=0")
    assert_nothing_left(r, uuids)
