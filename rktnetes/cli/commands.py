"""The command modules the CLI registers, in the order `rkt --help` lists them.

Each module exposes `register(subparsers, common_parser, only=None)` and sets
`func(args, paths) -> int`; `only`, when given, is the one command about to run (a module may
then skip building its other commands' parsers). Modules are imported by name, so that a
command's run imports and builds its own parser only (see `cli.main.build_parser`).
"""

from __future__ import annotations

import importlib

MODULES = ("fetch_cmd", "image_cmd", "run_cmds", "pod_cmds", "api_cmd", "cri_cmd", "app_cmds")

# Every top-level command but `help` -> the module that registers it. A unit test checks this
# against what the modules register.
COMMANDS = {
    "fetch": "fetch_cmd",
    "image": "image_cmd",
    "run": "run_cmds", "prepare": "run_cmds", "run-prepared": "run_cmds",
    "list": "pod_cmds", "status": "pod_cmds", "stop": "pod_cmds", "rm": "pod_cmds",
    "enter": "pod_cmds", "cat-manifest": "pod_cmds", "logs": "pod_cmds", "gc": "pod_cmds",
    "api-service": "api_cmd",
    "cri": "cri_cmd",
    "app": "app_cmds",
}


def load(name: str):
    """The command module called `name` (one of MODULES)."""
    return importlib.import_module(f"{__package__}.{name}")
