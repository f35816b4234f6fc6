"""`rkt fetch` against a real docker-registry on 127.0.0.1, and every way a pull can go wrong.

Each failure must give one `rkt: ...` line on stderr, a non-zero exit, no traceback, and leave
the store exactly as it was.
"""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from rktnetes.image.manifest import parse_manifest
from rktnetes.store import digest as dg
from tests.conftest import store_snapshot
from tests.registry_server import FakeRegistry, Proxy, free_port

pytestmark = pytest.mark.registry
HTTP = "--insecure-options=http"


def last_line(out: str) -> str:
    return out.strip().splitlines()[-1]


def one_line_failure(rkt, *args, expect: str, snapshot=None) -> str:
    """Run a fetch that must fail cleanly; return its stderr line."""
    before = store_snapshot(rkt.paths.store) if snapshot is None else snapshot
    res = rkt.fails(*args)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("rkt: "), lines[0]
    assert expect in lines[0], lines[0]
    assert store_snapshot(rkt.paths.store) == before, "a failed fetch changed the store"
    return lines[0]


def write_auth(rkt, host: str, user: str, password: str) -> None:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    (rkt.config / "auth.json").write_text(json.dumps({"auths": {host: {"auth": token}}}))


# -- success ------------------------------------------------------------------------------

def test_fetch_by_tag(rkt, registry, oci_image):
    name = registry.push(oci_image.layout, oci_image.ref, "test/app:v1")
    res = rkt("fetch", HTTP, f"docker://{name}")
    assert last_line(res.stdout) == oci_image.config_digest
    rec = rkt.store.images.get(oci_image.config_digest)
    assert rec.references == [name]
    assert rec.manifest_digest == oci_image.manifest_digest
    assert rec.platform == "linux/amd64"
    assert [x.digest for x in rec.layers] == [layer.digest for layer in oci_image.spec.layers]
    for layer in rec.layers:
        assert rkt.store.blobs.has(layer.digest)
        assert rkt.store.layer_path(layer.digest).is_dir()
    assert (rkt.store.layer_path(rec.layers[0].digest) / "etc/hello").read_text() == "hello amd64\n"
    assert not list((rkt.paths.store / "tmp").glob("*")) if (rkt.paths.store / "tmp").exists() else True


def test_fetch_bare_reference_and_quiet(rkt, registry, oci_image):
    name = registry.push(oci_image.layout, oci_image.ref, "app:latest")
    res = rkt("fetch", "-q", f"{registry.address}/app", HTTP)  # flags after the image work too
    assert res.stdout.strip() == oci_image.config_digest
    assert res.stderr == ""  # not a TTY: no progress
    assert rkt.store.images.get(oci_image.config_digest).references == [name]


def test_fetch_by_digest(rkt, registry, oci_image):
    registry.push(oci_image.layout, oci_image.ref, "test/app:v1")
    ref = f"{registry.address}/test/app@{oci_image.manifest_digest}"
    res = rkt("fetch", HTTP, ref)
    assert last_line(res.stdout) == oci_image.config_digest
    assert rkt.store.images.get(oci_image.config_digest).references == [ref]


def test_fetch_unknown_digest_is_not_found(rkt, registry, oci_image):
    registry.push(oci_image.layout, oci_image.ref, "test/app:v1")
    one_line_failure(rkt, "fetch", HTTP, f"{registry.address}/test/app@sha256:{'0' * 64}",
                     expect="digest not found")


def test_fetch_multiarch_index(rkt, registry, multiarch_image):
    name = registry.push(multiarch_image.layout, multiarch_image.ref, "test/multi:1",
                         all_images=True)
    res = rkt("fetch", HTTP, f"docker://{name}")
    assert last_line(res.stdout) == multiarch_image.config_digest
    rec = rkt.store.images.get(multiarch_image.config_digest)
    manifest = parse_manifest(rkt.store.blobs.read(rec.manifest_digest))
    assert manifest.config.digest == multiarch_image.config_digest
    assert rec.platform == f"linux/{multiarch_image.spec.architecture}"
    # only the host's image was downloaded: the other platform's layers are not in the store
    assert len(list(rkt.store.images.all())) == 1
    # by the index digest, the same image
    ref = f"{registry.address}/test/multi@{multiarch_image.manifest_digest}"
    assert last_line(rkt("fetch", HTTP, ref).stdout) == multiarch_image.config_digest


@pytest.mark.parametrize("token_field", ["token", "access_token"])
def test_token_auth(rkt, token_registry, oci_image, token_field):
    token_registry.token.token_field = token_field
    name = token_registry.push(oci_image.layout, oci_image.ref, "private/app:v1",
                               creds="alice:s3cret")
    write_auth(rkt, token_registry.address, "alice", "s3cret")
    res = rkt("fetch", HTTP, name)
    assert last_line(res.stdout) == oci_image.config_digest
    pulls = [r for r in token_registry.token.requests if r["query"].get("scope") ==
             ["repository:private/app:pull"]]
    assert pulls and all(r["user"] == "alice" for r in pulls)


def test_token_auth_bad_password(rkt, token_registry, oci_image):
    name = token_registry.push(oci_image.layout, oci_image.ref, "private/app:v1",
                               creds="alice:s3cret")
    write_auth(rkt, token_registry.address, "alice", "wrong")
    one_line_failure(rkt, "fetch", HTTP, name, expect="authentication with registry")


def test_token_auth_no_credentials(rkt, token_registry, oci_image):
    name = token_registry.push(oci_image.layout, oci_image.ref, "private/app:v1",
                               creds="alice:s3cret")
    line = one_line_failure(rkt, "fetch", HTTP, name, expect="authentication with registry")
    assert "no credentials" in line


def test_http_refused_without_insecure_option(rkt, registry, oci_image):
    name = registry.push(oci_image.layout, oci_image.ref, "test/app:v1")
    one_line_failure(rkt, "fetch", name, expect="--insecure-options=http")


def test_registries_conf_insecure(rkt, registry, oci_image):
    name = registry.push(oci_image.layout, oci_image.ref, "test/app:v1")
    (rkt.config / "registries.conf").write_text(
        f'[[registry]]\nlocation = "{registry.address}"\ninsecure = true\n')
    assert last_line(rkt("fetch", name).stdout) == oci_image.config_digest


def test_registries_conf_mirror(rkt, registry, oci_image):
    """registry.k8s.io/x/y:t through mirrors: a dead one first, then the local registry."""
    registry.push(oci_image.layout, oci_image.ref, "x/y:t")
    (rkt.config / "registries.conf").write_text(f"""
[[registry]]
location = "registry.k8s.io"
[[registry.mirror]]
location = "127.0.0.1:{free_port()}"
insecure = true
[[registry.mirror]]
location = "{registry.address}"
insecure = true
""")
    res = rkt("fetch", "registry.k8s.io/x/y:t")
    assert last_line(res.stdout) == oci_image.config_digest
    assert rkt.store.images.get(oci_image.config_digest).references == ["registry.k8s.io/x/y:t"]


def test_blocked_registry(rkt, registry, oci_image):
    name = registry.push(oci_image.layout, oci_image.ref, "test/app:v1")
    (rkt.config / "registries.conf").write_text(
        f'[[registry]]\nlocation = "{registry.address}"\nblocked = true\n')
    one_line_failure(rkt, "fetch", HTTP, name, expect="blocked")


def test_malformed_registries_conf(rkt):
    (rkt.config / "registries.conf").write_text("[[registry]\n")
    line = one_line_failure(rkt, "fetch", HTTP, "127.0.0.1:1/x:y", expect="malformed TOML")
    assert "registries.conf" in line


def test_unreachable_registry(rkt):
    one_line_failure(rkt, "fetch", HTTP, f"127.0.0.1:{free_port()}/x/y:1",
                     expect="cannot reach registry")


def test_missing_tag(rkt, registry, oci_image):
    registry.push(oci_image.layout, oci_image.ref, "test/app:v1")
    one_line_failure(rkt, "fetch", HTTP, f"{registry.address}/test/app:nope",
                     expect="tag not found")


def test_bad_reference(rkt):
    one_line_failure(rkt, "fetch", "ftp://example.com/x", expect="unsupported transport")
    one_line_failure(rkt, "fetch", "Upper/Case", expect="lowercase")


def test_digest_mismatch(rkt, registry, oci_image):
    name = registry.push(oci_image.layout, oci_image.ref, "test/app:v1")
    data = registry.blob_data_path(oci_image.spec.layers[0].digest)
    blob = bytearray(data.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # same size, different bytes
    data.write_bytes(bytes(blob))
    one_line_failure(rkt, "fetch", HTTP, name, expect="digest mismatch")


def test_truncated_download(rkt, registry, oci_image):
    registry.push(oci_image.layout, oci_image.ref, "test/app:v1")
    proxy = Proxy(registry.address, mode="truncate")
    try:
        one_line_failure(rkt, "fetch", HTTP, f"{proxy.address}/test/app:v1", expect="truncated")
    finally:
        proxy.stop()


def test_blob_redirects_are_followed(rkt, registry, oci_image):
    registry.push(oci_image.layout, oci_image.ref, "test/app:v1")
    proxy = Proxy(registry.address, mode="redirect")
    try:
        res = rkt("fetch", HTTP, f"{proxy.address}/test/app:v1")
    finally:
        proxy.stop()
    assert last_line(res.stdout) == oci_image.config_digest
    assert proxy.blob_requests == 3  # config + two layers, each answered with a redirect


def test_malformed_manifest_json(rkt):
    # A real registry refuses to store a manifest that is not JSON, so a fake one serves it.
    fake = FakeRegistry({"/v2/x/y/manifests/1": (
        200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, b'{"schemaVersion": 2,')})
    try:
        one_line_failure(rkt, "fetch", HTTP, f"{fake.address}/x/y:1", expect="malformed JSON")
    finally:
        fake.stop()


def test_manifest_digest_header_mismatch(rkt):
    # Also unreachable with a real registry: the bytes differ from the digest it announces.
    body = b'{"schemaVersion":2}'
    fake = FakeRegistry({"/v2/x/y/manifests/1": (
        200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
              "Docker-Content-Digest": "sha256:" + "1" * 64}, body)})
    try:
        one_line_failure(rkt, "fetch", HTTP, f"{fake.address}/x/y:1", expect="digest mismatch")
    finally:
        fake.stop()


# -- pull policies ----------------------------------------------------------------------------

def test_pull_policies(rkt, registry, oci_image):
    name = registry.push(oci_image.layout, oci_image.ref, "test/app:v1")
    one_line_failure(rkt, "fetch", "--pull-policy=never", name, expect="not in the store")
    proxy = Proxy(registry.address)
    try:
        via = f"{proxy.address}/test/app:v1"
        rkt("fetch", HTTP, via)
        first = proxy.blob_requests
        assert first == 3
        # update asks the registry again but downloads no blob it already has
        assert last_line(rkt("fetch", HTTP, via).stdout) == oci_image.config_digest
        assert proxy.blob_requests == first
    finally:
        proxy.stop()
    # new and never use the store's copy, so the registry is not needed at all
    for policy in ("new", "never"):
        assert last_line(rkt("fetch", f"--pull-policy={policy}", via).stdout) == oci_image.config_digest
    # update must ask, and the proxy is gone
    one_line_failure(rkt, "fetch", HTTP, via, expect="cannot reach registry")


def test_concurrent_fetches_of_one_image(rkt, registry, oci_image):
    name = registry.push(oci_image.layout, oci_image.ref, "test/app:v1")
    procs = [subprocess.Popen(rkt.argv("fetch", HTTP, name), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert last_line(out) == oci_image.config_digest
    recs = list(rkt.store.images.all())
    assert [r.id for r in recs] == [oci_image.config_digest]
    assert recs[0].references == [name]
    blobs = set(rkt.store.blobs.all())
    assert blobs == {oci_image.manifest_digest, oci_image.config_digest,
                     *(layer.digest for layer in oci_image.spec.layers)}
    for d in blobs:
        dg.verify_bytes(rkt.store.blobs.read(d), d)
    tmp = rkt.paths.store / "tmp"
    assert not tmp.exists() or not list(tmp.iterdir())
    assert not list(rkt.store.layers_dir.glob(".tmp-*"))


def test_fetch_builtin_busybox(rkt):
    first = last_line(rkt("fetch", "builtin:busybox").stdout)
    assert first.startswith("sha256:")
    rec = rkt.store.images.get(first)
    assert rec.references == ["builtin:busybox"]
    assert (rkt.store.layer_path(rec.layers[0].digest) / "bin/busybox").is_file()
    # the build is reproducible: the same ID again
    assert last_line(rkt("fetch", "builtin:busybox").stdout) == first


def test_fetch_zstd_layer(rkt, registry, tmp_path):
    import tarfile

    import zstandard

    from rktnetes.image import builder
    from rktnetes.image import mediatypes as mt

    plain = builder.tar_entries([(tarfile.TarInfo("zfile"), b"compressed with zstd\n")],
                                compress=False)
    layer = builder.Layer(zstandard.ZstdCompressor().compress(plain.blob), mt.OCI_LAYER_ZSTD,
                          plain.diff_id)
    spec = builder.ImageSpec(layers=[layer])
    layout = builder.OCILayout(tmp_path / "zstd")
    layout.add_image(spec, "z")
    name = registry.push(layout.path, "z", "test/zstd:1")
    image_id = last_line(rkt("fetch", HTTP, name).stdout)
    rec = rkt.store.images.get(image_id)
    assert rec.layers[0].media_type == mt.OCI_LAYER_ZSTD
    assert (rkt.store.layer_path(layer.digest) / "zfile").read_text() == "compressed with zstd\n"


def test_fetch_dispatches_oci_layouts_to_the_importer(rkt, oci_image):
    ref = f"oci:{oci_image.layout}:{oci_image.ref}"
    assert last_line(rkt("fetch", ref).stdout) == oci_image.config_digest
    assert ref in rkt.store.images.get(oci_image.config_digest).references
    assert last_line(rkt("fetch", "--pull-policy=never", ref).stdout) == oci_image.config_digest


def test_all_mirrors_and_the_registry_unreachable(rkt):
    dead1, dead2 = free_port(), free_port()
    (rkt.config / "registries.conf").write_text(f"""
[[registry]]
prefix = "registry.k8s.io"
location = "127.0.0.1:{dead2}"
insecure = true
[[registry.mirror]]
location = "127.0.0.1:{dead1}"
insecure = true
""")
    line = one_line_failure(rkt, "fetch", "registry.k8s.io/x/y:t", expect="cannot reach registry")
    assert f"127.0.0.1:{dead2}" in line and f"mirrors tried first: 127.0.0.1:{dead1}" in line
