"""rkt's positional grammar for `rkt run|prepare`: `IMAGE [APP FLAGS] [-- ARGS ---] IMAGE ...`.

argparse parses the pod flags (before the first image); what follows is split here, because app
flags apply to the image before them and argparse has no notion of that.
"""

from __future__ import annotations

from rktnetes.errors import HelpWanted, UsageError

TYPE_CHECKING = False  # typing costs milliseconds of every `rkt` start
if TYPE_CHECKING:  # imported when parsing: the parser's help text must not need it
    from rktnetes.stage0.appspec import AppFlags

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


def parse_apps(tokens: list[str], pod_flags: set[str] = frozenset()) -> Parsed:
    """Split the tokens after the pod flags into one AppFlags per image."""
    from rktnetes.stage0.appspec import AppFlags

    out = Parsed([])
    toks = list(tokens)
    if toks and toks[0] == "--":
        toks.pop(0)
    i = 0
    cur: AppFlags | None = None
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
            if flag not in APP_FLAGS:
                if flag in pod_flags:
                    raise UsageError(f"{flag} is a pod flag: give it before the first image")
                raise UsageError(f"unknown app flag {flag}")
            if cur is None:
                raise UsageError(f"{flag} must follow an image")
            attr, kind = APP_FLAGS[flag]
            if kind == "bool":
                if eq:
                    from rktnetes.stage0.volumes import parse_bool

                    setattr(cur, attr, parse_bool(val, flag))
                else:
                    setattr(cur, attr, True)
                continue
            if not eq:
                if i >= len(toks):
                    raise UsageError(f"{flag} needs a value")
                val, i = toks[i], i + 1
            if kind == "list":
                getattr(cur, attr).append(val)
            else:
                if not val:  # `--name=` would otherwise quietly mean "no --name"
                    raise UsageError(f"{flag} needs a value (it is empty)")
                if getattr(cur, attr):
                    raise UsageError(f"{flag} given twice for {cur.image}")
                setattr(cur, attr, val)
            continue
        cur = AppFlags(image=t)
        out.apps.append(cur)
    if not out.apps:
        raise UsageError("no image given")
    return out
