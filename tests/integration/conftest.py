"""Registry fixtures: a real docker-registry on 127.0.0.1, with or without token auth, and
small OCI images built by the project's own builder to push into it."""

from __future__ import annotations

import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from rktnetes.image import builder
from rktnetes.image.manifest import host_platform
from rktnetes.store import digest as dg
from tests.registry_server import RegistryServer, TokenServer


def _need_registry_tools():
    for tool in ("docker-registry", "skopeo"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")


@pytest.fixture
def registry(tmp_path_factory):
    """A plain-HTTP docker-registry without auth."""
    _need_registry_tools()
    srv = RegistryServer(tmp_path_factory.mktemp("registry")).start()
    yield srv
    srv.stop()


@pytest.fixture
def token_registry(tmp_path_factory):
    """A docker-registry that wants bearer tokens from a TokenServer (user alice, s3cret)."""
    _need_registry_tools()
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    work = tmp_path_factory.mktemp("token-registry")
    token = TokenServer(work)
    srv = RegistryServer(work, token=token).start()
    yield srv
    srv.stop()
    token.stop()


def _file(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    return ti, data


def _dir(name: str) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode = tarfile.DIRTYPE, 0o755
    return ti


def small_spec(tag: str = "amd64", architecture: str = "amd64") -> builder.ImageSpec:
    """Two layers (gzip and plain tar) whose contents say which image they came from."""
    base = builder.tar_entries([_dir("etc"), _file("etc/hello", f"hello {tag}\n".encode())])
    top = builder.tar_entries([_dir("app"), _file("app/run", b"#!/bin/sh\necho hi\n", 0o755)],
                              compress=False)
    return builder.ImageSpec(layers=[base, top], architecture=architecture,
                             config={"Cmd": ["/app/run"], "Labels": {"which": tag}})


@dataclass
class LayoutImage:
    layout: Path
    ref: str                 # the name inside the layout
    manifest_digest: str     # of the manifest (or of the index for multi-arch images)
    config_digest: str       # the image ID rkt prints (the host platform's for an index)
    spec: builder.ImageSpec


@pytest.fixture
def oci_image(tmp_path) -> LayoutImage:
    layout = builder.OCILayout(tmp_path / "layout")
    spec = small_spec()
    mdigest = layout.add_image(spec, "v1")
    cfg = builder.manifest_blob(spec)[1]
    return LayoutImage(layout.path, "v1", mdigest, dg.of_bytes(cfg), spec)


@pytest.fixture
def multiarch_image(tmp_path) -> LayoutImage:
    layout = builder.OCILayout(tmp_path / "multi")
    amd64, arm64 = small_spec("amd64", "amd64"), small_spec("arm64", "arm64")
    idigest = layout.add_index([arm64, amd64], "multi")
    host = arm64 if host_platform()["architecture"] == "arm64" else amd64
    cfg = builder.manifest_blob(host)[1]
    return LayoutImage(layout.path, "multi", idigest, dg.of_bytes(cfg), host)
