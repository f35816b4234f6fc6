"""Fixtures shared by every test: a private data/config dir and a way to run the real `rkt`."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from rktnetes.config import Paths
from rktnetes.store import Store


@dataclass
class RktResult:
    returncode: int
    stdout: str
    stderr: str


class Rkt:
    """Runs `python -m rktnetes` as a user would, with this test's --dir and --config-dir."""

    def __init__(self, data: Path, config: Path):
        self.data, self.config = data, config
        self.paths = Paths(data, config)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "rktnetes", "--dir", str(self.data),
                "--config-dir", str(self.config), *args]

    def __call__(self, *args: str, check: bool = True, timeout: float = 300,
                 input: str | None = None, env: dict | None = None) -> RktResult:
        p = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout,
                           input=input, env={**os.environ, **(env or {})})
        res = RktResult(p.returncode, p.stdout, p.stderr)
        if check and p.returncode != 0:
            raise AssertionError(f"rkt {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
        return res

    def fails(self, *args: str, **kw) -> RktResult:
        """Runs a command that must fail with one clear line and no traceback."""
        res = self(*args, check=False, **kw)
        assert res.returncode != 0, f"rkt {' '.join(args)} unexpectedly succeeded"
        assert "Traceback" not in res.stderr, res.stderr
        assert res.stderr.strip(), "a failure must say why on stderr"
        return res

    @property
    def store(self) -> Store:
        return Store(self.paths.store)


@pytest.fixture
def rkt(tmp_path: Path) -> Rkt:
    data, config = tmp_path / "data", tmp_path / "config"
    config.mkdir()
    return Rkt(data, config)


def store_snapshot(root: Path) -> set[str]:
    """Every path under the store (lock files aside), to check a failure left it as before."""
    if not root.exists():
        return set()
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.name.endswith(".lock")}
