"""Argument helpers shared by the pod commands: UUIDs (prefixes, --uuid-file) and durations."""

from __future__ import annotations

import re

from rktnetes.cli import durations
from rktnetes.config import Paths
from rktnetes.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds of every `rkt` start
    from rktnetes.pod.store import Pod

def parse_duration(s: str, flag: str = "duration") -> float:
    """Seconds in a duration (`30m`, `1h30m`, `500ms`, `0`; a bare number is seconds)."""
    try:
        return durations.parse_duration(s)
    except UsageError as e:
        raise UsageError(f"{flag}: {e}") from None


def parse_since(s: str) -> float:
    """`--since`: a duration ago (`10m`) or an RFC 3339 time; returns a Unix timestamp."""
    from datetime import datetime, timezone

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


UUID_HELP = "pod UUID or a unique prefix of it"


def add_uuid_args(p, many: bool = False) -> None:
    p.add_argument("uuids" if many else "uuid", nargs="*" if many else "?", metavar="UUID",
                   help="pod UUIDs or unique prefixes of them" if many else UUID_HELP)
    p.add_argument("--uuid-file", default="", metavar="FILE",
                   help="read the pod UUID from FILE (as written by --uuid-file-save)")


MAX_UUID_FILE = 4096


def read_uuid_file(path: str) -> str:
    """The pod UUID in a --uuid-file: its first line, stripped. A file that cannot be read, is
    not text, or holds no UUID is a usage error (one line, never a traceback)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_UUID_FILE + 1)
    except OSError as e:
        raise UsageError(f"--uuid-file {path}: {e.strerror or e}") from None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise UsageError(f"--uuid-file {path}: not a text file holding a pod UUID") from None
    lines = text.strip().splitlines()
    if not lines:
        raise UsageError(f"--uuid-file {path}: the file is empty")
    uuid = lines[0].strip()
    if len(data) > MAX_UUID_FILE or len(lines) > 1 or not re.fullmatch(r"[0-9A-Za-z-]+", uuid):
        raise UsageError(f"--uuid-file {path}: does not hold a pod UUID")
    return uuid


def wanted_uuids(args, many: bool = False) -> list[str]:
    """The UUIDs (or prefixes) given as arguments and/or with --uuid-file. None given, or an
    empty one, is a usage error."""
    if many:
        wanted = list(args.uuids)
    else:
        wanted = [] if args.uuid is None else [args.uuid]
    if getattr(args, "uuid_file", ""):
        wanted.append(read_uuid_file(args.uuid_file))
    if not wanted:
        raise UsageError("no pod UUID given (or use --uuid-file)")
    if any(not u.strip() for u in wanted):
        raise UsageError("empty pod UUID")
    if not many and len(wanted) > 1:
        raise UsageError("give one pod UUID, not both UUID and --uuid-file")
    return wanted


def pods_from_args(paths: Paths, args, many: bool = False) -> list[Pod]:
    wanted = wanted_uuids(args, many)
    from rktnetes.pod.store import PodStore

    store = PodStore(paths.pods)
    return [store.find(u) for u in wanted]
