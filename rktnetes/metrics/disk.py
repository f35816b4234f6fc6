"""What a directory tree takes on its filesystem (a writable layer, the image store)."""

from __future__ import annotations

import os


def tree_usage(path: str) -> tuple[int, int]:
    """(bytes, inodes) under `path` (a writable layer), not following links or mounts."""
    used = inodes = 0
    try:
        dev = os.lstat(path).st_dev
    except OSError:
        return 0, 0
    for dirpath, dirnames, filenames in os.walk(path):
        inodes += len(dirnames) + len(filenames)
        for n in filenames + dirnames:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            if st.st_dev == dev:
                used += st.st_blocks * 512
        dirnames[:] = [d for d in dirnames
                       if os.lstat(os.path.join(dirpath, d)).st_dev == dev]
    return used, inodes
