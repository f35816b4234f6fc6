"""The CLI builds only the parser of the command it runs: that parser must parse like the whole
one, `rkt help`/`--help`/unknown commands still see every command, and the modules on the way
to a pod's hand-over stay light (no logging, typing, tar or subprocess imports)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from rktnetes.cli import commands, run_cmds
from rktnetes.cli.main import build_parser, command_word


def _choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_commands_table_matches_what_the_modules_register():
    full = _choices(build_parser())
    assert set(full) == {"help", *commands.COMMANDS}
    assert list(full)[0] == "help"
    for name, module in commands.COMMANDS.items():
        assert name in _choices(build_parser(name)), name
        assert module in commands.MODULES


@pytest.mark.parametrize("argv,word", [
    (["run", "x"], "run"),
    (["--dir", "/d", "--config-dir=/c", "--debug", "prepare", "x"], "prepare"),
    (["--dir=/d", "run-prepared", "u"], "run-prepared"),
    (["--dir", "run", "list"], "list"),          # `run` is the value of --dir
    (["image", "list"], "image"),
    (["--version"], ""),
    (["--debug", "--version", "bogus"], ""),
    ([], None),
    (["help", "run"], None),
    (["bogus"], None),
    (["-h", "run"], None),
    (["--help"], None),
    (["--di", "/d", "run"], None),               # an abbreviation: argparse's business
    (["--", "run"], None),
    (["--dir"], None),
])
def test_command_word(argv, word):
    assert command_word(argv) == word


def _ns(parser, argv):
    ns = vars(parser.parse_args(argv))
    func = ns.pop("func", None)
    if "help_parser" in ns:  # a parser object: compare what it is the help of
        ns["help_parser"] = ns["help_parser"].prog
    return ns, getattr(func, "__qualname__", None)


@pytest.mark.parametrize("argv", [
    ["run", "--net=none", "-d", "builtin:busybox", "--exec", "/bin/true"],
    ["--dir", "/d", "prepare", "--quiet", "--volume", "v,kind=empty", "img", "--name", "a"],
    ["prepare", "--config-dir", "/c", "--debug", "img"],
    ["run-prepared", "--uuid-file", "f", "-d", "--net", "default"],
    ["image", "list", "--format", "json"],
    ["image"],
    ["app", "add", "u", "img", "--name", "x"],
    ["list", "--full"],
    ["status", "--wait=10s", "u"],
    ["gc", "--grace-period=0"],
    ["fetch", "-q", "builtin:busybox"],
    ["api-service", "--listen", "127.0.0.1:0"],
])
def test_one_command_parser_parses_like_the_whole_one(argv):
    assert _ns(build_parser(command_word(argv)), argv) == _ns(build_parser(), argv)


def test_misplaced_pod_flags_of_either_command_are_known():
    build_parser("prepare")
    assert {"--detach", "-d", "--quiet", "-q"} <= run_cmds._POD_FLAGS


def _python(code: str) -> subprocess.CompletedProcess:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=60)


def _heavy_loaded(code: str, heavy: set[str]) -> list[str]:
    """Which of `heavy` a fresh interpreter has loaded after running `code`."""
    r = _python(f"import sys\n{code}\nprint(*sorted(set({sorted(heavy)!r}) & set(sys.modules)))\n")
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_hot_path_imports_stay_light():
    assert _heavy_loaded(
        "from rktnetes.cli.main import build_parser\n"
        "build_parser('run').parse_args(['run', 'builtin:busybox'])\n"
        "import rktnetes.stage0.prepare, rktnetes.stage0.fetch, rktnetes.store.layers\n"
        "import rktnetes.net.flags",
        {"logging", "typing", "tarfile", "subprocess", "hashlib", "tempfile", "platform",
         "rktnetes.image.unpack", "rktnetes.net.cni", "rktnetes.cli.app_cmds"}) == []


def test_pod_setup_imports_stay_light():
    """What a foreground `rkt run --net=none` loads once it is its pod's monitor: the stage1
    calls' modules, but none of what only CNI networks, port forwards or warnings need."""
    assert _heavy_loaded(
        "import rktnetes.stage0.run, rktnetes.supervise.monitor\n"
        "from rktnetes.supervise import actions\n"
        "actions.preload()\n"
        "import rktnetes.pod.cleanup, rktnetes.stage1.default",
        {"logging", "typing", "subprocess", "socket", "hashlib", "tomllib",
         "rktnetes.image.manifest"}) == []


def test_pods_without_cni_networks_do_not_load_the_cni_machinery():
    """A foreground `rkt run --net=none` preloads for its own pod only: no CNI plugin
    execution, network configs, port forwards or rule sweeping."""
    cni_side = {"rktnetes.net.attach", "rktnetes.net.cni", "rktnetes.net.config",
                "rktnetes.net.ports", "rktnetes.net.sweep", "shlex"}
    assert _heavy_loaded(
        "from rktnetes.supervise import actions\n"
        "actions.preload('default', cni=False)\n"
        "import rktnetes.net.setup, rktnetes.net.dns, rktnetes.pod.cleanup", cni_side) == []
    # ... and a pod on a CNI network gets it all before its calls fork
    assert _heavy_loaded(
        "from rktnetes.supervise import actions\n"
        "actions.preload('default', cni=True)", cni_side) == sorted(cni_side)


def test_logging_configured_when_first_imported():
    r = _python(
        "import sys\n"
        "from rktnetes.cli.main import _setup_logging\n"
        "_setup_logging(False)\n"
        "assert 'logging' not in sys.modules\n"
        "import logging\n"
        "logging.getLogger('rktnetes.x').warning('careful %s', 1)\n"
        "logging.getLogger('rktnetes.x').info('not shown')\n")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "rkt: WARNING: careful 1\n"
    r = _python(
        "from rktnetes.cli.main import _setup_logging\n"
        "_setup_logging(True)\n"
        "import logging\n"
        "logging.getLogger('rktnetes.x').debug('shown')\n")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "rkt: DEBUG: shown\n"


@pytest.mark.parametrize("argv, line", [
    (["bogus"], "rkt: argument COMMAND: invalid choice: 'bogus'"),
    (["run", "--bogus", "builtin:busybox"],
     "rkt run: unrecognized arguments: --bogus (see 'rkt run --help')"),
    (["list", "--format", "yaml"], "rkt list: argument --format: invalid choice: 'yaml'"),
    (["image", "rm"], "rkt image rm: the following arguments are required: IMAGE "
                      "(see 'rkt image rm --help')"),
    (["--dir"], "rkt: argument --dir: expected one argument (see 'rkt --help')"),
    (["help", "bogus"], "rkt: argument COMMAND: invalid choice: 'bogus'"),
    (["help", "image", "bogus"], "rkt image: argument SUBCOMMAND: invalid choice: 'bogus'"),
    (["stop", "--force", "--timeout", "3s", "abc"],
     "rkt: --force kills at once: it takes no --timeout"),
    (["stop", "--timeout=", "abc"], "rkt: --timeout: invalid duration ''"),
    (["image", "export", "builtin:busybox", "-", "--overwrite"],
     "rkt: --overwrite replaces a file: it has no meaning with -"),
])
def test_refused_command_lines_are_one_line(capsys, argv, line):
    from rktnetes.cli.main import main

    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(line) and err.count("\n") == 1, err


@pytest.mark.parametrize("networks, cni", [
    ([{"name": "none"}], False), ([{"name": "host"}], False), ([], False), (None, False),
    ([{"name": "default"}], True), ([{"name": "none"}, {"name": "mynet", "args": {}}], True),
])
def test_the_foreground_monitor_preloads_cni_for_pods_on_cni_networks(networks, cni):
    from rktnetes.supervise.monitor import uses_cni

    assert uses_cni({"networks": networks} if networks is not None else {}) is cni


@pytest.mark.parametrize("argv, usage", [
    (["run", "builtin:busybox", "--help"], "usage: rkt run [POD FLAGS] IMAGE"),
    (["prepare", "img", "--name", "x", "-h"], "usage: rkt prepare [POD FLAGS] IMAGE"),
    (["app", "add", "abc", "--help"], "usage: rkt app add UUID IMAGE"),
    (["app", "add", "abc", "img", "--exec", "/x", "-h"], "usage: rkt app add UUID IMAGE"),
    (["app", "add", "abc", "--pull-policy=never", "--help"], "usage: rkt app add UUID IMAGE"),
])
def test_help_among_app_flags_prints_the_commands_help(capsys, argv, usage):
    from rktnetes.cli.main import main

    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.startswith(usage) and "--set-env NAME=VALUE" in out and err == "", (out, err)


def test_help_inside_an_apps_arguments_is_the_apps():
    from rktnetes.cli.run_grammar import parse_apps

    (app,) = parse_apps(["img", "--exec", "/bin/x", "--", "--help", "---"]).apps
    assert app.args == ["--help"]
