"""Content digests as the OCI spec writes them: `algorithm:hex`."""

from __future__ import annotations

import re

from rktnetes.errors import DigestMismatch, ManifestError

_DIGEST_RE = re.compile(r"^(sha256|sha512):([a-f0-9]+)$")
_HEX_LEN = {"sha256": 64, "sha512": 128}


def parse(digest: str) -> tuple[str, str]:
    """Split and validate a digest; the hex part becomes a file name, so it must be exact."""
    m = _DIGEST_RE.match(digest or "")
    if not m or len(m.group(2)) != _HEX_LEN[m.group(1)]:
        raise ManifestError(f"invalid digest {digest!r}")
    return m.group(1), m.group(2)


# hashlib is imported by the functions that hash: most users of this module only parse
# digests (every `rkt run` does, for stored images), and it costs ~3 ms of a start.

def hasher(digest: str):
    import hashlib

    return hashlib.new(parse(digest)[0])


def of_bytes(data: bytes, algorithm: str = "sha256") -> str:
    import hashlib

    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def verify_bytes(data: bytes, digest: str, what: str = "content") -> None:
    algo, _ = parse(digest)
    got = of_bytes(data, algo)
    if got != digest:
        raise DigestMismatch(f"{what}: digest mismatch: expected {digest}, got {got}")


def short(digest: str, n: int = 12) -> str:
    return digest.split(":", 1)[-1][:n]
