"""Where rktnetes keeps its data and reads its configuration."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = "/var/lib/rktnetes"
DEFAULT_CONFIG_DIR = "/etc/rktnetes"


@dataclass(frozen=True)
class Paths:
    """The data and configuration directories of one `rkt` invocation."""

    data: Path
    config: Path

    @classmethod
    def resolve(cls, data: str | None = None, config: str | None = None) -> "Paths":
        """Flags win over environment, environment over defaults."""
        d = data or os.environ.get("RKTNETES_DIR") or DEFAULT_DATA_DIR
        c = config or os.environ.get("RKTNETES_CONFIG_DIR") or DEFAULT_CONFIG_DIR
        return cls(Path(d).absolute(), Path(c).absolute())

    @property
    def store(self) -> Path:
        return self.data / "store"

    @property
    def pods(self) -> Path:
        return self.data / "pods"

    @property
    def tmp(self) -> Path:
        return self.data / "tmp"

    @property
    def registries_conf(self) -> Path:
        return self.config / "registries.conf"

    @property
    def auth_json(self) -> Path:
        return self.config / "auth.json"

    @property
    def net_d(self) -> Path:
        return self.config / "net.d"
