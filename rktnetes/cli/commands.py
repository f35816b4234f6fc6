"""The command modules the CLI registers, in the order `rkt --help` lists them.

Each module exposes `register(subparsers, common_parser)` and sets `func(args, paths) -> int`.
"""

from . import api_cmd, app_cmds, fetch_cmd, image_cmd, pod_cmds, run_cmds

MODULES = [fetch_cmd, image_cmd, run_cmds, pod_cmds, api_cmd, app_cmds]
