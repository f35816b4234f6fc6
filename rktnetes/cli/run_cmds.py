"""`rkt run`, `rkt prepare` and `rkt run-prepared`. The stage0 modules are imported by the
commands themselves: building the parser must stay cheap (every `rkt` invocation does it)."""

from __future__ import annotations

import argparse
import sys

from rktnetes.config import Paths
from rktnetes.errors import (NotFoundError, PodError, ReferenceError_, RegistryError,
                             RktError, UsageError)
from rktnetes.stage0.options import INSECURE_HELP, PULL_POLICIES, RESTART_POLICIES

from .run_grammar import APP_FLAGS_HELP, parse_apps

RUN_USAGE = "rkt run [POD FLAGS] IMAGE [APP FLAGS] [-- ARGS ---] [IMAGE [APP FLAGS] ...]"
_POD_FLAGS: set[str] = set()
NET_VALUES = ("default (the default: bridge rkt0, 172.16.28.0/24), host (the host's network "
              "namespace), none (loopback only), NAME (a network defined in "
              "<config-dir>/net.d), NAME:K=V;K=V (with CNI_ARGS); several comma-separated or "
              "repeated. fly pods always use the host network (any other value is refused)")


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
    add("--restart", default="never", choices=RESTART_POLICIES,
        help="restart apps: never (default), on-failure (non-zero exit) or always")
    add("--annotation", action="append", default=[], metavar="KEY=VALUE",
        help="a pod annotation (repeatable)")
    add("--label", action="append", default=[], metavar="KEY=VALUE",
        help="a pod label (repeatable)")
    add("--net", action="append", default=[], metavar="NETWORK",
        help="the pod's networks: " + NET_VALUES)
    add("--port", action="append", default=[], metavar="NAME:[HOSTIP:]HOSTPORT",
        help="forward a host port to the pod: NAME is an exposed port of an image or "
             "PORT[/tcp|udp] (repeatable)")
    add("--dns", action="append", default=[], metavar="IP",
        help="a name server for the pod's resolv.conf (repeatable; host: the host's file, "
             "none: an empty one)")
    add("--dns-search", action="append", default=[], metavar="DOMAIN",
        help="a search domain for the pod's resolv.conf (repeatable)")
    add("--dns-opt", action="append", default=[], metavar="OPT",
        help="a resolver option for the pod's resolv.conf, e.g. ndots:2 (repeatable)")
    add("--hosts-entry", action="append", default=[], metavar="IP=HOST",
        help="an entry for the pod's /etc/hosts (repeatable)")
    add("--pull-policy", default="new", choices=PULL_POLICIES,
        help="new (fetch images missing from the store, the default), update (always ask the "
             "source) or never")
    add("--insecure-options", action="append", default=[], metavar="OPTS", help=INSECURE_HELP)
    add("--uuid-file-save", default="", metavar="FILE", help="write the pod's UUID to FILE")
    if detach:
        add("--detach", "-d", action="store_true",
            help="leave the pod running under its monitor; print its UUID")
    else:
        add("--quiet", "-q", action="store_true", help="print only the UUID")
    # run's and prepare's own flags too, whichever command's parser is built (only the one
    # about to run is): after an image, either is named a misplaced pod flag
    _POD_FLAGS.update({"-d", "-i", "-q", "--detach", "--quiet"})


class _AppFlagBeforeImage(argparse.Action):
    """An app flag given among the pod flags: remembered, reported by the command as one line
    (argparse would print the whole usage and `unrecognized arguments`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if not getattr(namespace, "misplaced_app_flag", None):
            namespace.misplaced_app_flag = self.dest.removeprefix("app_flag_").replace("_", "-")


def add_misplaced_app_flags(p: argparse.ArgumentParser) -> None:
    """Hidden options for the app flags, so one before the first image gets a clear error."""
    from .run_grammar import APP_FLAGS

    for flag in APP_FLAGS:
        p.add_argument(flag, dest="app_flag_" + flag[2:].replace("-", "_"), nargs="?",
                       action=_AppFlagBeforeImage, default=argparse.SUPPRESS,
                       help=argparse.SUPPRESS)


def check_misplaced_app_flag(args) -> None:
    flag = getattr(args, "misplaced_app_flag", None)
    if flag:
        raise UsageError(f"--{flag} is an app flag: put it after the image it applies to")


def register(sub, common, only: str | None = None) -> None:
    for name, detach in (("run", True), ("prepare", False)):
        if only not in (None, name):
            continue
        what = ("Fetch missing images, prepare a pod and run it. In the foreground, rkt streams "
                "the apps' output and exits with the first failing app's exit code."
                if name == "run" else
                "Fetch missing images and prepare a pod to run later with `rkt run-prepared`; "
                "prints the pod's UUID.")
        p = sub.add_parser(name, parents=[common], help={"run": "fetch missing images, prepare a pod and run it", "prepare": "prepare a pod to run later (prints its UUID)"}[name],
                           description=what, usage=RUN_USAGE.replace("run", name, 1),
                           epilog=APP_FLAGS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_pod_flags(p, detach)
        add_misplaced_app_flags(p)
        p.add_argument("apps", nargs=argparse.REMAINDER, metavar="IMAGE [APP FLAGS] ...",
                       help="images, each followed by its app flags")
        p.set_defaults(func=cmd_run if name == "run" else cmd_prepare, help_parser=p)

    if only not in (None, "run-prepared"):
        return
    from .pod_args import add_uuid_args

    p = sub.add_parser("run-prepared", parents=[common], help="run a prepared pod",
                       description="Run a pod made by `rkt prepare`.")
    add_uuid_args(p)
    p.add_argument("--detach", "-d", action="store_true", help="leave it running; print its UUID")
    p.add_argument("--interactive", "-i", action="store_true",
                   help="attach the pod's one app to this terminal's stdin")
    p.add_argument("--net", action="append", default=[], metavar="NETWORK",
                   help="replace the networks the pod was prepared with by these: " + NET_VALUES)
    p.set_defaults(func=cmd_run_prepared)


def _spec_and_pull(args, parsed):
    """The PodSpec and PullOptions of a `rkt run|prepare` command line."""
    from .pod_flags import pod_spec, pull_options

    spec = pod_spec(args, parsed.apps)
    spec.tty = spec.interactive and sys.stdin.isatty()
    quiet = getattr(args, "quiet", False) or getattr(args, "detach", False)
    return spec, pull_options(args.pull_policy, args.insecure_options, quiet)


def _parsed(args, paths: Paths):
    check_misplaced_app_flag(args)
    parsed = parse_apps(args.apps, _POD_FLAGS)
    if parsed.globals:
        # --dir etc. given after the image: honor them as if given before the command
        paths = Paths.resolve(parsed.globals.get("dir") or str(paths.data),
                              parsed.globals.get("config_dir") or str(paths.config))
    if args.interactive and getattr(args, "detach", False):
        raise UsageError("--interactive and --detach cannot be combined")
    from rktnetes.stage0 import prepare as prep

    prep.check_uuid_file(args.uuid_file_save)
    return paths, parsed


def _hinted(parsed, e: RktError) -> RktError:
    """An image that cannot be had may have been no image at all (a podman habit)."""
    if isinstance(e, (NotFoundError, RegistryError, ReferenceError_)):
        hint = _command_read_as_image(parsed.apps, getattr(e, "image_position", 0))
        if hint:
            return UsageError(f"{hint} ({e})")
    return e


def _prepare(args, paths: Paths):
    paths, parsed = _parsed(args, paths)
    spec, pull = _spec_and_pull(args, parsed)
    from rktnetes.stage0 import prepare as prep

    try:
        pod, lock = prep.prepare(paths, spec, pull)
    except RktError as e:
        hinted = _hinted(parsed, e)
        if hinted is not e:
            raise hinted from None
        raise
    return paths, pod, lock


def _command_read_as_image(apps, position: int) -> str:
    """A podman habit, `rkt run IMAGE echo hi`: rkt reads `echo` as a second image. When an
    image after the first is a plain word that cannot be had, say so and show the way."""
    import re

    if position < 1 or position >= len(apps):
        return ""
    word = apps[position].image
    if not re.fullmatch(r"[A-Za-z0-9_+.-]+", word) or apps[position - 1].args is not None:
        return ""
    import shlex

    first = apps[position - 1].image
    rest = " ".join(shlex.quote(a.image) for a in apps[position + 1:])
    example = f"rkt run {first} --exec {shlex.quote(word)}" + (f" -- {rest} ---" if rest else "")
    return (f"{word!r} was read as an image: rkt run takes IMAGE [APP FLAGS] [-- ARGS ---], "
            f"so to run a command, give it with --exec: {example}")


def cmd_prepare(args, paths: Paths) -> int:
    from rktnetes.stage0 import prepare as prep

    paths, pod, lock = _prepare(args, paths)
    try:
        if args.uuid_file_save:
            prep.write_uuid_file(args.uuid_file_save, pod.uuid)
    except BaseException:
        prep.discard(paths, pod, lock)  # never ran: leave nothing behind
        raise
    lock.close()
    print(pod.uuid)
    if not args.quiet:
        sys.stdout.flush()
        print(f"prepared pod {pod.uuid}; start it with: rkt run-prepared {pod.uuid}",
              file=sys.stderr)
    return 0


def cmd_run(args, paths: Paths) -> int:
    from rktnetes.stage0 import run as runmod

    paths, parsed = _parsed(args, paths)
    spec, pull = _spec_and_pull(args, parsed)
    try:
        pod, rc = runmod.run_pod(paths, spec, pull, detach=args.detach,
                                 uuid_file=args.uuid_file_save,
                                 hold_interrupts=runmod.InterruptsHeld() if args.detach
                                 else None)
    except RktError as e:
        hinted = _hinted(parsed, e)
        if hinted is not e:
            raise hinted from None
        raise
    if not args.detach:
        _exit_now(rc)
    _check_setup(pod)
    print(pod.uuid)
    return rc


def _exit_now(code: int) -> None:
    """The pod has exited and all of it is on disk: leave without the interpreter's teardown
    of every module loaded by now (~20 ms of each `rkt run`)."""
    import os

    from rktnetes.stage0.run import flush_stdio

    flush_stdio()
    os._exit(code)


def cmd_run_prepared(args, paths: Paths) -> int:
    from rktnetes.stage0 import prepare as prep
    from rktnetes.stage0 import run as runmod

    from .pod_args import pods_from_args

    (pod,) = pods_from_args(paths, args)
    lock = pod.lock()
    if not lock.acquire(blocking=False):
        lock.close()
        from rktnetes.stage0.status import not_runnable

        raise not_runnable(pod)  # running, already run, or busy: said in `rkt list`'s words
    try:
        if args.net:
            from rktnetes.net import parse_net_flags

            runmod.check_run_mode(pod, args.detach, args.interactive)  # before it is changed
            prep.set_networks(paths, pod, parse_net_flags(args.net))
        rc = runmod.start(paths, pod, lock, detach=args.detach, interactive=args.interactive,
                          tty=args.interactive and sys.stdin.isatty(),
                          hold_interrupts=runmod.InterruptsHeld() if args.detach else None)
    except BaseException:
        lock.close()
        raise
    if not args.detach:
        _exit_now(rc)
    _check_setup(pod)
    print(pod.uuid)
    return rc


def _check_setup(pod) -> None:
    """A detached pod whose setup failed (its networks, say): say why, exit non-zero."""
    from rktnetes.errors import RktError

    try:
        pod.refresh()
        err = pod.pod_state().setup_error
    except (RktError, OSError, ValueError):
        return
    if err:
        raise PodError(f"pod {pod.uuid}: {err}")

