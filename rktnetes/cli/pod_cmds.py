"""The pod commands besides run/prepare: list, status, stop, rm, enter, cat-manifest, logs, gc.
The stage0 modules are imported by the commands themselves, to keep building the parser cheap."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone

from typing import TYPE_CHECKING

from rktnetes.config import Paths
from rktnetes.errors import RktError, UsageError

from .output import add_format_flag, print_json, print_table
from .pod_args import add_uuid_args, parse_duration, parse_since, pods_from_args, wanted_uuids

if TYPE_CHECKING:
    from rktnetes.stage0.status import PodStatus


def register(sub, common, only: str | None = None) -> None:
    p = sub.add_parser("list", parents=[common], help="list pods",
                       description="List pods: one row per app, with the app's own state "
                       "(APP STATE); the pod's UUID, state, times and networks on its first "
                       "row. Times are relative (absolute RFC 3339 with --full).")
    add_format_flag(p)
    p.add_argument("--full", action="store_true",
                   help="full UUIDs, an IMAGE ID column and absolute times")
    p.add_argument("--no-legend", action="store_true", help="no header line")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("status", parents=[common], help="show a pod's status",
                       description="A pod's state, pid, apps (exit codes, reasons such as "
                       "OOMKilled), times and networks.")
    add_uuid_args(p)
    p.add_argument("--wait", nargs="?", const="forever", default=None, metavar="DURATION",
                   help="wait for the pod to exit (at most DURATION, e.g. 30s) before printing")
    p.add_argument("--wait-ready", nargs="?", const="forever", default=None, metavar="DURATION",
                   help="wait until the pod is started and ready (at most DURATION) before "
                   "printing")
    add_format_flag(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("stop", parents=[common], help="stop running pods",
                       description="Stop pods: their apps get their stop signal (SIGTERM), then "
                       "SIGKILL once the timeout passes.")
    add_uuid_args(p, many=True)
    p.add_argument("--force", action="store_true", help="kill at once (SIGKILL)")
    p.add_argument("--timeout", default=None,
                   help="grace period before SIGKILL (default 10s; not with --force)")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("rm", parents=[common], help="remove pods",
                       description="Remove pods that are not running (stop them first), "
                       "undoing everything they created.")
    add_uuid_args(p, many=True)
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("enter", parents=[common], help="run a command inside a running app",
                       description="Run CMD (default /bin/sh) inside an app of a running pod; "
                       "exits with its exit code (127: no such command, 126: not executable).",
                       usage="rkt enter [--app NAME] [--uuid-file FILE] [UUID] [--] [CMD ...]")
    add_uuid_args(p)
    p.add_argument("--app", default="", metavar="NAME",
                   help="the app (needed when the pod has several)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD ...",
                   help="the command and its arguments (default: /bin/sh)")
    p.set_defaults(func=cmd_enter)

    p = sub.add_parser("cat-manifest", parents=[common], help="print a pod's manifest",
                       description="Print the pod manifest (pod.json) as stage0 wrote it.")
    add_uuid_args(p)
    p.add_argument("--pretty-print", action="store_true", help="indent the JSON")
    p.set_defaults(func=cmd_cat_manifest)

    p = sub.add_parser("logs", parents=[common], help="print an app's logs",
                       description="Print an app's output as recorded in its CRI-format log "
                       "(<RFC3339Nano> stdout|stderr F|P <line>), in time order: its stdout "
                       "lines on stdout, its stderr lines on stderr (--cri: every raw line on "
                       "stdout).")
    add_uuid_args(p)
    p.add_argument("--app", default="", metavar="NAME",
                   help="the app (needed when the pod has several)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output until "
                   "the app exits")
    p.add_argument("--tail", type=int, default=-1, metavar="N",
                   help="only the last N lines (default, or a negative N: all)")
    p.add_argument("--since", default="", help="only output after this: a duration ago (10m) "
                   "or an RFC 3339 time")
    p.add_argument("--cri", action="store_true", help="print the raw CRI log lines")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("gc", parents=[common], help="garbage-collect exited pods",
                       description="Mark exited pods as garbage and remove those marked longer "
                       "than the grace period; remove expired prepared pods and abandoned ones.")
    p.add_argument("--grace-period", default="30m", help="how long marked pods stay (default 30m)")
    p.add_argument("--expire-prepared", default="24h",
                   help="remove prepared pods older than this (default 24h)")
    p.add_argument("--mark-only", action="store_true", help="mark exited pods, remove nothing")
    p.set_defaults(func=cmd_gc)


# -- list / status ------------------------------------------------------------------------

def _ago(ts: float, now: float | None = None) -> str:
    if not ts:
        return "-"
    d = max(0.0, (time.time() if now is None else now) - ts)
    if d < 1:
        return "just now"
    for unit, n in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if d >= n:
            k = int(d // n)
            return f"{k} {unit}{'s' if k != 1 else ''} ago"
    return "just now"


def _iso(ts: float) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def _networks(s: PodStatus) -> str:
    """rkt's form: `default:ip4=172.16.28.2,other:ip4=10.1.0.2`; names only until the pod
    has addresses (and for host/none)."""
    out = []
    for n in s.networks:
        ips = [ip.split("/", 1)[0] for ip in (n.get("ips") or ([n["ip"]] if n.get("ip") else []))]
        addrs = ",".join(f"{'ip6' if ':' in ip else 'ip4'}={ip}" for ip in ips)
        out.append(n.get("name", "?") + (f":{addrs}" if addrs else ""))
    return ",".join(out) or "-"


def _app_state(a) -> str:
    """An app's own state for `rkt list`: running, created, exited(CODE), start failed..."""
    if a is None:
        return "-"
    if a.state == "exited":
        if a.reason == "StartError":
            return "start failed"
        if a.reason == "OOMKilled":
            return f"exited({a.exit_code}) OOMKilled"
        return "exited" if a.exit_code is None else f"exited({a.exit_code})"
    return a.state or "-"


def cmd_list(args, paths: Paths) -> int:
    from rktnetes.pod.store import PodStore
    from rktnetes.stage0.status import list_pods

    pods = list_pods(PodStore(paths.pods))
    if args.format == "json":
        print_json([s.to_json() for s in pods])
        return 0
    when = _iso if args.full else _ago
    rows = []
    for s in pods:
        uuid = s.uuid if args.full else s.uuid[:8]
        for i, a in enumerate(s.apps or [None]):
            first = i == 0
            row = [uuid if first else "", a.name if a else "-", a.image if a else "-"]
            if args.full:
                row.append(a.image_id if a else "-")
            row += [s.shown_state if first else "", _app_state(a),
                    when(s.created_at) if first else "",
                    when(s.started_at) if first else "", _networks(s) if first else ""]
            rows.append(row)
    headers = ["UUID", "APP", "IMAGE NAME", *(["IMAGE ID"] if args.full else []), "STATE",
               "APP STATE", "CREATED", "STARTED", "NETWORKS"]
    if args.no_legend:
        for r in rows:
            print("\t".join(r).rstrip())
    else:
        print_table(headers, rows)
    return 0


def cmd_status(args, paths: Paths) -> int:
    from rktnetes.stage0 import status as stmod

    if args.wait not in (None, "forever", "true", "false") and not args.uuid and not args.uuid_file:
        # `--wait UUID`: argparse gave the UUID to --wait; as rkt, a value needs `--wait=`
        args.uuid, args.wait = args.wait, "forever"
    if args.wait_ready not in (None, "forever") and not args.uuid and not args.uuid_file:
        args.uuid, args.wait_ready = args.wait_ready, "forever"   # `--wait-ready UUID`
    (pod,) = pods_from_args(paths, args)
    if args.wait_ready is not None:
        _wait_ready(pod, args.wait_ready)
    if args.wait is not None and args.wait != "false":
        timeout = None if args.wait in ("forever", "true") else parse_duration(args.wait, "--wait")
        s = stmod.wait_exited(pod, timeout)
    else:
        s = stmod.pod_status(pod)
    if args.format == "json":
        print_json(s.to_json())
        return 0
    lines = [("state", s.shown_state), ("stage1", s.stage1)]
    if s.pid:
        lines.append(("pid", str(s.pid)))
    lines += [("created", _iso(s.created_at)), ("started", _iso(s.started_at))]
    if s.finished_at:
        lines.append(("finished", _iso(s.finished_at)))
    if s.error:
        lines.append(("error", s.error))
    lines.append(("networks", _networks(s)))
    for a in s.apps:
        code = "-" if a.exit_code is None else str(a.exit_code)
        detail = f"{a.state}"
        if a.exit_code is not None:
            detail += f" exit={code}"
        if a.reason:
            detail += f" reason={a.reason}"
        if a.restarts:
            detail += f" restarts={a.restarts}"
        if a.pid and a.state == "running":
            detail += f" pid={a.pid}"
        if a.message:
            detail += f" message={json.dumps(a.message)}"
        lines.append((f"app-{a.name}", detail))
        if a.started_at:
            lines.append((f"app-{a.name}-started", _iso(a.started_at)))
        if a.finished_at:
            lines.append((f"app-{a.name}-finished", _iso(a.finished_at)))
    for k, v in lines:
        print(f"{k}={v}")
    return 0


def _wait_ready(pod, wait: str) -> None:
    from rktnetes.errors import PodError
    from rktnetes.supervise.control import wait_ready

    timeout = 1e9 if wait == "forever" else parse_duration(wait, "--wait-ready")
    if not wait_ready(pod, timeout):
        raise PodError(f"pod {pod.uuid} not ready after {wait}")


# -- stop / rm ----------------------------------------------------------------------------

def _each_pod(args, paths: Paths, action) -> int:
    """Apply `action` to each named pod; report failures one line each, go on with the rest."""
    from rktnetes.pod.store import PodStore

    store = PodStore(paths.pods)
    wanted = wanted_uuids(args, many=True)
    failed = 0
    for u in wanted:
        try:
            pod = store.find(u)
            action(pod)
            print(pod.uuid)
        except RktError as e:
            print(f"rkt: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def cmd_stop(args, paths: Paths) -> int:
    from rktnetes.stage0 import stop as stopmod

    if args.force and args.timeout is not None:
        raise UsageError("--force kills at once: it takes no --timeout")
    timeout = parse_duration("10s" if args.timeout is None else args.timeout, "--timeout")
    return _each_pod(args, paths, lambda pod: stopmod.stop(paths, pod, timeout, args.force))


def cmd_rm(args, paths: Paths) -> int:
    from rktnetes.stage0 import rm as rmmod

    return _each_pod(args, paths, lambda pod: rmmod.rm(paths, pod))


# -- enter / cat-manifest / logs ----------------------------------------------------------

def cmd_enter(args, paths: Paths) -> int:
    from rktnetes.stage0 import enter

    cmd = list(args.cmd)
    if args.uuid_file and args.uuid is not None:
        cmd.insert(0, args.uuid)  # `enter --uuid-file F CMD ...`: the first word is the command
        args.uuid = None
    if args.uuid == "--" and not args.uuid_file:
        raise UsageError("no pod UUID given (or use --uuid-file)")
    (pod,) = pods_from_args(paths, args)
    cmd = cmd[1:] if cmd[:1] == ["--"] else cmd
    return enter.enter(paths, pod, args.app, cmd or ["/bin/sh"], tty=sys.stdin.isatty())


def cmd_cat_manifest(args, paths: Paths) -> int:
    (pod,) = pods_from_args(paths, args)
    m = pod.manifest().to_json()
    if args.pretty_print:
        print(json.dumps(m, indent=2, sort_keys=True))
    else:
        print(json.dumps(m, sort_keys=True, separators=(",", ":")))
    return 0


def cmd_logs(args, paths: Paths) -> int:
    from rktnetes.stage0 import logs

    (pod,) = pods_from_args(paths, args)
    since = parse_since(args.since) if args.since else None
    if args.tail < -1:
        raise UsageError("--tail must be 0 or more")
    return logs.show(pod, args.app, follow=args.follow, tail=None if args.tail < 0 else args.tail,
                     since=since, raw=args.cri)


# -- gc -----------------------------------------------------------------------------------

def cmd_gc(args, paths: Paths) -> int:
    from rktnetes.stage0 import gc as gcmod

    grace = parse_duration(args.grace_period, "--grace-period")
    expire = parse_duration(args.expire_prepared, "--expire-prepared")
    rep = gcmod.gc(paths, grace, expire, args.mark_only)
    for u in rep.marked:
        if u not in rep.removed:
            print(f"Moved pod {u} to garbage")
    for u in rep.removed:
        print(f"Garbage collected pod {u}")
    for u, why in rep.failed:
        print(f"rkt: gc: pod {u}: {why}", file=sys.stderr)
    return 1 if rep.failed else 0
