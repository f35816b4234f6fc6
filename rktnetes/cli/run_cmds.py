"""`rkt run`, `rkt prepare` and `rkt run-prepared`."""

from __future__ import annotations

import argparse
import sys

from rktnetes.config import Paths
from rktnetes.errors import PodError, UsageError
from rktnetes.pod.store import PREPARED
from rktnetes.stage0 import prepare as prep
from rktnetes.stage0 import run as runmod

from .pod_args import add_uuid_args, pods_from_args
from .run_grammar import APP_FLAGS_HELP, parse_apps

RUN_USAGE = "rkt run [POD FLAGS] IMAGE [APP FLAGS] [-- ARGS ---] [IMAGE [APP FLAGS] ...]"
_POD_FLAGS: set[str] = set()


def _add_pod_flags(p: argparse.ArgumentParser, detach: bool) -> None:
    g = p.add_argument_group("pod flags (before the first image)")

    def add(*names, **kw):
        _POD_FLAGS.update(n for n in names if n.startswith("--"))
        g.add_argument(*names, **kw)

    add("--stage1", "--stage1-name", dest="stage1", default="default",
        help="isolation flavor: default (runc: namespaces + cgroups) or fly (chroot, host "
             "namespaces, one app)")
    add("--hostname", default="", help="the pod's host name (default: rkt-<uuid prefix>)")
    add("--interactive", "-i", action="store_true",
        help="one app, attached to this terminal's stdin (and tty if there is one)")
    add("--volume", action="append", default=[], metavar="NAME,kind=host|empty,...",
        help="a pod volume: NAME,kind=host,source=PATH[,readOnly=true] or "
             "NAME,kind=empty[,mode=0755,uid=N,gid=N] (repeatable)")
    add("--restart", default="never", choices=prep.RESTART_POLICIES,
        help="restart apps: never (default), on-failure (non-zero exit) or always")
    add("--annotation", action="append", default=[], metavar="KEY=VALUE",
        help="a pod annotation (repeatable)")
    add("--label", action="append", default=[], metavar="KEY=VALUE",
        help="a pod label (repeatable)")
    add("--net", action="append", default=[], metavar="NETWORK",
        help="none (loopback only) or host. Networking proper is not there yet: default "
             "(the default) is loopback-only, like none")
    add("--pull-policy", default="new", choices=prep.PULL_POLICIES,
        help="new (fetch images missing from the store, the default), update (always ask the "
             "source) or never")
    add("--insecure-options", action="append", default=[], metavar="OPTS",
        help="comma list: http (plain-HTTP registries), tls (skip TLS verification), all-fetch")
    add("--uuid-file-save", default="", metavar="FILE", help="write the pod's UUID to FILE")
    if detach:
        add("--detach", "-d", action="store_true",
            help="leave the pod running under its monitor; print its UUID")
    else:
        add("--quiet", "-q", action="store_true", help="print only the UUID")
    _POD_FLAGS.update({"-d", "-i", "-q"})


def register(sub, common) -> None:
    for name, detach in (("run", True), ("prepare", False)):
        what = ("Fetch missing images, prepare a pod and run it. In the foreground, rkt streams "
                "the apps' output and exits with the first failing app's exit code."
                if name == "run" else
                "Fetch missing images and prepare a pod to run later with `rkt run-prepared`; "
                "prints the pod's UUID.")
        p = sub.add_parser(name, parents=[common], help={"run": "fetch missing images, prepare a pod and run it", "prepare": "prepare a pod to run later (prints its UUID)"}[name],
                           description=what, usage=RUN_USAGE.replace("run", name, 1),
                           epilog=APP_FLAGS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_pod_flags(p, detach)
        p.add_argument("apps", nargs=argparse.REMAINDER, metavar="IMAGE [APP FLAGS] ...",
                       help="images, each followed by its app flags")
        p.set_defaults(func=cmd_run if name == "run" else cmd_prepare)

    p = sub.add_parser("run-prepared", parents=[common], help="run a prepared pod",
                       description="Run a pod made by `rkt prepare`.")
    add_uuid_args(p)
    p.add_argument("--detach", "-d", action="store_true", help="leave it running; print its UUID")
    p.add_argument("--interactive", "-i", action="store_true",
                   help="attach the pod's one app to this terminal's stdin")
    p.set_defaults(func=cmd_run_prepared)


def _options(args) -> prep.PodOptions:
    return prep.PodOptions(stage1=args.stage1, hostname=args.hostname,
                           interactive=args.interactive, volumes=args.volume,
                           restart=args.restart, annotations=args.annotation, labels=args.label,
                           net=args.net, pull_policy=args.pull_policy,
                           insecure_options=args.insecure_options,
                           quiet=getattr(args, "quiet", False) or getattr(args, "detach", False))


def _prepare(args, paths: Paths):
    parsed = parse_apps(args.apps, _POD_FLAGS)
    if parsed.globals:
        # --dir etc. given after the image: honor them as if given before the command
        paths = Paths.resolve(parsed.globals.get("dir") or str(paths.data),
                              parsed.globals.get("config_dir") or str(paths.config))
    if args.interactive and getattr(args, "detach", False):
        raise UsageError("--interactive and --detach cannot be combined")
    pod, lock = prep.prepare(paths, _options(args), parsed.apps)
    return paths, pod, lock


def cmd_prepare(args, paths: Paths) -> int:
    paths, pod, lock = _prepare(args, paths)
    lock.close()
    if args.uuid_file_save:
        _save_uuid(args.uuid_file_save, pod.uuid)
    print(pod.uuid)
    return 0


def cmd_run(args, paths: Paths) -> int:
    paths, pod, lock = _prepare(args, paths)
    try:
        rc = runmod.start(paths, pod, lock, detach=args.detach, uuid_file=args.uuid_file_save)
    except BaseException:
        if pod.state == PREPARED:
            prep.discard(paths, pod, lock)  # never ran: leave nothing behind
        else:
            lock.close()
        raise
    print(pod.uuid)
    return rc


def cmd_run_prepared(args, paths: Paths) -> int:
    (pod,) = pods_from_args(paths, args)
    lock = pod.lock()
    if not lock.acquire(blocking=False):
        lock.close()
        raise PodError(f"pod {pod.uuid} is busy (another rkt command holds it)")
    try:
        rc = runmod.start(paths, pod, lock, detach=args.detach, interactive=args.interactive)
    except BaseException:
        lock.close()
        raise
    print(pod.uuid)
    return rc


def _save_uuid(path: str, uuid: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(uuid + "\n")
    except OSError as e:
        print(f"rkt: --uuid-file-save {path}: {e.strerror or e}", file=sys.stderr)
