"""A one-line pull progress display on stderr: layers and bytes done of the total.

Shown only when stderr is a terminal and not quieted, so logs and pipes stay clean.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class Progress:
    MIN_INTERVAL = 0.1  # seconds between redraws: cheap even on slow terminals

    def __init__(self, label: str, quiet: bool = False, stream: TextIO | None = None,
                 force: bool | None = None):
        self.stream = stream or sys.stderr
        tty = self.stream.isatty() if hasattr(self.stream, "isatty") else False
        self.enabled = (tty if force is None else force) and not quiet
        self.label = label
        self.total_bytes = 0
        self.done_bytes = 0
        self.total_layers = 0
        self.done_layers = 0
        self._last = 0.0
        self._width = 0

    def start(self, total_bytes: int, total_layers: int) -> None:
        self.total_bytes, self.total_layers = total_bytes, total_layers
        self._draw(force=True)

    def advance(self, n: int) -> None:
        self.done_bytes += n
        self._draw()

    def layer_done(self) -> None:
        self.done_layers += 1
        self._draw(force=True)

    def finish(self, message: str = "") -> None:
        if not self.enabled:
            return
        self._write(message or f"{self.label}: {self.done_layers}/{self.total_layers} layers, "
                               f"{_size(self.done_bytes)}")
        self.stream.write("\n")
        self.stream.flush()

    def abort(self) -> None:
        """Leave the line so an error message that follows starts on its own line."""
        if self.enabled and self._width:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.MIN_INTERVAL:
            return
        self._last = now
        pct = f" {100 * self.done_bytes // self.total_bytes:3d}%" if self.total_bytes else ""
        self._write(f"{self.label}: layers {self.done_layers}/{self.total_layers}  "
                    f"{_size(self.done_bytes)} / {_size(self.total_bytes)}{pct}")

    def _write(self, line: str) -> None:
        pad = max(0, self._width - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._width = len(line)
