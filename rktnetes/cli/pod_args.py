"""Argument helpers shared by the pod commands: UUIDs (prefixes, --uuid-file) and durations."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from rktnetes.cli import durations
from rktnetes.config import Paths
from rktnetes.errors import UsageError

if TYPE_CHECKING:
    from rktnetes.pod.store import Pod

def parse_duration(s: str, flag: str = "duration") -> float:
    """Seconds in a duration (`30m`, `1h30m`, `500ms`, `0`; a bare number is seconds)."""
    try:
        return durations.parse_duration(s)
    except UsageError as e:
        raise UsageError(f"{flag}: {e}") from None


def parse_since(s: str) -> float:
    """`--since`: a duration ago (`10m`) or an RFC 3339 time; returns a Unix timestamp."""
    try:
        return datetime.now(timezone.utc).timestamp() - parse_duration(s, "--since")
    except UsageError:
        pass
    try:
        t = s.strip().replace("Z", "+00:00")
        # Python < 3.11 cannot parse nanoseconds; trim to microseconds.
        t = re.sub(r"(\.\d{6})\d+", r"\1", t)
        dt = datetime.fromisoformat(t)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    except ValueError:
        raise UsageError(f"--since {s!r}: expected a duration (10m) or an RFC 3339 time") from None


def add_uuid_args(p, many: bool = False) -> None:
    p.add_argument("uuids" if many else "uuid", nargs="*" if many else "?", metavar="UUID",
                   help="pod UUID or a unique prefix of it")
    p.add_argument("--uuid-file", default="", help="read the pod UUID from this file")


def pods_from_args(paths: Paths, args, many: bool = False) -> list[Pod]:
    wanted = list(args.uuids) if many else ([args.uuid] if args.uuid else [])
    if args.uuid_file:
        try:
            wanted.append(Path(args.uuid_file).read_text().strip())
        except OSError as e:
            raise UsageError(f"--uuid-file {args.uuid_file}: {e.strerror or e}") from None
    if not wanted:
        raise UsageError("no pod UUID given (or use --uuid-file)")
    if not many and len(wanted) > 1:
        raise UsageError("give one pod UUID, not both UUID and --uuid-file")
    from rktnetes.pod.store import PodStore

    store = PodStore(paths.pods)
    return [store.find(u) for u in wanted]
