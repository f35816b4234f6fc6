"""How far a layer may expand when it is unpacked, and how much free space must stay.

A layer blob is small on the wire but may hold anything once decompressed (10 MB of gzip can be
10 GiB of zeros, a sparse tar entry can claim terabytes): without a bound one image fills the
disk. The bound is `<config-dir>/store.toml`'s

    max_layer_size = "auto"   # or a size: "20Gi", "500M", a number of bytes
    min_free_space = "128Mi"  # an unpack never leaves less than this free

"auto" is 100 times the layer's compressed size, at least 1 GiB: real layers compress 2-10x,
and text-heavy ones rarely past 30x, while a bomb's ratio is in the hundreds or thousands.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from rktnetes.errors import RESOURCE_EXHAUSTED, StoreError

AUTO_RATIO = 100
AUTO_FLOOR = 1 << 30
DEFAULT_MIN_FREE = 128 << 20
FREE_CHECK_EVERY = 64 << 20       # bytes charged between two looks at the free space
ENTRY_COST = 4096                 # bytes charged per entry beyond its header: an inode, a block
MIN_FREE_INODES = 10_000

_UNITS = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


class LayerTooLarge(StoreError):
    """A layer expands past its limit, or would leave too little free space."""

    kind = RESOURCE_EXHAUSTED


def parse_size(value, what: str) -> int:
    """A size as store.toml gives it: a number of bytes, or "64Mi", "1.5G"..."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    m = re.match(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$", str(value)) \
        if isinstance(value, str) else None
    if not m or m.group(2) not in _UNITS:
        raise StoreError(f"{what}: expected a size like 20Gi, 500M or a number of bytes, "
                         f"not {value!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def human(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


@dataclass(frozen=True)
class UnpackLimits:
    max_layer_size: int = 0          # 0: auto (AUTO_RATIO x compressed, at least AUTO_FLOOR)
    min_free_space: int = DEFAULT_MIN_FREE
    source: str = "store.toml"       # where they come from, for messages

    def for_layer(self, compressed_size: int) -> int:
        if self.max_layer_size:
            return self.max_layer_size
        return max(AUTO_FLOOR, AUTO_RATIO * compressed_size)


def load(config_dir: Path | None) -> UnpackLimits:
    """The limits of `<config_dir>/store.toml`; the defaults without one."""
    if config_dir is None:
        return UnpackLimits()
    path = config_dir / "store.toml"
    try:
        with open(path, "rb") as f:
            import tomllib  # only when there is a file: ~5 ms

            doc = tomllib.load(f)
    except FileNotFoundError:
        return UnpackLimits(source=str(path))
    except (OSError, ValueError) as e:
        raise StoreError(f"{path}: {e}") from None
    unknown = sorted(set(doc) - {"max_layer_size", "min_free_space"})
    if unknown:
        raise StoreError(f"{path}: unknown setting {unknown[0]!r} (known: max_layer_size, "
                         f"min_free_space)")
    raw = doc.get("max_layer_size", "auto")
    size = 0 if raw == "auto" else parse_size(raw, f"{path}: max_layer_size")
    free = parse_size(doc.get("min_free_space", DEFAULT_MIN_FREE), f"{path}: min_free_space")
    return UnpackLimits(size, free, str(path))


class ExpansionBudget:
    """What one unpack may still write: charged as it goes, it stops the unpack at the first
    byte past the layer's limit, or when the filesystem's free space runs below the minimum."""

    def __init__(self, limits: UnpackLimits, compressed_size: int, dest: Path, what: str):
        self.limits, self.what, self.dest = limits, what, str(dest)
        self.limit = limits.for_layer(compressed_size)
        self.used = 0
        self.entries = 0
        self.next_check = 0
        self._check_free()

    def _check_free(self) -> None:
        st = os.statvfs(self.dest)
        if st.f_files and st.f_favail < MIN_FREE_INODES:
            raise LayerTooLarge(f"{self.what}: not unpacked: fewer than {MIN_FREE_INODES} "
                                f"inodes would stay free on the store's filesystem")
        if st.f_bavail * st.f_frsize < self.limits.min_free_space:
            raise LayerTooLarge(
                f"{self.what}: not unpacked: less than {human(self.limits.min_free_space)} "
                f"would stay free on the store's filesystem (min_free_space in "
                f"{self.limits.source})")
        self.next_check = self.used + FREE_CHECK_EVERY

    def charge_entry(self) -> None:
        """One entry: what its header carried is charged by the stream already; on disk it
        costs an inode and at least a block (a layer of empty directories is small on the
        wire and large on disk)."""
        self.entries += 1
        self.charge(ENTRY_COST)

    def charge(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            how = "max_layer_size" if self.limits.max_layer_size else \
                f"{AUTO_RATIO} times its compressed size, at least {human(AUTO_FLOOR)}; " \
                f"max_layer_size"
            raise LayerTooLarge(f"{self.what}: expands past {human(self.limit)}, the limit for "
                                f"one layer ({how} in {self.limits.source}); not unpacked")
        if self.used >= self.next_check:
            self._check_free()
