"""The `rkt` command: global flags, subcommand dispatch, and one-line errors."""

from __future__ import annotations

import argparse
import logging
import sys

from rktnetes import __version__
from rktnetes.config import Paths
from rktnetes.errors import RktError

from . import commands


def _global_flags() -> argparse.ArgumentParser:
    """Flags accepted before or after any subcommand (defaults suppressed so neither overrides)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("global options")
    g.add_argument("--dir", default=argparse.SUPPRESS,
                   help="data directory (default /var/lib/rktnetes, env RKTNETES_DIR)")
    g.add_argument("--config-dir", dest="config_dir", default=argparse.SUPPRESS,
                   help="configuration directory (default /etc/rktnetes, env RKTNETES_CONFIG_DIR)")
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="log debug output and show tracebacks")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _global_flags()
    parser = argparse.ArgumentParser(
        prog="rkt",
        parents=[common],
        description="rktnetes: run pods of OCI/Docker images with per-pod isolation "
        "(fly, or default: namespaces and cgroups through runc; kvm is planned). No daemon: "
        "state lives in the data directory.",
    )
    parser.add_argument("--version", action="version", version=f"rktnetes {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    help_p = sub.add_parser("help", help="show help for a command", parents=[common])
    help_p.add_argument("topic", nargs="*", metavar="COMMAND",
                        help="the command (and subcommand) to describe, e.g. `image export`; "
                        "none: list every command")
    help_p.set_defaults(func=lambda args, paths: _help(parser, args.topic))
    for module in commands.MODULES:
        module.register(sub, common)
    return parser


def _help(parser: argparse.ArgumentParser, topic: list[str]) -> int:
    if not topic:
        parser.print_help()
        return 0
    parser.parse_args([*topic, "--help"])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="rkt: %(levelname)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    paths = Paths.resolve(getattr(args, "dir", None), getattr(args, "config_dir", None))
    try:
        return int(args.func(args, paths) or 0)
    except RktError as e:
        if debug:
            logging.exception("failed")
        print(f"rkt: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("rkt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except PermissionError as e:
        if debug:
            raise
        print(f"rkt: permission denied: {e.filename or e} (rkt needs root for this)", file=sys.stderr)
        return 1
