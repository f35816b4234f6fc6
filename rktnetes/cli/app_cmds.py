"""`rkt app sandbox|add|start|stop|rm|list|status|exec|attach`: mutable pods (see rktnetes.stage0.apps)."""

from __future__ import annotations

import argparse
import sys

from rktnetes.config import Paths
from rktnetes.errors import UsageError
from rktnetes.stage0.options import RESTART_POLICIES

from .output import add_format_flag, print_json, print_table
from .pod_args import parse_duration
from .run_grammar import APP_FLAGS_HELP, parse_apps


ADD_FLAGS_HELP = APP_FLAGS_HELP.split("\nexample:")[0] + """\
  --mnt-volume NAME,kind=host,source=PATH,target=PATH[,readOnly=true]
  --mnt-volume NAME,kind=empty[,mode=0755,uid=N,gid=N],target=PATH
                           add a pod volume and mount it into the app (repeatable)
  --restart POLICY         never, on-failure or always (default: the pod's policy)
  --supplementary-gids N,N additional groups of the app's process
  --no-new-privs           set no_new_privs (the default); --allow-new-privs clears it
  --privileged             all capabilities, all devices, no seccomp filter
  --stop-signal SIG        the signal `rkt app stop` sends first (default: the image's, SIGTERM)
  --stdin                  keep a stdin open for the app: `rkt app attach` writes to it
  --stdin-once             ... and close it when the first attach's input ends
  --annotation KEY=VALUE   an app annotation (repeatable)
  --pull-policy POLICY     new (default), update or never
  --insecure-options OPTS  as for rkt fetch (http, tls, all-fetch)

example: rkt app add $UUID builtin:busybox --name web --memory 64M \\
             --exec /bin/httpd -- -f -p 8080 ---
"""


def register(sub, common, only: str | None = None) -> None:
    p = sub.add_parser("app", parents=[common], help="mutable pods: sandbox, add, start, stop, "
                       "rm, list, status, exec, attach",
                       description="Pods whose apps come and go: `rkt app sandbox` starts an "
                       "empty pod, then apps are added, started, stopped and removed one at a "
                       "time; they share the pod's network, IPC and UTS namespaces.")
    asub = p.add_subparsers(dest="app_command", metavar="COMMAND")
    p.set_defaults(func=lambda args, paths: _no_sub(p))

    s = asub.add_parser("sandbox", parents=[common], help="create and start an empty pod",
                        description="Create and start an empty pod (its infra process holds "
                        "the network, IPC and UTS namespaces) and print its UUID once it is "
                        "ready.")
    s.add_argument("--stage1", "--stage1-name", dest="stage1", default="default",
                   help="isolation flavor (default: default, runc)")
    s.add_argument("--hostname", default="", help="the pod's host name (default: rkt-<uuid>)")
    s.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE",
                   help="a pod annotation (repeatable)")
    s.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="a pod label (repeatable)")
    s.add_argument("--volume", action="append", default=[], metavar="NAME,kind=...",
                   help="a pod volume, as for rkt run (repeatable)")
    s.add_argument("--restart", default="never", choices=RESTART_POLICIES,
                   help="the apps' default restart policy")
    s.add_argument("--net", action="append", default=[], metavar="NETWORK",
                   help="networks, as for rkt run (default: default)")
    s.add_argument("--port", action="append", default=[], metavar="PORT:[HOSTIP:]HOSTPORT",
                   help="forward a host port to a pod port, e.g. 80/tcp:8080 (repeatable)")
    s.add_argument("--dns", action="append", default=[], metavar="IP",
                   help="a name server for the pod's resolv.conf (repeatable)")
    s.add_argument("--dns-search", action="append", default=[], metavar="DOMAIN",
                   help="a search domain (repeatable)")
    s.add_argument("--dns-opt", action="append", default=[], metavar="OPT",
                   help="a resolv.conf option, e.g. ndots:2 (repeatable)")
    s.add_argument("--hosts-entry", action="append", default=[], metavar="IP=HOSTNAME",
                   help="an /etc/hosts entry (repeatable)")
    s.add_argument("--uuid-file-save", default="", metavar="FILE",
                   help="write the pod's UUID to FILE")
    s.set_defaults(func=cmd_sandbox)

    a = asub.add_parser("add", parents=[common], help="add an app to a sandbox (not started)",
                        description="Add an app to a running sandbox; it starts with "
                        "`rkt app start`.", usage="rkt app add UUID IMAGE [APP FLAGS] "
                        "[-- ARGS ---]", epilog=ADD_FLAGS_HELP,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("uuid", metavar="UUID", help="the sandbox pod (UUID or a unique prefix)")
    a.add_argument("rest", nargs=argparse.REMAINDER, metavar="IMAGE [APP FLAGS]")
    a.set_defaults(func=cmd_add, help_parser=a)

    for name, what in (("start", "start an added app"), ("stop", "stop a running app"),
                       ("rm", "remove an app that is not running"),
                       ("status", "show an app's status")):
        c = asub.add_parser(name, parents=[common], help=what, description=what[0].upper() +
                            what[1:] + ".")
        c.add_argument("uuid", metavar="UUID", help="the pod (UUID or a unique prefix)")
        c.add_argument("--app", required=True, help="the app's name")
        if name in ("stop", "rm"):
            c.add_argument("--timeout", default="10s",
                           help="grace period before SIGKILL (default 10s)")
        if name == "rm":
            c.add_argument("--force", action="store_true",
                           help="stop the app first if it is running")
        if name == "status":
            add_format_flag(c)
        c.set_defaults(func={"start": cmd_start, "stop": cmd_stop, "rm": cmd_rm,
                             "status": cmd_status}[name])

    c = asub.add_parser("list", parents=[common], help="list a pod's apps",
                        description="List a pod's apps with their states.")
    c.add_argument("uuid", metavar="UUID", help="the pod (UUID or a unique prefix)")
    c.add_argument("--no-legend", action="store_true", help="no header line")
    add_format_flag(c)
    c.set_defaults(func=cmd_list)

    c = asub.add_parser("exec", parents=[common], help="run a command in a running app",
                        description="Run CMD in the namespaces of a running app; exits with "
                        "its exit code.", usage="rkt app exec UUID --app=NAME [-i] [-t] -- CMD ...")
    c.add_argument("uuid", metavar="UUID", help="the pod (UUID or a unique prefix)")
    c.add_argument("--app", default="", help="the app's name (required)")
    c.add_argument("-i", "--interactive", action="store_true", help="pass our stdin to CMD")
    c.add_argument("-t", "--tty", action="store_true",
                   help="a terminal for CMD (when stdin is one)")
    # argparse cannot mix options after a positional with a command line that follows them
    c.add_argument("cmd", nargs=argparse.REMAINDER, metavar="[--] CMD ...")
    c.set_defaults(func=cmd_exec)

    c = asub.add_parser("attach", parents=[common], help="attach to a running app's output "
                        "(and stdin)", usage="rkt app attach UUID --app=NAME [--no-stdin]",
                        description="Show a running app's stdout and stderr as it writes them "
                        "and, if it was created with stdin (a CRI container's stdin: true), "
                        "pass ours to it. Ends when the app ends (with its exit code) or at "
                        "^C, which leaves the app running.")
    c.add_argument("uuid", metavar="UUID", help="the pod (UUID or a unique prefix)")
    c.add_argument("--app", required=True, help="the app's name")
    c.add_argument("--no-stdin", action="store_true",
                   help="do not pass our stdin, even if the app takes input")
    c.set_defaults(func=cmd_attach)


def _no_sub(p) -> int:
    p.print_help(sys.stderr)
    return 2


def _pod(paths: Paths, uuid: str):
    from rktnetes.pod.store import PodStore

    return PodStore(paths.pods).find(uuid)


def _apps():
    """rktnetes.stage0.apps, imported by the command that runs (not to build the parser)."""
    from rktnetes.stage0 import apps

    return apps


# -- sandbox / add ------------------------------------------------------------------------------

def cmd_sandbox(args, paths: Paths) -> int:
    from rktnetes.stage0.prepare import check_uuid_file
    from rktnetes.stage0.run import InterruptsHeld

    from .pod_flags import pod_spec

    check_uuid_file(args.uuid_file_save)
    spec = pod_spec(args, [], sandbox=True)
    pod = _apps().sandbox(paths, spec, uuid_file=args.uuid_file_save,
                          hold_interrupts=InterruptsHeld())
    print(pod.uuid)
    return 0


def cmd_add(args, paths: Paths) -> int:
    from .app_flags import to_spec
    from .pod_flags import pull_options

    parsed = parse_apps(args.rest, add=True)
    if parsed.globals:
        paths = Paths.resolve(parsed.globals.get("dir") or str(paths.data),
                              parsed.globals.get("config_dir") or str(paths.config))
    if len(parsed.apps) != 1:
        raise UsageError(f"app add takes one image, not {len(parsed.apps)} "
                         f"({', '.join(a.image[:80] for a in parsed.apps[:5])})")
    f = parsed.apps[0]
    spec, volumes = to_spec(f)
    pull = pull_options(f.pull_policy, f.insecure_options, quiet=True)
    name = _apps().add(paths, _pod(paths, args.uuid), spec, pull, volumes)
    print(name)
    return 0


# -- start / stop / rm --------------------------------------------------------------------------

def cmd_start(args, paths: Paths) -> int:
    _apps().start(paths, _pod(paths, args.uuid), args.app)
    return 0


def cmd_stop(args, paths: Paths) -> int:
    timeout = parse_duration(args.timeout, "--timeout")
    _apps().stop(paths, _pod(paths, args.uuid), args.app, timeout)
    return 0


def cmd_rm(args, paths: Paths) -> int:
    timeout = parse_duration(args.timeout, "--timeout")
    _apps().rm(paths, _pod(paths, args.uuid), args.app, force=args.force, timeout=timeout)
    return 0


# -- list / status / exec -----------------------------------------------------------------------

def _iso(ts: float) -> str:
    from .pod_cmds import _iso as iso

    return iso(ts)


def cmd_list(args, paths: Paths) -> int:
    vs = _apps().views(_pod(paths, args.uuid))
    if args.format == "json":
        from rktnetes.stage0.status import with_rfc3339

        print_json([with_rfc3339(v.to_json()) for v in vs])
        return 0
    rows = [[v.name, v.image, v.state, "-" if v.exit_code is None else str(v.exit_code),
             v.reason or "-", _iso(v.created_at), _iso(v.started_at)] for v in vs]
    headers = ["NAME", "IMAGE", "STATE", "EXIT", "REASON", "CREATED", "STARTED"]
    if args.no_legend:
        for r in rows:
            print("\t".join(r))
    else:
        print_table(headers, rows)
    return 0


def cmd_status(args, paths: Paths) -> int:
    v = _apps().view(_pod(paths, args.uuid), args.app)
    if args.format == "json":
        from rktnetes.stage0.status import with_rfc3339

        print_json(with_rfc3339(v.to_json()))
        return 0
    lines = [("name", v.name), ("image", v.image), ("state", v.state)]
    if v.pid:
        lines.append(("pid", str(v.pid)))
    if v.exit_code is not None:
        lines.append(("exit_code", str(v.exit_code)))
    if v.signal:
        lines.append(("signal", str(v.signal)))
    if v.reason:
        lines.append(("reason", v.reason))
    if v.message:
        lines.append(("message", v.message))
    if v.restarts:
        lines.append(("restarts", str(v.restarts)))
    lines += [("created", _iso(v.created_at)), ("started", _iso(v.started_at)),
              ("finished", _iso(v.finished_at))]
    for k, val in lines:
        print(f"{k}={val}")
    return 0


def exec_flags(args) -> list[str]:
    """Options given after the UUID (`--app NAME -i -t`) come in `args.cmd`: take them out, up
    to `--` or the first word that is not one of them."""
    rest = list(args.cmd)
    while rest:
        t = rest.pop(0)
        if t == "--":
            break
        flag, eq, val = t.partition("=")
        if flag == "--app":
            if not eq:
                if not rest:
                    raise UsageError("--app needs a value")
                val = rest.pop(0)
            args.app = val
        elif t in ("-i", "--interactive"):
            args.interactive = True
        elif t in ("-t", "--tty"):
            args.tty = True
        elif t in ("-it", "-ti"):
            args.interactive = args.tty = True
        else:
            rest.insert(0, t)
            break
    if not args.app:
        raise UsageError("--app=NAME is required (the app to run the command in)")
    return rest


def cmd_exec(args, paths: Paths) -> int:
    cmd = exec_flags(args)
    if not cmd:
        raise UsageError("no command given (rkt app exec UUID --app=NAME -- CMD ...)")
    tty = args.tty and sys.stdin.isatty()
    sys.stdout.flush()
    return _apps().exec_in(paths, _pod(paths, args.uuid), args.app, cmd, tty=tty,
                           interactive=args.interactive)


def cmd_attach(args, paths: Paths) -> int:
    from rktnetes.stage0.apps import find_app
    from rktnetes.stage0.attach import attach

    pod = _pod(paths, args.uuid)
    stdin = not args.no_stdin and find_app(pod.manifest(), args.app).stdin
    try:
        code = attach(pod, args.app, (0, 1, 2), stdin=stdin)
    except KeyboardInterrupt:     # detach: the app goes on
        return 130
    return code if code >= 0 else 0

