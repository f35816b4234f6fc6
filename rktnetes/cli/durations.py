"""Durations as users type them: `24h`, `30m`, `90s`, `1h30m`, `500ms`, `2d`, or `0`."""

from __future__ import annotations

import re

from rktnetes.errors import UsageError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = r"(\d+(?:\.\d+)?)(ms|s|m|h|d)"  # compiled (and cached by `re`) at first use


def parse_duration(s: str) -> float:
    """Seconds in `s`; a bare number is seconds. UsageError with one line if it is no duration."""
    text = s.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return _bounded(float(text), s)
    pos, total = 0, 0.0
    for m in re.finditer(_PART, text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise UsageError(f"invalid duration {s!r} (examples: 24h, 30m, 90s, 1h30m, 0)")
    return _bounded(total, s)


MAX_SECONDS = 100 * 365 * 86400.0


def _bounded(seconds: float, s: str) -> float:
    if not seconds <= MAX_SECONDS:   # inf from a number of 400 digits, say
        raise UsageError(f"duration {s[:40]!r}: longer than 100 years")
    return seconds


def argparse_duration(s: str) -> float:
    """For `type=` in argparse: its error message names the flag."""
    import argparse

    try:
        return parse_duration(s)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
