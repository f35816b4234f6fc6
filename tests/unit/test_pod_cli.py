"""The pod commands' argument helpers and views, without containers: --uuid-file, empty and
ambiguous UUIDs, state names, relative and RFC 3339 times, exec lookups in a root, help."""

from __future__ import annotations

import argparse
import os
from types import SimpleNamespace

import pytest

from rktnetes.cli import pod_args
from rktnetes.cli.main import build_parser
from rktnetes.cli.pod_cmds import _ago
from rktnetes.errors import AmbiguousError, UsageError
from rktnetes.logs import cri
from rktnetes.pod.store import EXITED_GARBAGE, GARBAGE, PREPARED, RUN, PodStore
from rktnetes.stage0.status import display_state, rfc3339, with_rfc3339
from rktnetes.host import inroot
from rktnetes.stage1.base import ExecError, check_command


# -- --uuid-file, empty and ambiguous UUIDs ----------------------------------------------------

@pytest.mark.parametrize("content,msg", [
    (os.urandom(64) + b"\xff\xfe", "not a text file"),
    (b"", "empty"),
    (b"\n \n", "empty"),
    (b"abc\ndef\n", "does not hold a pod UUID"),
    (b"x" * 5000, "does not hold a pod UUID"),
])
def test_uuid_file_bad_contents_are_usage_errors(tmp_path, content, msg):
    f = tmp_path / "u"
    f.write_bytes(content)
    with pytest.raises(UsageError) as e:
        pod_args.read_uuid_file(str(f))
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_uuid_file_unreadable_and_good(tmp_path):
    for path in (tmp_path / "missing", tmp_path):
        with pytest.raises(UsageError):
            pod_args.read_uuid_file(str(path))
    f = tmp_path / "u"
    f.write_text("0123abcd-0000-4000-8000-000000000000\n")
    assert pod_args.read_uuid_file(str(f)) == "0123abcd-0000-4000-8000-000000000000"


def test_empty_uuid_is_a_usage_error_everywhere():
    for args, many in ((SimpleNamespace(uuid="", uuid_file=""), False),
                       (SimpleNamespace(uuids=[""], uuid_file=""), True),
                       (SimpleNamespace(uuids=["abc", " "], uuid_file=""), True)):
        with pytest.raises(UsageError, match="empty pod UUID"):
            pod_args.wanted_uuids(args, many)
    with pytest.raises(UsageError, match="no pod UUID given"):
        pod_args.wanted_uuids(SimpleNamespace(uuid=None, uuid_file=""))
    with pytest.raises(UsageError, match="empty pod UUID"):
        PodStore(__import__("pathlib").Path("/nonexistent")).find("")


def test_ambiguous_prefix_lists_matching_pods(tmp_path):
    uuids = [f"abcd{i:04x}-0000-4000-8000-000000000000" for i in range(7)]
    for u in uuids[:2]:
        (tmp_path / PREPARED / u).mkdir(parents=True)
    store = PodStore(tmp_path)
    with pytest.raises(AmbiguousError) as e:
        store.find("abcd")
    assert "matches 2 pods: abcd0000, abcd0001" in str(e.value)
    for u in uuids[2:]:
        (tmp_path / PREPARED / u).mkdir(parents=True)
    with pytest.raises(AmbiguousError) as e:
        store.find("abcd")
    msg = str(e.value)
    assert "matches 7 pods" in msg and "abcd0004" in msg and "abcd0005" not in msg
    assert "(2 more)" in msg


# -- states and times ------------------------------------------------------------------------

def test_one_mapping_of_state_names():
    assert display_state(RUN) == "running"
    assert display_state(EXITED_GARBAGE) == "exited"
    assert display_state(GARBAGE) == "exited garbage"
    assert display_state(PREPARED) == "prepared"


def test_relative_times():
    now = 1_000_000.0
    assert _ago(0, now) == "-"
    assert _ago(now - 0.2, now) == "just now"
    assert _ago(now + 5, now) == "just now"   # a clock a little ahead
    assert _ago(now - 1.5, now) == "1 second ago"
    assert _ago(now - 42, now) == "42 seconds ago"
    assert _ago(now - 61, now) == "1 minute ago"
    assert _ago(now - 7200, now) == "2 hours ago"


def test_json_times_get_rfc3339_strings_next_to_numbers():
    t = 1_475_712_629.5
    assert rfc3339(t) == "2016-10-06T00:10:29.500000Z"
    d = with_rfc3339({"created_at": t, "started_at": 0.0, "name": "x",
                      "apps": [{"finished_at": t, "exit_code": 0}]})
    assert d["created_at"] == t and d["created"] == "2016-10-06T00:10:29.500000Z"
    assert d["started_at"] == 0.0 and d["started"] is None
    assert d["apps"][0]["finished"] == "2016-10-06T00:10:29.500000Z"
    assert "exit_code" in d["apps"][0] and "exit" not in d["apps"][0]


# -- logs: both streams, in time order --------------------------------------------------------

def test_read_entries_merges_streams_by_time(tmp_path):
    log = tmp_path / "log"
    with open(log, "wb") as f:   # as a restarted writer, or a reader of two files, could leave it
        f.write(cri.format_line(3_000, "stdout", cri.FULL, b"out2"))
        f.write(cri.format_line(1_000, "stdout", cri.FULL, b"out1"))
        f.write(cri.format_line(2_000, "stderr", cri.FULL, b"err1"))
        f.write(cri.format_line(2_000, "stdout", cri.FULL, b"same-time-after-err1"))
    got = [(e.stream, e.content) for e in cri.read_entries(log)]
    assert got == [("stdout", b"out1"), ("stderr", b"err1"), ("stdout", b"same-time-after-err1"),
                   ("stdout", b"out2")]
    assert [e.content for e in cri.read_entries(log, tail=2)] == [b"same-time-after-err1", b"out2"]


# -- exec lookups ------------------------------------------------------------------------------

def test_resolve_in_root_keeps_absolute_links_inside(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "busybox").write_text("")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("")
    os.symlink("/bin/busybox", root / "bin" / "sh")       # absolute: inside the root
    os.symlink("../../../../etc", root / "up")             # climbing: stops at the root
    os.symlink("loop", root / "loop")

    def resolved(path: str) -> str | None:
        fd = inroot.open_root(root)
        try:
            got = inroot.open_in(fd, path)
        except OSError:
            return None
        finally:
            os.close(fd)
        try:
            return os.readlink(inroot.fd_path(got))
        finally:
            os.close(got)

    try:
        for fallback in (False, True):   # openat2, and the walk done where it is refused
            inroot._openat2_works = False if fallback else None
            assert resolved("/bin/sh") == str(root / "bin" / "busybox")
            assert resolved("/up/passwd") == str(root / "etc" / "passwd")
            assert resolved("/nope/x") is None
            assert resolved("/loop") is None
    finally:
        inroot._openat2_works = None


def test_check_command_in_our_own_root():
    me = os.getpid()   # our /proc/PID/root is / : look commands up on this host
    check_command(me, "app", ["/bin/sh", "-c", "true"])
    check_command(me, "app", ["sh"])
    with pytest.raises(ExecError) as e:
        check_command(me, "app", ["/nonexistent/cmd"])
    assert e.value.exit_code == 127 and "app app" in str(e.value)
    with pytest.raises(ExecError) as e:
        check_command(me, "app", ["no-such-command-anywhere"])
    assert e.value.exit_code == 127 and "$PATH" in str(e.value)
    with pytest.raises(ExecError) as e:
        check_command(me, "app", ["/etc"])
    assert e.value.exit_code == 126
    check_command(0, "app", ["/nonexistent"])   # no such process: the runtime reports


# -- help ----------------------------------------------------------------------------------------

def _subparser(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


@pytest.mark.parametrize("cmd", [["enter"], ["status"], ["stop"], ["rm"], ["logs"],
                                 ["app", "add"], ["app", "start"], ["app", "stop"],
                                 ["app", "rm"], ["app", "status"], ["app", "list"],
                                 ["app", "exec"]])
def test_uuid_arguments_have_help(cmd):
    p = _subparser(build_parser(), *cmd)
    uuid = [a for a in p._actions if a.metavar == "UUID"]
    assert uuid and all(a.help for a in uuid), cmd


def test_enter_takes_uuid_file_and_no_required_cmd():
    p = _subparser(build_parser(), "enter")
    assert any("--uuid-file" in a.option_strings for a in p._actions)
    args = build_parser().parse_args(["enter"])
    assert args.uuid is None and args.cmd == []
