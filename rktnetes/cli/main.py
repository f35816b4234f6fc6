"""The `rkt` command: global flags, subcommand dispatch, and one-line errors."""

from __future__ import annotations

import argparse
import sys

from rktnetes import __version__
from rktnetes.errors import HelpWanted, RktError, UsageError

from . import commands

# Global flags that take a value, as `_global_flags` defines them.
_VALUE_FLAGS = ("--dir", "--config-dir")


class BadArguments(UsageError):
    """A command line argparse refused; `prog` names the (sub)command whose parser did."""

    def __init__(self, prog: str, message: str):
        super().__init__(f"{message} (see '{prog} --help')")
        self.prog, self.message = prog, message


class _Parser(argparse.ArgumentParser):
    """argparse's parser, but a refused command line is one line (`rkt list: argument
    --format: invalid choice ...`), as every other error, not the usage text then the message.
    Subparsers are of this class too (argparse makes them of their parent's class)."""

    def error(self, message: str):
        raise BadArguments(self.prog, message)


def _global_flags() -> argparse.ArgumentParser:
    """Flags accepted before or after any subcommand (defaults suppressed so neither overrides)."""
    p = _Parser(add_help=False)
    g = p.add_argument_group("global options")
    g.add_argument("--dir", default=argparse.SUPPRESS,
                   help="data directory (default /var/lib/rktnetes, env RKTNETES_DIR)")
    g.add_argument("--config-dir", dest="config_dir", default=argparse.SUPPRESS,
                   help="configuration directory (default /etc/rktnetes, env RKTNETES_CONFIG_DIR)")
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="log debug output and show tracebacks")
    return p


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `command` (one of `commands.COMMANDS`), only that command's
    parser: it parses that command's command lines exactly as the whole one would. With
    `command=""`, no command at all (for `rkt --version`)."""
    common = _global_flags()
    parser = _Parser(
        prog="rkt",
        parents=[common],
        description="rktnetes: run pods of OCI/Docker images with per-pod isolation "
        "(fly, or default: namespaces and cgroups through runc; kvm is planned). No daemon: "
        "state lives in the data directory.",
    )
    parser.add_argument("--version", action="version", version=f"rktnetes {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    if command is None:
        help_p = sub.add_parser("help", help="show help for a command", parents=[common])
        help_p.add_argument("topic", nargs="*", metavar="COMMAND",
                            help="the command (and subcommand) to describe, e.g. `image "
                            "export`; none: list every command")
        help_p.set_defaults(func=lambda args, paths: _help(parser, args.topic))
        for name in commands.MODULES:
            commands.load(name).register(sub, common)
    elif command:
        commands.load(commands.COMMANDS[command]).register(sub, common, only=command)
    return parser


def command_word(argv: list[str]) -> str | None:
    """The command an `rkt` command line runs, when that is plain to see: its first word after
    the global flags. "" for `--version` before any word (nothing else is looked at then). None
    when a full parser is needed: `help`, no command, an unknown one, `-h`, or a flag only
    argparse can interpret (an abbreviation, say)."""
    it = iter(argv)
    for a in it:
        if a in _VALUE_FLAGS:
            next(it, None)
        elif a == "--debug" or a.startswith(tuple(f + "=" for f in _VALUE_FLAGS)):
            continue
        elif a == "--version":
            return ""
        elif a.startswith("-"):
            return None
        else:
            return a if a in commands.COMMANDS else None
    return None


def _help(parser: argparse.ArgumentParser, topic: list[str]) -> int:
    if not topic:
        parser.print_help()
        return 0
    parser.parse_args([*topic, "--help"])
    return 0


def _configure_logging(logging, debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="rkt: %(levelname)s: %(message)s")


class _LoggingOnImport:
    """Configures `logging` for the CLI as soon as some module imports it: most commands never
    log (`rkt run` of a stored image does not), and importing it costs milliseconds of every
    start. A finder on sys.meta_path that lets the path finder find the module, and runs
    `_configure_logging` right after the module's own code; it removes itself at first use."""

    def __init__(self, debug: bool):
        self.debug = debug

    def find_spec(self, name, path=None, target=None):
        if name != "logging":
            return None
        sys.meta_path.remove(self)
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module, debug = spec.loader.exec_module, self.debug

        def exec_then_configure(module):
            exec_module(module)
            _configure_logging(module, debug)

        spec.loader.exec_module = exec_then_configure  # this one loader object only
        return spec


def _setup_logging(debug: bool) -> None:
    """--debug: configured now; otherwise when first imported (see _LoggingOnImport)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _LoggingOnImport)]
    if debug or "logging" in sys.modules:
        import logging

        _configure_logging(logging, debug)
    else:
        sys.meta_path.insert(0, _LoggingOnImport(debug))


# What to do instead, in the CLI's words, for the engine's errors that carry a hint key.
HINTS = {
    "command": "give one with --exec",
    "flavor": "use --stage1=default",
    "pull-never": "--pull-policy=never forbids fetching it",
}


def with_hint(e: Exception) -> str:
    hint = HINTS.get(getattr(e, "hint", ""), "")
    return f"{e}; {hint}" if hint else str(e)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    word = command_word(argv)
    parser = build_parser(word)
    try:
        args = parser.parse_args(argv)
    except BadArguments as e:
        # what the top parser refuses after a command (an unknown flag) is that command's
        if e.prog == "rkt" and word:
            e = BadArguments(f"rkt {word}", e.message)
        print(f"{e.prog}: {e}", file=sys.stderr)
        return e.exit_code
    debug = getattr(args, "debug", False)
    _setup_logging(debug)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    from rktnetes.config import Paths

    paths = Paths.resolve(getattr(args, "dir", None), getattr(args, "config_dir", None))
    try:
        paths.secure(create=False)
        return int(args.func(args, paths) or 0)
    except HelpWanted:
        args.help_parser.print_help()
        return 0
    except RktError as e:
        if debug:
            import logging

            logging.exception("failed")
        # (a command line refused later, by `rkt help CMD`'s parse, names its command too)
        print(f"{e.prog if isinstance(e, BadArguments) else 'rkt'}: {with_hint(e)}",
              file=sys.stderr)
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
    except OSError as e:
        # what the system refused, on a path the command line or the data directory named
        # (`--dir` naming a file, a full disk): the system's own words, not a traceback
        if debug:
            raise
        where = f": {e.filename}" if e.filename else ""
        print(f"rkt: {e.strerror or e}{where}", file=sys.stderr)
        return 1
