"""Content-addressed blobs: `blobs/<algo>/<hex>`, each verified before it is kept."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from rktnetes.errors import DigestMismatch

from . import digest as dg


class BlobStore:
    def __init__(self, root: Path, store_root: Path | None = None):
        self.root = root
        # a store's own blobs: their downloads are locked temporaries (store.tmpfiles) that
        # gc may sweep once their writer is gone; a staging area's live in a locked directory
        self.store_root = store_root

    def path(self, digest: str) -> Path:
        algo, hexd = dg.parse(digest)
        return self.root / algo / hexd

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def read(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def open(self, digest: str):
        return open(self.path(digest), "rb")

    def ingest(self, chunks: Iterable[bytes], digest: str, size: int | None = None,
               what: str = "blob", progress: Callable[[int], None] | None = None) -> Path:
        """Stream chunks into the store, verifying size and digest before the final rename.

        A blob that fails verification never appears under its name; the temporary file goes.
        """
        final = self.path(digest)
        if final.is_file():
            for _ in chunks:  # drain nothing more than needed: callers pass lazy iterators
                break
            return final
        from .tmpfiles import PART_SUFFIX, make_file

        final.parent.mkdir(parents=True, exist_ok=True)
        h = dg.hasher(digest)
        if self.store_root is not None:
            held = make_file(self.store_root, final.parent, f".{final.name[:16]}.", PART_SUFFIX)
            fd, tmp = os.dup(held.fd), str(held.path)   # the flock stays with `held`
        else:
            import tempfile

            held = None
            fd, tmp = tempfile.mkstemp(prefix=f".{final.name[:16]}.", suffix=PART_SUFFIX,
                                       dir=final.parent)
        n = 0
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    n += len(chunk)
                    if size is not None and n > size:
                        raise DigestMismatch(f"{what}: more data than the announced {size} bytes")
                    h.update(chunk)
                    f.write(chunk)
                    if progress:
                        progress(len(chunk))
                f.flush()
                os.fsync(f.fileno())
            if size is not None and n != size:
                raise DigestMismatch(f"{what}: truncated: got {n} of {size} bytes")
            got = f"{dg.parse(digest)[0]}:{h.hexdigest()}"
            if got != digest:
                raise DigestMismatch(f"{what}: digest mismatch: expected {digest}, got {got}")
            os.chmod(tmp, 0o644)
            os.rename(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        finally:
            if held is not None:
                held.close()
        return final

    def put_bytes(self, data: bytes, digest: str | None = None) -> str:
        digest = digest or dg.of_bytes(data)
        self.ingest([data], digest, len(data))
        return digest

    def delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()

    def all(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for algo_dir in self.root.iterdir():
            if not algo_dir.is_dir():
                continue
            for p in algo_dir.iterdir():
                if not p.name.startswith("."):
                    yield f"{algo_dir.name}:{p.name}"
