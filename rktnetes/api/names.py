"""Image references split into rkt's (name, version) pair, without validating them.

Records and pod manifests hold references that were valid when written; here we only need
the repository part as a name and the tag (or digest) as a version, and must never raise.
"""

from __future__ import annotations


def split_reference(ref: str) -> tuple[str, str]:
    """'docker.io/library/busybox:1.36' -> ('docker.io/library/busybox', '1.36').

    A digest reference gives the digest as version; no tag means 'latest', as rkt says.
    """
    ref = ref.split("://", 1)[-1]
    digest = ""
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:          # a ':' after the last '/' is a tag, not a registry port
        return ref[:colon], ref[colon + 1:]
    return ref, digest or "latest"
