"""`rkt app` flag parsing: pure functions, no pods."""

from __future__ import annotations

import argparse

import pytest

from rktnetes.cli.app_cmds import exec_flags, split_add_flags
from rktnetes.cli.run_grammar import parse_apps
from rktnetes.errors import UsageError
from rktnetes.pod.manifest import Mount, Volume
from rktnetes.stage0.apps import parse_mnt_volume


def test_split_add_flags_keeps_run_grammar_and_args():
    toks = ["builtin:busybox", "--name", "web", "--restart=always", "--privileged",
            "--supplementary-gids", "10,20", "--mnt-volume", "d,kind=empty,target=/d",
            "--allow-new-privs", "--exec", "/bin/sh", "--", "-c", "--privileged", "---",
            "--memory", "32M"]
    rest, x = split_add_flags(toks)
    assert x.restart == "always" and x.privileged and x.supplementary_gids == ["10,20"]
    assert x.mnt_volumes == ["d,kind=empty,target=/d"] and x.no_new_privileges is False
    (app,) = parse_apps(rest).apps
    assert app.name == "web" and app.exec == "/bin/sh" and app.memory == "32M"
    assert app.args == ["-c", "--privileged"]  # after `--` a flag is an argument


def test_split_add_flags_errors():
    with pytest.raises(UsageError):
        split_add_flags(["img", "--restart"])
    with pytest.raises(UsageError):
        split_add_flags(["img", "--no-new-privs", "--allow-new-privs"])
    with pytest.raises(UsageError):
        split_add_flags(["img", "--pull-policy", "sometimes"])


def test_mnt_volume():
    vol, mnt = parse_mnt_volume("name=data,kind=host,source=/srv,target=/data,readOnly=true")
    assert vol == Volume("data", "host", "/srv", readonly=True)
    assert mnt == Mount("data", "/data")
    vol, _ = parse_mnt_volume("scratch,kind=empty,mode=0700,target=/s")
    assert vol.kind == "empty" and vol.mode == "0700"
    for bad in ("data,kind=host,source=/srv", "data,kind=empty,target=rel",
                "data,kind=host,target=/x"):
        with pytest.raises(UsageError):
            parse_mnt_volume(bad)


def test_exec_flags_after_uuid():
    ns = argparse.Namespace(app="", interactive=False, tty=False,
                            cmd=["--app", "web", "-it", "--", "sh", "-c", "x"])
    assert exec_flags(ns) == ["sh", "-c", "x"] and ns.app == "web" and ns.interactive and ns.tty
    ns = argparse.Namespace(app="", interactive=False, tty=False, cmd=["--app=w", "ls", "-l"])
    assert exec_flags(ns) == ["ls", "-l"] and ns.app == "w" and not ns.interactive
    with pytest.raises(UsageError):
        exec_flags(argparse.Namespace(app="", interactive=False, tty=False, cmd=["ls"]))
