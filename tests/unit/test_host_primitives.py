"""The ground floor and the store's bounds on their own: killing a process tree that keeps
forking, paths in a root with and without openat2, mount points never made on a host mount,
and what an unpack is charged (sparse files, entries, the default limit); an interface looked
up in another network namespace."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

from rktnetes.host import inroot, procs
from rktnetes.image.unpack import OVERLAY, unpack_layer
from rktnetes.store.limits import (AUTO_FLOOR, AUTO_RATIO, ENTRY_COST, ExpansionBudget,
                                   LayerTooLarge, UnpackLimits)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def test_kill_tree_leaves_nothing_of_a_worker_that_keeps_starting_things(tmp_path):
    """A worker that starts its next step as soon as its child dies (as attach_networks runs
    DEL after a failed ADD): nothing of it may survive, stopped, reparented or new."""
    marker = f"{os.getpid()}-{time.time_ns()}"   # in the environment of all it starts
    code = textwrap.dedent(f"""
        import os, subprocess, time
        if os.fork() == 0:              # the worker, under the helper
            while True:
                subprocess.run(["sleep", "1000"])
        os.wait()
    """)
    for _ in range(5):
        helper = subprocess.Popen([sys.executable, "-c", code],
                                  env={**os.environ, "RKT_KILL_TREE_MARK": marker})
        deadline = time.monotonic() + 10
        while not _marked(marker) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _marked(marker)
        procs.kill_tree(helper.pid)
        helper.wait()
        deadline = time.monotonic() + 5
        while _marked(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _marked(marker), "a process of the tree survived"


def _marked(marker: str) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if f"RKT_KILL_TREE_MARK={marker}".encode() in Path(f"/proc/{pid}/environ").read_bytes() \
                    and int(pid) != os.getpid():
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                        out.append(int(pid))
        except OSError:
            pass
    return out


def test_alive_and_signal_process_never_name_another_process():
    p = subprocess.Popen(["sleep", "30"])
    try:
        started = procs.starttime(p.pid)
        assert procs.alive(p.pid, started, procs.boot_id())
        assert not procs.alive(p.pid, started + 1)             # another process's pid
        assert not procs.alive(p.pid, started, "another-boot")
        assert not procs.signal_process(p.pid, started + 1, signal.SIGTERM)
        assert p.poll() is None
        assert procs.signal_process(p.pid, started, signal.SIGTERM)
        assert p.wait(5) == -signal.SIGTERM
    finally:
        p.kill()


@pytest.mark.parametrize("fallback", [False, True])
def test_inroot_rules_with_and_without_openat2(tmp_path, fallback):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("x")
    os.symlink("etc", root / "link")
    inroot._openat2_works = False if fallback else None
    fd = inroot.open_root(root)
    try:
        for path in ("etc/passwd/", "etc/passwd/."):      # a trailing / wants a directory
            with pytest.raises(NotADirectoryError):
                inroot.open_in(fd, path)
        got = inroot.open_in(fd, "link/", follow=False)      # ... and follows a final link
        assert os.readlink(inroot.fd_path(got)) == str(root / "etc")
        os.close(got)
        with pytest.raises(OSError) as e:                    # beneath: `..` at the top is EXDEV
            inroot.open_in(fd, "../etc", symlinks=False)
        assert e.value.errno == 18
    finally:
        os.close(fd)
        inroot._openat2_works = None


@needs_root
def test_mount_points_are_never_made_on_a_host_mount(tmp_path):
    """With the host's /dev already in a fly rootfs, an image's `/x -> /dev` must not let a
    volume's mount point `/x/foo` be created on the host's devtmpfs."""
    from rktnetes.host import mounts

    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    os.symlink("/dev", root / "x")
    mounts.mount("tmpfs", str(root / "dev"), "tmpfs")      # stands for the host's /dev
    fd = inroot.open_root(root)
    try:
        with pytest.raises(PermissionError, match="not the image's"):
            inroot.make_dirs_in(fd, "/x/foo")
        with pytest.raises(PermissionError):
            inroot.make_file_in(fd, "/x/bar")
        assert os.listdir(root / "dev") == []
        os.mkdir(root / "dev/there")                          # what is there may be mounted on
        os.close(inroot.make_dirs_in(fd, "/x/there"))
    finally:
        os.close(fd)
        mounts.umount(str(root / "dev"))


# -- what an unpack is charged --------------------------------------------------------------

def _sparse_tar(real: int, version: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("big")
        ti.size = 1
        ti.pax_headers = ({"GNU.sparse.size": str(real), "GNU.sparse.numblocks": "1",
                           "GNU.sparse.offset": "0", "GNU.sparse.numbytes": "1"}
                          if version == "0.0" else
                          {"GNU.sparse.size": str(real), "GNU.sparse.map": "0,1"})
        tf.addfile(ti, io.BytesIO(b"x"))
    return buf.getvalue()


@pytest.mark.parametrize("version", ["0.0", "0.1"])
def test_sparse_holes_are_charged_before_they_are_written(tmp_path, version):
    limits = UnpackLimits(64 << 20, 0)
    ok = tmp_path / "ok"
    ok.mkdir()
    unpack_layer(io.BytesIO(_sparse_tar(50 << 20, version)), ok, "", OVERLAY,
                 budget=ExpansionBudget(limits, 100, ok, "t"))
    assert (ok / "big").stat().st_size == 50 << 20
    bomb = tmp_path / "bomb"
    bomb.mkdir()
    budget = ExpansionBudget(limits, 100, bomb, "t")
    with pytest.raises(LayerTooLarge, match="expands past 64.0 MiB"):
        unpack_layer(io.BytesIO(_sparse_tar(100 << 30, version)), bomb, "", OVERLAY,
                     budget=budget)
    assert not (bomb / "big").exists() or (bomb / "big").stat().st_size == 0


def test_entries_cost_disk_beyond_their_headers(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for i in range(3000):
            ti = tarfile.TarInfo(f"d{i}")
            ti.type = tarfile.DIRTYPE
            tf.addfile(ti)
    raw = buf.getvalue()
    budget = ExpansionBudget(UnpackLimits(1 << 30, 0), 100, tmp_path, "t")
    unpack_layer(io.BytesIO(raw), tmp_path, "", OVERLAY, budget=budget)
    assert budget.used >= len(raw) + 3000 * ENTRY_COST
    assert len(os.listdir(tmp_path)) == 3000           # and within the fd limit


def test_the_default_limit(tmp_path):
    auto = UnpackLimits()
    assert auto.for_layer(1 << 20) == AUTO_FLOOR            # a small layer: the floor
    assert auto.for_layer(100 << 20) == AUTO_RATIO * (100 << 20)
    assert UnpackLimits(5).for_layer(1 << 40) == 5          # set: that, whatever the size
    with pytest.raises(LayerTooLarge, match="would stay free"):
        ExpansionBudget(UnpackLimits(0, 1 << 62), 1, tmp_path, "t")


@needs_root
def test_has_interface_looks_in_that_namespace_only():
    """The lookup joins the namespace in a thread of its own: the caller stays where it was."""
    from rktnetes.host.namespaces import has_interface

    name = f"hi{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        ns = f"/run/netns/{name}"
        before = os.readlink("/proc/thread-self/ns/net")
        subprocess.run(["ip", "-n", name, "link", "add", "probe0", "type", "veth",
                        "peer", "name", "probe1"], check=True)
        assert has_interface(ns, "probe0") and has_interface(ns, "lo")
        assert not has_interface(ns, "eth0")
        assert not has_interface("/proc/self/ns/net", "probe0")   # not on the host
        assert not has_interface(str(Path(ns).with_name("missing")), "lo")
        assert os.readlink("/proc/thread-self/ns/net") == before
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_dirwatch_wakes_on_a_rename_and_reuses_its_descriptor(tmp_path):
    """A waiter wakes when a file is renamed into a watched directory (as every state write
    is), sleeps out its timeout otherwise; a descriptor goes back to the pool on close, and
    its next user hears nothing of the directories it watched before."""
    import threading

    from rktnetes.host import dirwatch

    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    with dirwatch.DirWatch([old, tmp_path / "missing"]) as w:
        fd = w.fd
        t = time.monotonic()
        assert not w.wait(0.05) and time.monotonic() - t >= 0.04
        (old / ".tmp").write_text("x")
        timer = threading.Timer(0.05, os.rename, (old / ".tmp", old / "state.json"))
        w.wait(0)     # the write of .tmp, seen
        timer.start()
        t = time.monotonic()
        assert w.wait(5) and time.monotonic() - t < 1
    assert fd in dirwatch._pool
    with dirwatch.DirWatch([new]) as w2:
        assert w2.fd == fd
        (old / "other").write_text("y")
        assert not w2.wait(0.05)
        (new / "mine").write_text("z")
        assert w2.wait(1)
