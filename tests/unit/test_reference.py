"""Image reference parsing: Docker Hub defaults, registries, digests, path transports."""

import re

import pytest

from rktnetes.errors import ReferenceError_
from rktnetes.image import reference as refs

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, normalized", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("docker://busybox", "docker.io/library/busybox:latest"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("user/app:v1", "docker.io/user/app:v1"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/busybox", "docker.io/library/busybox:latest"),
    ("quay.io/coreos/etcd:v3.5", "quay.io/coreos/etcd:v3.5"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/app", "localhost:5000/app:latest"),
    ("127.0.0.1:5000/x/y:t", "127.0.0.1:5000/x/y:t"),
    (f"127.0.0.1:5000/x/y@{D}", f"127.0.0.1:5000/x/y@{D}"),
    (f"docker://registry.k8s.io/pause:3.9@{D}", f"registry.k8s.io/pause@{D}"),
    ("a.b/c__d/e-f.g_h:T_1.2-x", "a.b/c__d/e-f.g_h:T_1.2-x"),
])
def test_docker_references(text, normalized):
    ref = refs.parse(text)
    assert ref.transport == "docker"
    assert ref.normalized() == normalized
    assert refs.candidates(text) == [normalized]


def test_parts():
    ref = refs.parse(f"127.0.0.1:5000/x/y:t@{D}")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == ("127.0.0.1:5000", "x/y", "t", D)
    assert ref.manifest_ref == D
    assert refs.parse("busybox").manifest_ref == "latest"
    assert ref.name == "127.0.0.1:5000/x/y"


@pytest.mark.parametrize("text, transport, path, ref", [
    ("oci:/srv/layout", "oci", "/srv/layout", ""),
    ("oci:/srv/layout:v1", "oci", "/srv/layout", "v1"),
    ("oci-archive:/tmp/img.tar", "oci-archive", "/tmp/img.tar", ""),
    ("oci-archive:/tmp/img.tar:latest", "oci-archive", "/tmp/img.tar", "latest"),
    ("docker-archive:/tmp/saved.tar", "docker-archive", "/tmp/saved.tar", ""),
])
def test_path_transports(text, transport, path, ref):
    r = refs.parse(text)
    assert (r.transport, r.path, r.ref) == (transport, path, ref)
    assert r.normalized() == text


def test_relative_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert refs.parse("oci:layout:v1").normalized() == f"oci:{tmp_path}/layout:v1"


def test_builtin():
    r = refs.parse("builtin:busybox")
    assert r.transport == "builtin" and r.normalized() == "builtin:busybox"


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("Busybox", "lowercase"),
    ("http://example.com/x", "unsupported transport"),
    ("dir:/tmp/x", "unsupported transport"),
    ("foo::bar", "invalid image reference"),
    ("x/y@sha256:123", "bad digest"),
    ("x/y@md5:" + "a" * 32, "bad digest"),
    ("a//b", "empty path component"),
    ("x:-bad", "bad tag"),
    ("builtin:alpine", "unknown built-in"),
    ("oci:", "no path"),
    ("-x/y", "bad name component"),
])
def test_bad_references(text, words):
    with pytest.raises(ReferenceError_) as e:
        refs.parse(text)
    assert words in str(e.value)
    assert "\n" not in str(e.value)


def test_candidates_of_non_references_is_empty():
    assert refs.candidates("ABCDEF") == []
    assert refs.candidates("3f2a") == ["docker.io/library/3f2a:latest"]


@pytest.mark.parametrize("path", ["./bb.tar", "/var/tmp/layout", "../x", "~/img.tar"])
def test_a_bare_path_is_refused_with_the_transports_to_name(path):
    with pytest.raises(ReferenceError_, match=rf"is a path, not an image reference: .*oci:"
                                              rf"{re.escape(path)} .*oci-archive:"):
        refs.parse(path)
