"""`rkt app` flag parsing: pure functions, no pods."""

from __future__ import annotations

import argparse

import pytest

from rktnetes.cli.app_cmds import exec_flags
from rktnetes.cli.run_grammar import parse_apps
from rktnetes.cli.volume_flags import parse_mnt_volume
from rktnetes.errors import UsageError
from rktnetes.pod.manifest import Mount, Volume


def test_split_add_flags_keeps_run_grammar_and_args():
    toks = ["builtin:busybox", "--name", "web", "--restart=always", "--privileged",
            "--supplementary-gids", "10,20", "--mnt-volume", "d,kind=empty,target=/d",
            "--allow-new-privs", "--exec", "/bin/sh", "--", "-c", "--privileged", "---",
            "--memory", "32M"]
    (app,) = parse_apps(toks, add=True).apps    # `rkt app add`'s grammar: the same parser
    x = app
    assert x.restart == "always" and x.privileged and x.supplementary_gids == ["10,20"]
    assert x.mnt_volumes == ["d,kind=empty,target=/d"] and x.no_new_privileges is False
    assert app.name == "web" and app.exec == "/bin/sh" and app.memory == "32M"
    assert app.args == ["-c", "--privileged"]  # after `--` a flag is an argument


def test_split_add_flags_errors():
    with pytest.raises(UsageError):
        parse_apps(["img", "--restart"], add=True)
    with pytest.raises(UsageError):
        parse_apps(["img", "--no-new-privs", "--allow-new-privs"], add=True)
    with pytest.raises(UsageError):
        parse_apps(["img", "--pull-policy", "sometimes"], add=True)
    with pytest.raises(UsageError, match="unknown app flag --privileged"):
        parse_apps(["img", "--privileged"])           # `rkt run` has no add flags


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


# -- one clean line for bad command lines (nothing touched) --------------------------------------

def _rkt(tmp_path, capsys, *argv):
    from rktnetes.cli.main import main

    rc = main(["--dir", str(tmp_path / "data"), "--config-dir", str(tmp_path / "config"), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _created(tmp_path) -> set[str]:
    data = tmp_path / "data"
    return {str(p.relative_to(data)) for p in data.rglob("*")} if data.exists() else set()


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rkt: ") and not lines[0].startswith("rkt: rkt"), err
    assert "app busybox: app busybox" not in lines[0]
    return lines[0]


@pytest.mark.parametrize("verb", ["run", "prepare"])
@pytest.mark.parametrize("flag", ["--memory=abc", "--exec=/bin/true", "--readonly-rootfs",
                                  "--user", "--cpu=1"])
def test_app_flag_before_the_image(tmp_path, capsys, verb, flag):
    rc, out, err = _rkt(tmp_path, capsys, verb, flag, "builtin:busybox")
    name = flag.partition("=")[0]
    assert rc == 2 and out == ""
    assert _one_line(err) == f"rkt: {name} is an app flag: put it after the image it applies to"
    assert "usage:" not in err and "unrecognized" not in err
    assert not (tmp_path / "data").exists()


def test_app_add_and_exec_messages_have_one_prefix(tmp_path, capsys):
    uuid = "00000000-0000-0000-0000-000000000000"
    rc, _, err = _rkt(tmp_path, capsys, "app", "exec", uuid)
    assert rc == 2 and "--app=NAME is required" in _one_line(err)
    rc, _, err = _rkt(tmp_path, capsys, "app", "add", uuid)
    assert rc == 2 and "no image given" in _one_line(err)
    rc, _, err = _rkt(tmp_path, capsys, "app", "add", uuid, "--memory=1M", "builtin:busybox")
    assert rc == 2 and "--memory is an app flag" in _one_line(err)
    rc, _, err = _rkt(tmp_path, capsys, "app", "add", uuid, "builtin:busybox", "--name", "a",
                      "builtin:busybox")
    assert rc == 2 and "takes one image" in _one_line(err)


@pytest.mark.parametrize("args,msg", [
    (["--volume=bad", "builtin:busybox"], "kind= is required"),
    (["--volume=v,kind=host", "builtin:busybox"], "source=PATH"),
    (["--volume=v,kind=empty,color=red", "builtin:busybox"], "unknown option"),
    (["--uuid-file-save=/nonexistent/dir/u", "builtin:busybox"], "does not exist"),
    (["--uuid-file-save=/etc", "builtin:busybox"], "is a directory"),
    (["--stage1=fly", "builtin:busybox", "--memory=32M"], "fly applies no resource limits"),
    (["--stage1=fly", "builtin:busybox", "--cpu=500m"], "fly applies no resource limits"),
    (["builtin:busybox", "--user=99999999999"], "out of range"),
    (["builtin:busybox", "--group=4294967295"], "out of range"),
])
@pytest.mark.parametrize("verb", ["prepare"])  # `run` would exec the monitor if it got through
def test_rejected_before_anything_exists(tmp_path, capsys, verb, args, msg):
    rc, out, err = _rkt(tmp_path, capsys, verb, *args, "--exec", "/bin/true")
    assert rc != 0 and out == ""
    assert msg in _one_line(err)
    assert _created(tmp_path) <= {"store", "store/gc.lock"}  # no fetch, no pod directory


def test_long_values_are_shortened(tmp_path, capsys):
    from rktnetes.errors import ReferenceError_
    from rktnetes.image.reference import parse

    long = "a" * 5000
    for ref in (long, "docker://" + long, f"x/y:{long}", f"x/{long.upper()}", f"x@{long}",
                f"oci:/x:{long}!", f"builtin:{long}", f"{long}.com/x/{long}"):
        with pytest.raises(ReferenceError_) as e:
            parse(ref)
        assert len(str(e.value)) < 300, str(e.value)[:400]
        assert "\u2026" in str(e.value)
    rc, _, err = _rkt(tmp_path, capsys, "run", long)
    assert rc != 0 and len(_one_line(err)) < 300
