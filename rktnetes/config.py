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

    def secure(self, create: bool = True) -> None:
        """Make the data directory exist, root's alone (0700). Everything rktnetes keeps is
        under it (image layers with their setuid files and device nodes, pod rootfs mounts,
        runc's state, logs): other host users must not reach any of it, as containerd and
        podman keep theirs. Containers are unaffected: their mounts are made by root and they
        never walk this path. An older, looser data directory is tightened; failures are left
        to the command that then uses the directory (it reports them in its words).
        create=False: only tighten one that exists (a command may still refuse its input
        and must then leave nothing behind)."""
        try:
            if not create:
                raise FileExistsError
            os.mkdir(self.data, 0o700)
        except FileNotFoundError:
            try:
                self.data.parent.mkdir(parents=True, exist_ok=True)
                os.mkdir(self.data, 0o700)
            except OSError:
                return
        except OSError:
            pass
        try:
            st = os.lstat(self.data)
        except OSError:
            return
        if os.path.isdir(self.data) and st.st_uid != os.geteuid():
            from rktnetes.errors import RktError

            # whoever owns it could replace what we store with what we would then run
            raise RktError(f"data directory {self.data} belongs to uid {st.st_uid}, not to "
                           f"us (uid {os.geteuid()}): refusing to use it")
        if st.st_mode & 0o077 and os.path.isdir(self.data):
            try:
                os.chmod(self.data, 0o700)
            except OSError:
                pass

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
