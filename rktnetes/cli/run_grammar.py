"""rkt's positional grammar for apps: `IMAGE [APP FLAGS] [-- ARGS ---] IMAGE ...` (`rkt run`,
`rkt prepare`), and `IMAGE [APP FLAGS] [-- ARGS ---]` with `rkt app add`'s own flags too: one
parser for both (AppFlags, rktnetes.cli.app_flags).

argparse parses the pod flags (before the first image); what follows is split here, because app
flags apply to the image before them and argparse has no notion of that.
"""

from __future__ import annotations

from rktnetes.errors import HelpWanted, UsageError

TYPE_CHECKING = False  # typing costs milliseconds of every `rkt` start
if TYPE_CHECKING:  # imported when parsing: the parser's help text must not need it
    from .app_flags import AppFlags

# flag -> (AppFlags attribute, kind): "str" one value, "list" repeatable, "bool" optional =value
APP_FLAGS: dict[str, tuple[str, str]] = {
    "--name": ("name", "str"),
    "--exec": ("exec", "str"),
    "--set-env": ("env", "list"),
    "--set-env-file": ("env_files", "list"),
    "--user": ("user", "str"),
    "--group": ("group", "str"),
    "--working-dir": ("working_dir", "str"),
    "--readonly-rootfs": ("readonly_rootfs", "bool"),
    "--memory": ("memory", "str"),
    "--cpu": ("cpu", "str"),
    "--caps-retain": ("caps_retain", "list"),
    "--caps-remove": ("caps_remove", "list"),
    "--mount": ("mounts", "list"),
}

# `rkt app add`'s flags beyond those: flag -> (AppFlags attribute, kind)
ADD_FLAGS: dict[str, tuple[str, str]] = {
    "--mnt-volume": ("mnt_volumes", "list"),
    "--restart": ("restart", "str"),
    "--supplementary-gids": ("supplementary_gids", "list"),
    "--no-new-privs": ("no_new_privileges", "bool"),
    "--allow-new-privs": ("allow_new_privileges", "bool"),
    "--privileged": ("privileged", "bool"),
    "--stop-signal": ("stop_signal", "str"),
    "--stdin": ("stdin", "bool"),
    "--stdin-once": ("stdin_once", "bool"),
    "--annotation": ("annotations", "list"),
    "--pull-policy": ("pull_policy", "str"),
    "--insecure-options": ("insecure_options", "list"),
}

# Global flags are also accepted among app flags (the common parser cannot see them there).
GLOBAL_FLAGS = {"--dir": "dir", "--config-dir": "config_dir", "--debug": "debug"}

APP_FLAGS_HELP = """\
app flags (after an IMAGE, applying to it):
  --name NAME              app name (default: the image's base name, made unique)
  --exec PATH              run PATH instead of the image's entrypoint and command
  -- ARGS ---              arguments for the app (replace the image's command); `---` ends them
  --set-env NAME=VALUE     set an environment variable (repeatable)
  --set-env-file FILE      read NAME=VALUE lines from FILE (repeatable)
  --user USER              user (uid or name in the image) to run as
  --group GROUP            group (gid or name in the image) to run as
  --working-dir DIR        working directory inside the app
  --readonly-rootfs        mount the app's root filesystem read-only
  --memory SIZE            memory limit, a Kubernetes quantity: 32M, 512Mi, 1G
  --cpu CPUS               CPU limit: 500m, 1, 1.5
  --caps-retain CAPS       capabilities to keep (comma list; replaces the default set)
  --caps-remove CAPS       capabilities to drop from the default set (comma list)
  --mount volume=NAME,target=PATH[,readOnly=true]
                           mount a pod volume into the app

example: rkt run --volume data,kind=empty builtin:busybox --name a --mount volume=data,target=/d \\
             --exec /bin/sh -- -c 'echo hi > /d/x' --- builtin:busybox --name b
"""


class Parsed:
    """The apps of a `rkt run` command line, and global flags given among them. (A plain
    class: every `rkt run` parses one, and a dataclass costs its start a millisecond.)"""

    def __init__(self, apps: list[AppFlags], globals: dict[str, object] | None = None):
        self.apps = apps
        self.globals = {} if globals is None else globals


def parse_apps(tokens: list[str], pod_flags: set[str] = frozenset(), add: bool = False) -> Parsed:
    """Split the tokens after the pod flags into one AppFlags per image. add: `rkt app add`'s
    grammar, its own flags allowed too (anywhere before `--`, even before the image)."""
    from rktnetes.stage0.options import PULL_POLICIES

    from .app_flags import AppFlags

    flags = {**APP_FLAGS, **ADD_FLAGS} if add else APP_FLAGS
    out = Parsed([])
    toks = list(tokens)
    if toks and toks[0] == "--":
        toks.pop(0)
    i = 0
    cur: AppFlags | None = None
    early: list[tuple[str, str, str]] = []   # add flags before the image: (attr, kind, value)
    allow: bool | None = None                # --allow-new-privs, against --no-new-privs
    while i < len(toks):
        t = toks[i]
        i += 1
        if t == "--":
            if cur is None:
                raise UsageError("`--` must follow an image")
            if cur.args is not None:
                raise UsageError(f"arguments for {cur.image} given twice")
            args = []
            while i < len(toks) and toks[i] != "---":
                args.append(toks[i])
                i += 1
            i += 1  # skip `---` (or run off the end)
            cur.args = args
            continue
        if t == "---":
            raise UsageError("`---` without a preceding `-- ARGS`")
        if t.startswith("-") and t != "-":
            flag, eq, val = t.partition("=")
            if t in ("-h", "--help"):
                raise HelpWanted()
            if flag in GLOBAL_FLAGS:
                key = GLOBAL_FLAGS[flag]
                if key == "debug":
                    out.globals[key] = True
                else:
                    if not eq:
                        if i >= len(toks):
                            raise UsageError(f"{flag} needs a value")
                        val, i = toks[i], i + 1
                    out.globals[key] = val
                continue
            if flag not in flags:
                if flag in pod_flags:
                    raise UsageError(f"{flag} is a pod flag: give it before the first image")
                raise UsageError(f"unknown app flag {flag}")
            attr, kind = flags[flag]
            if cur is None and not (add and flag in ADD_FLAGS):
                if add:
                    raise UsageError(f"{flag} is an app flag: put it after the image it "
                                     f"applies to")
                raise UsageError(f"{flag} must follow an image")
            if kind == "bool":
                if eq:
                    from .volume_flags import parse_bool

                    v = parse_bool(val, flag)
                else:
                    v = True
            else:
                if not eq:
                    if i >= len(toks):
                        raise UsageError(f"{flag} needs a value")
                    val, i = toks[i], i + 1
                v = val
            if attr == "allow_new_privileges":
                allow = v
                continue
            if cur is None:
                early.append((attr, kind, v))
                continue
            _set(cur, flag, attr, kind, v)
            continue
        cur = AppFlags(image=t)
        out.apps.append(cur)
        for attr, kind, v in early:
            _set(cur, "", attr, kind, v)
        early = []
    if not out.apps:
        raise UsageError("no image given" if not add else
                         "no image given (usage: app add UUID IMAGE [APP FLAGS])")
    if add:
        app = out.apps[0]
        if allow is not None:
            if app.no_new_privileges is not None and app.no_new_privileges == allow:
                raise UsageError("--no-new-privs and --allow-new-privs contradict each other")
            app.no_new_privileges = not allow
        if app.pull_policy not in PULL_POLICIES:
            raise UsageError(f"--pull-policy={app.pull_policy}: use new, update or never")
    return out


def _set(cur: AppFlags, flag: str, attr: str, kind: str, v) -> None:
    if kind == "bool":
        setattr(cur, attr, v)
    elif kind == "list":
        getattr(cur, attr).append(v)
    else:
        if not v and flag:  # `--name=` would otherwise quietly mean "no --name"
            raise UsageError(f"{flag} needs a value (it is empty)")
        if getattr(cur, attr) and attr not in ("pull_policy",) and flag:
            raise UsageError(f"{flag} given twice for {cur.image}")
        setattr(cur, attr, v)
