"""The unpacked-layer cache and image gc, on a store in a temporary directory."""

from __future__ import annotations

import json
import os
import tarfile
import threading
import time

import pytest

from rktnetes.config import Paths
from rktnetes.errors import DigestMismatch, StoreError
from rktnetes.image import builder
from rktnetes.image.commit import commit_image
from rktnetes.image.render import lowerdirs, render_into
from rktnetes.store import LayerRef, Store
from rktnetes.store.gc import gc_images, images_in_use, remove_image
from rktnetes.image.layers import ensure_layer
from rktnetes.store.layers import cached_layers, remove_layer


def _file(name: str, data: bytes):
    ti = tarfile.TarInfo(name)
    ti.mode = 0o644
    return ti, data


def add_image(store: Store, files: dict[str, bytes], ref: str, shared: builder.Layer | None = None):
    layers = ([shared] if shared else []) + [
        builder.tar_entries([_file(k, v) for k, v in files.items()])]
    spec = builder.ImageSpec(layers=layers, config={"Cmd": ["/bin/sh"]})
    manifest, cfg = builder.manifest_blob(spec)
    for blob in (cfg, manifest, *(x.blob for x in layers)):
        store.blobs.put_bytes(blob)
    return commit_image(store, store.blobs.put_bytes(manifest), [ref])


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "store")


def test_ensure_layer_caches_once(store):
    rec = add_image(store, {"a": b"1"}, "one")
    layer = rec.layers[0]
    path = store.layer_path(layer.digest)
    assert (path / "a").read_bytes() == b"1"
    ino = path.stat().st_ino
    assert ensure_layer(store, layer) == path and path.stat().st_ino == ino
    assert cached_layers(store) == [layer.digest]
    assert lowerdirs(store, rec) == [path]


def test_diff_id_mismatch_leaves_nothing(store):
    layer = builder.tar_entries([_file("a", b"1")])
    store.blobs.put_bytes(layer.blob)
    bad = LayerRef(layer.digest, layer.media_type, len(layer.blob), "sha256:" + "0" * 64)
    with pytest.raises(DigestMismatch):
        ensure_layer(store, bad)
    assert list(store.layers_dir.iterdir()) == []


def test_concurrent_ensure_layer(store):
    layer = builder.tar_entries([_file(f"f{i}", os.urandom(2000)) for i in range(200)])
    store.blobs.put_bytes(layer.blob)
    ref = LayerRef(layer.digest, layer.media_type, len(layer.blob), layer.diff_id)
    results, errors = [], []
    barrier = threading.Barrier(6)

    def worker():
        barrier.wait()
        try:
            results.append(ensure_layer(store, ref))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    assert [p.name for p in store.layers_dir.iterdir()] == [results[0].name]
    assert len(list(results[0].iterdir())) == 200


def test_remove_layer(store):
    rec = add_image(store, {"a": b"1"}, "one")
    assert remove_layer(store, rec.layers[0].digest)
    assert not remove_layer(store, rec.layers[0].digest)
    assert list(store.layers_dir.iterdir()) == []


def test_render_into_is_all_or_nothing(store, tmp_path):
    rec = add_image(store, {"etc/hostname": b"h"}, "one")
    out = render_into(store, rec, tmp_path / "out", rootfs_subdir="rootfs", files={"manifest": b"{}"})
    assert (out / "etc/hostname").read_bytes() == b"h"
    assert (tmp_path / "out/manifest").read_bytes() == b"{}"
    with pytest.raises(Exception, match="not empty"):
        render_into(store, rec, tmp_path / "out")
    render_into(store, rec, tmp_path / "out", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["etc"]
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_gc_grace_in_use_and_sweep(store):
    shared = builder.tar_entries([_file("base", b"b")])
    old = add_image(store, {"old": b"o"}, "old", shared)
    used = add_image(store, {"used": b"u"}, "used", shared)
    new = add_image(store, {"new": b"n"}, "new")
    now = time.time()
    for rec, age in ((old, 3 * 86400), (used, 3 * 86400), (new, 60)):
        store.images.touch(rec.id, now - age)
    # A killed unpack's directory goes however young it is, since no writer holds its lock;
    # a live unpack's (held by its flock) stays.
    from rktnetes.store import tmpfiles

    stale = store.layers_dir / ".tmp-crashed"
    stale.mkdir()
    working = tmpfiles.make_dir(store.root, store.layers_dir, ".tmp-")
    fresh = working.path
    part = store.blobs.root / "sha256" / ".abc.part"
    part.write_bytes(b"x")

    res = gc_images(store, 86400, in_use={used.id}, now=now)
    working.close()

    assert res.removed_images == [old.id]
    assert {r.id for r in store.images.all()} == {used.id, new.id}
    old_only = old.layers[1].digest
    assert res.removed_layers == [old_only] and not store.layer_path(old_only).exists()
    assert store.layer_path(shared.digest).exists()              # still needed by `used`
    assert set(res.removed_blobs) == {old.id, old.manifest_digest, old_only}
    assert not store.blobs.has(old_only) and store.blobs.has(shared.digest)
    assert not stale.exists() and fresh.exists() and not part.exists()
    assert res.removed_tmp == 2


def test_remove_image_refuses_in_use_and_unknown(store):
    rec = add_image(store, {"a": b"1"}, "one")
    with pytest.raises(StoreError):
        remove_image(store, rec.id, in_use={rec.id})
    res = remove_image(store, rec.id)
    assert res.removed_images == [rec.id]
    assert list(store.blobs.all()) == [] and cached_layers(store) == []


def test_gc_refuses_with_unreadable_record(store):
    add_image(store, {"a": b"1"}, "one")
    (store.images.root / ("f" * 64 + ".json")).write_text("{not json")
    with pytest.raises(StoreError, match="unreadable image record"):
        gc_images(store, 0, set())


def test_images_in_use(tmp_path):
    paths = Paths(tmp_path / "data", tmp_path / "config")
    assert images_in_use(paths) == set()
    pod = paths.pods / "run" / "1234"
    pod.mkdir(parents=True)
    (pod / "pod.json").write_text(json.dumps({"apps": [{"image_id": "sha256:" + "a" * 64}, {}]}))
    bad = paths.pods / "prepared" / "5678"
    bad.mkdir(parents=True)
    (bad / "pod.json").write_text("garbage")
    assert images_in_use(paths) == {"sha256:" + "a" * 64}


def test_remove_image_names_the_pods_using_it(store, tmp_path):
    from rktnetes.store.gc import image_users

    rec = add_image(store, {"a": b"1"}, "one")
    paths = Paths(tmp_path / "data", tmp_path / "config")
    for state, uuid in (("run", "11112222-aaaa"), ("prepared", "33334444-bbbb")):
        pod = paths.pods / state / uuid
        pod.mkdir(parents=True)
        (pod / "pod.json").write_text(json.dumps({"apps": [{"image_id": rec.id},
                                                           {"image_id": rec.id}]}))
    assert {k: sorted(v) for k, v in image_users(paths).items()} == {
        rec.id: ["11112222-aaaa", "33334444-bbbb"]}
    assert images_in_use(paths) == {rec.id}
    with pytest.raises(StoreError, match="used by pods 11112222, 33334444; remove them first"):
        remove_image(store, rec.id, lambda: image_users(paths))
    with pytest.raises(StoreError, match="used by pod 11112222; remove it first"):
        remove_image(store, rec.id, {rec.id: ["11112222-aaaa"]})
    assert store.images.get(rec.id)


def test_a_refetch_keeps_the_images_last_use(store):
    rec = add_image(store, {"a": b"a"}, "a")
    store.images.touch(rec.id, 1000.0)
    again = add_image(store, {"a": b"a"}, "a")      # the same image committed again
    assert again.id == rec.id
    assert store.images.get(rec.id).last_used == 1000.0
