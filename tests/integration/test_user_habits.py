"""What users of other runtimes type, and the README's own examples: each works, or says in
one line what rkt understood and how to say it."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from rktnetes.image import builder

from .pod_helpers import IMAGE, assert_nothing_left, with_image

pytestmark = [pytest.mark.root, pytest.mark.containers]


@pytest.fixture
def r(rkt):
    return with_image(rkt)


def test_a_command_after_the_image_is_named_and_the_way_shown(r):
    """podman's `run IMAGE CMD ARGS`: rkt reads `echo` as a second image; it says so."""
    res = r.fails("run", IMAGE, "echo", "hi")
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1 and res.returncode == 2
    assert "'echo' was read as an image" in line
    assert f"rkt run {IMAGE} --exec echo -- hi ---" in line
    assert "hi" in r("run", IMAGE, "--exec", "echo", "--", "hi", "---").stdout
    r("gc", "--grace-period=0")
    assert_nothing_left(r)


def _oci_archive(tmp_path: Path, ref_name: str) -> Path:
    lay = builder.OCILayout(tmp_path / "layout")
    top = builder.tar_entries([_file("hello.txt", b"from the archive\n")])
    base = builder.default_image_spec(tmp_path / "work").layers[0]
    lay.add_image(builder.ImageSpec(layers=[base, top], config={"Cmd": ["/bin/sh"]}), ref_name)
    out = tmp_path / "img.tar"
    with tarfile.open(out, "w") as tf:
        for p in sorted(lay.path.rglob("*")):
            tf.add(p, arcname=str(p.relative_to(lay.path)), recursive=False)
    return out


def _file(name: str, data: bytes):
    import io

    ti = tarfile.TarInfo(name)
    ti.size, ti.mode = len(data), 0o644
    return ti, data


def test_an_archive_ref_name_is_a_local_name(r, tmp_path):
    """An image loaded with the ref name `myimg` is `rkt run myimg` (as podman names it
    localhost/myimg), found in the store before any registry is asked."""
    archive = _oci_archive(tmp_path, "myimg")
    r("fetch", f"oci-archive:{archive}")
    assert "localhost/myimg:latest" in r("image", "list", "--format", "json").stdout
    for name in ("myimg", "myimg:latest", "localhost/myimg"):
        out = r("run", name, "--exec", "/bin/cat", "--", "/hello.txt", "---").stdout
        assert "from the archive" in out, name
    r("gc", "--grace-period=0")
    assert_nothing_left(r)


def test_readme_sandbox_web_example(r):
    """The README's mutable-pod example, as written (--net=none aside: no bridge needed)."""
    uuid = r("app", "sandbox", "--net=none").stdout.strip()
    try:
        r("app", "add", uuid, IMAGE, "--name=web", "--exec", "/usr/sbin/httpd", "--", "-f",
          "-p", "80", "-h", "/var/www", "---")
        r("app", "start", uuid, "--app=web")
        out = r("app", "exec", uuid, "--app=web", "--", "wget", "-qO-",
                "http://127.0.0.1/").stdout
        assert "hello from a rktnetes pod" in out
    finally:
        r("stop", uuid)
        r("rm", uuid)
    assert_nothing_left(r, [uuid])
