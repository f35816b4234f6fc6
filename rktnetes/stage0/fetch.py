"""`rkt fetch`: get an image into the store from a registry, an archive or the built-in builder.

Blobs are downloaded into a private staging directory under the store, each verified on the way
in; only when the manifest, config and every layer are complete do they move into the blob
store, and the image record is written last (by commit_image). A failed fetch leaves the store
as it was. The store's gc lock is held shared throughout, so `rkt image gc` cannot remove blobs
between their arrival and the record that keeps them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from rktnetes.config import Paths
from rktnetes.errors import (ManifestError, NotFoundError, RegistryError, StoreError,
                             UsageError)
from rktnetes.fsutil import rmtree
from rktnetes.image import reference as refs
from rktnetes.lazylog import getLogger
from rktnetes.store import ImageRecord, Store
from rktnetes.store.blobs import BlobStore

from .options import PULL_POLICIES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rktnetes.image.auth import Credentials
    from rktnetes.image.registry import RegistryClient

# What only a real fetch needs (manifests, progress, tempfile) is imported where it is used:
# `rkt run` of a stored image comes here only to find it in the store.
log = getLogger(__name__)


def fetch(paths: Paths, ref_string: str, pull_policy: str = "update", insecure_http: bool = False,
          quiet: bool = False, insecure_tls: bool = False,
          credentials: Credentials | None = None) -> ImageRecord:
    """Make `ref_string` present in the store and return its record.

    new: use the store's copy if the reference is there, else pull; update: always ask the
    source (blobs already present are not downloaded again); never: the store only.
    credentials: for the registry, in place of auth.json's (a CRI PullImage's auth config).
    """
    if pull_policy not in PULL_POLICIES:
        raise UsageError(f"unknown pull policy {pull_policy!r} (use new, update or never)")
    ref = refs.parse(ref_string)
    store = Store.open(paths)
    if pull_policy in ("new", "never"):
        # a short name's local forms first (localhost/NAME, as podman), then the normalized
        rec = store.images.find_reference(refs.local_candidates(ref_string) or
                                          [ref.normalized()])
        if rec is not None:
            return rec
        if pull_policy == "never":
            raise NotFoundError(f"image {ref.normalized()} is not in the store",
                                hint="pull-never")
    paths.secure()
    with store.gc_lock.held(shared=True):
        if ref.transport == "docker":
            return _fetch_registry(paths, store, ref, insecure_http, insecure_tls, quiet,
                                   credentials)
        if ref.transport == "builtin":
            return _build_builtin(paths, store, ref)
        from rktnetes.image.archive import import_archive

        return import_archive(store, ref)


class _Staging:
    """A private blob store whose verified blobs join the real one only on success."""

    def __init__(self, store: Store):
        from rktnetes.store.tmpfiles import make_dir

        self.store = store
        # Under the store, so publishing is a rename on one filesystem; locked while we use
        # it, so gc sweeps it only once we are gone.
        self._created_tmp = not store.tmp.exists()
        for _ in range(5):  # a concurrent fetch may rmdir an empty tmp between the two calls
            try:
                self.held = make_dir(store.root, store.tmp, "fetch-")
                self.dir = self.held.path
                break
            except FileNotFoundError:
                continue
        else:
            raise StoreError(f"cannot create a staging directory under {store.tmp}")
        self.blobs = BlobStore(self.dir / "blobs")
        self.moved: list[str] = []

    def has(self, digest: str) -> bool:
        return self.store.blobs.has(digest) or self.blobs.has(digest)

    def publish(self) -> None:
        """Move staged blobs into the store; a blob another fetch already added is kept as is."""
        for digest in self.blobs.all():
            final = self.store.blobs.path(digest)
            if final.is_file():
                continue
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(self.blobs.path(digest), final)
            self.moved.append(digest)

    def unpublish(self) -> None:
        """After a failed commit: take back the blobs this fetch added (no record uses them)."""
        used = {d for r in self.store.images.all()
                for d in (r.id, r.manifest_digest, *(x.digest for x in r.layers))}
        for digest in self.moved:
            if digest not in used:
                self.store.blobs.delete(digest)

    def cleanup(self) -> None:
        rmtree(self.dir)
        self.held.close()
        if self._created_tmp:
            with contextlib.suppress(OSError):
                self.store.tmp.rmdir()


def _commit(store: Store, staging: _Staging, manifest_digest: str, references: list[str],
            platform: str) -> ImageRecord:
    from rktnetes.image.commit import commit_image

    staging.publish()
    try:
        return commit_image(store, manifest_digest, references=references, platform=platform)
    except BaseException:
        staging.unpublish()
        raise


# -- registry ---------------------------------------------------------------------------------

def _fetch_registry(paths: Paths, store: Store, ref: refs.Reference, insecure_http: bool,
                    insecure_tls: bool, quiet: bool, given: Credentials | None = None
                    ) -> ImageRecord:
    # the HTTP client stack is imported only when a registry is really asked
    from rktnetes.image import auth as authmod
    from rktnetes.image import registries_conf
    from rktnetes.image.registry import RegistryClient

    conf = registries_conf.load(paths.registries_conf)
    sources = conf.pull_sources(ref)
    creds = authmod.load(paths.auth_json) if given is None else None
    staging = _Staging(store)
    try:
        mirrors_failed: list[str] = []
        for source in sources:
            client = RegistryClient(
                source.ref.registry, allow_http=insecure_http or source.insecure,
                verify_tls=not (insecure_tls or source.insecure),
                credentials=given if creds is None else
                creds.lookup(source.ref.registry, source.ref.repository))
            with client:
                try:
                    manifest_digest, platform = _resolve(client, source.ref, staging)
                except (RegistryError, NotFoundError, ManifestError) as e:
                    if source.mirror:  # mirrors are a convenience: on to the next source
                        log.debug("mirror %s: %s", source.ref.registry, e)
                        mirrors_failed.append(source.ref.registry)
                        continue
                    if mirrors_failed:
                        raise type(e)(f"{e} (mirrors tried first: {', '.join(mirrors_failed)})") \
                            from None
                    raise
                _download(client, source.ref, staging, manifest_digest, quiet)
                return _commit(store, staging, manifest_digest, [ref.normalized()], platform)
        raise RegistryError(f"no source to pull {ref} from")  # the registry itself is always last
    finally:
        staging.cleanup()


def _resolve(client: RegistryClient, ref: refs.Reference, staging: _Staging) -> tuple[str, str]:
    """Fetch the manifest (through an index to the host's platform) into staging.

    Returns (manifest digest, platform string or "" when the reference named a manifest).
    """
    from rktnetes.image import mediatypes as mt
    from rktnetes.image.manifest import host_platform, media_type_of, parse_index, \
        parse_manifest, select_platform

    fetched = client.get_manifest(ref.repository, ref.manifest_ref)
    where = f"manifest of {ref.registry}/{ref.repository}:{ref.manifest_ref}" if not ref.digest \
        else f"manifest of {ref.registry}/{ref.repository}@{ref.digest}"
    kind = media_type_of(fetched.raw, fetched.media_type, where)
    platform = ""
    if kind in mt.INDEXES:
        want = host_platform()
        desc = select_platform(parse_index(fetched.raw, where), want)
        platform = f"{want['os']}/{want['architecture']}"
        fetched = client.get_manifest(ref.repository, desc.digest)
        if len(fetched.raw) != desc.size:
            raise ManifestError(f"manifest {desc.digest}: size {len(fetched.raw)} differs from "
                                f"the index's {desc.size}")
        where = f"manifest {desc.digest}"
    manifest = parse_manifest(fetched.raw, where)
    for d in manifest.layers:
        if d.media_type and not (d.media_type in (mt.OCI_LAYER, mt.OCI_LAYER_GZIP, mt.OCI_LAYER_ZSTD,
                                                  mt.DOCKER_LAYER_GZIP, mt.DOCKER_LAYER_FOREIGN,
                                                  mt.OCI_LAYER_NONDIST_GZIP)
                                 or "tar" in d.media_type):
            raise ManifestError(f"{where}: unsupported layer media type {d.media_type!r}")
    staging.blobs.put_bytes(fetched.raw, fetched.digest)
    return fetched.digest, platform


def _download(client: RegistryClient, ref: refs.Reference, staging: _Staging,
              manifest_digest: str, quiet: bool) -> None:
    from rktnetes.image.manifest import ImageConfig, parse_manifest
    from rktnetes.image.progress import Progress

    manifest = parse_manifest(staging.blobs.read(manifest_digest))
    label = f"{ref.registry}/{ref.repository}"
    if not staging.has(manifest.config.digest):
        client.fetch_blob(ref.repository, manifest.config, staging.blobs.ingest)
    config_store = staging.blobs if staging.blobs.has(manifest.config.digest) else staging.store.blobs
    config = ImageConfig.parse(config_store.read(manifest.config.digest),
                               f"image config {manifest.config.digest}")
    if len(config.diff_ids) != len(manifest.layers):
        raise ManifestError(f"image config lists {len(config.diff_ids)} layers, "
                            f"the manifest {len(manifest.layers)}")
    unique = {d.digest: d for d in manifest.layers}.values()  # a layer may repeat
    missing = [d for d in unique if not staging.has(d.digest)]
    progress = Progress(f"Downloading {label}", quiet=quiet)
    progress.start(sum(d.size for d in missing), len(missing))
    try:
        for desc in missing:
            client.fetch_blob(ref.repository, desc, staging.blobs.ingest, progress.advance)
            progress.layer_done()
    except BaseException:
        progress.abort()
        raise
    progress.finish()


# -- the built-in image -------------------------------------------------------------------------

def _build_builtin(paths: Paths, store: Store, ref: refs.Reference) -> ImageRecord:
    """Build the default image from the host's busybox-static straight into staging."""
    from rktnetes.image import builder

    staging = _Staging(store)
    try:
        spec = builder.default_image_spec(staging.dir)
        manifest, cfg = builder.manifest_blob(spec)
        staging.blobs.put_bytes(cfg)
        for layer in spec.layers:
            staging.blobs.put_bytes(layer.blob)
        mdigest = staging.blobs.put_bytes(manifest)
        return _commit(store, staging, mdigest, [ref.normalized()], f"{spec.os}/{spec.architecture}")
    finally:
        staging.cleanup()
