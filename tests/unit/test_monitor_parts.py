"""The monitor's parts on their own: the log pump, what an app's end means, the requests."""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal

import pytest

from rktnetes.logs import cri
from rktnetes.supervise import exits, requests
from rktnetes.supervise.logpump import LogPump


# -- the log pump ---------------------------------------------------------------------------

def _lines(path) -> list[tuple[str, bytes]]:
    return [(e.stream, e.content) for e in cri.read_entries(path)]


def test_pump_writes_each_stream_to_the_log_and_echoes(tmp_path):
    log = tmp_path / "log"
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    echo_r, echo_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pump = LogPump(select.poll())
    pump.add("app", out_r, log_fd, "stdout", echo_w)
    pump.add("app", err_r, log_fd, "stderr")
    os.write(out_w, b"one\ntw")
    os.write(err_w, b"oops\n")
    pump.read([out_r, err_r])
    os.write(out_w, b"o\n")
    os.close(out_w)
    os.close(err_w)
    pump.read([out_r, err_r])                  # both at their end: closed
    assert pump.streams == {} and pump.fds_of("app") == []
    assert _lines(log) == [("stdout", b"one"), ("stderr", b"oops"), ("stdout", b"two")]
    os.close(echo_w)
    assert os.read(echo_r, 100) == b"one\ntwo\n"
    os.close(log_fd)


def test_a_gone_terminal_loses_the_echo_not_the_log(tmp_path):
    log = tmp_path / "log"
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    echo_r, echo_w = os.pipe()
    os.close(echo_r)                            # the terminal went away
    r, w = os.pipe()
    pump = LogPump(select.poll())
    pump.add("app", r, log_fd, "stdout", echo_w)
    old = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        os.write(w, b"a\n")
        pump.read([r])
        os.write(w, b"b\n")
        pump.read([r])
    finally:
        signal.signal(signal.SIGPIPE, old)
    assert pump.streams[r][1] == -1             # echo dropped
    pump.close_app("app")                       # drains, then closes
    assert _lines(log) == [("stdout", b"a"), ("stdout", b"b")]
    os.close(w)
    os.close(echo_w)
    os.close(log_fd)


# -- what an app's end means ----------------------------------------------------------------

def test_exit_statuses():
    assert exits.exit_status(3 << 8) == (3, 0)
    assert exits.exit_status(signal.SIGTERM) == (143, 15)
    # killed by us in place of a TERM its PID namespace's init would have had dropped
    assert exits.exit_status(signal.SIGKILL, stood_for=signal.SIGTERM) == (143, 15)
    assert exits.exit_status(signal.SIGKILL, stood_for=signal.SIGTERM, oom=True) == (137, 9)
    assert exits.reason(0, False) == "Completed" and exits.reason(1, False) == "Error"
    assert exits.reason(137, True) == "OOMKilled"


def test_restarts():
    assert exits.restart_delay("never", 1, 0) is None
    assert exits.restart_delay("on-failure", 0, 0) is None
    assert exits.restart_delay("on-failure", 2, 0) == exits.BACKOFF_FIRST
    assert exits.restart_delay("always", 0, 3) == exits.BACKOFF_FIRST * 8
    assert exits.restart_delay("always", 0, 50) == exits.BACKOFF_MAX


def test_pod_exit_code():
    assert exits.pod_exit_code(True, [(1.0, 0)]) == exits.SETUP_ERROR_CODE
    assert exits.pod_exit_code(False, [(2.0, 5), (1.0, 3), (0.5, 0)]) == 3
    assert exits.pod_exit_code(False, [(1.0, 0), (2.0, None)]) == 0


# -- requests -------------------------------------------------------------------------------

def test_stop_requests_read_as_defaults_when_junk(tmp_path):
    assert requests.pod_stop(str(tmp_path)) == (False, requests.DEFAULT_STOP_TIMEOUT)
    for doc, want in (({"timeout": 3, "force": True}, (True, 3.0)),
                      ([1, 2], (False, requests.DEFAULT_STOP_TIMEOUT)),
                      ({"timeout": "x"}, (False, requests.DEFAULT_STOP_TIMEOUT)),
                      ({"timeout": 1e400}, (False, requests.MAX_STOP_TIMEOUT)),
                      ({"timeout": -5}, (False, 0.0))):
        (tmp_path / "stop-request.json").write_text(json.dumps(doc))
        assert requests.pod_stop(str(tmp_path)) == want
    (tmp_path / "stop-request.json").write_text("{torn")
    assert requests.pod_stop(str(tmp_path)) == (False, requests.DEFAULT_STOP_TIMEOUT)


def test_app_requests(tmp_path):
    d = str(tmp_path)
    assert requests.app_stop(d) is None and not requests.app_start(d)
    (tmp_path / "stop-request").write_text('{"timeout": 2}')
    (tmp_path / "start-request").write_text("{}")
    assert requests.app_stop(d) == 2.0 and requests.app_start(d)
    requests.done(d, "start")
    requests.done(d, "stop")
    requests.done(d, "stop")                    # twice: fine
    assert requests.app_stop(d) is None and not requests.app_start(d)


def test_the_apps_lock_is_busy_while_a_command_holds_it(tmp_path):
    holder = os.open(tmp_path / "apps.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    assert requests.apps_lock_shared(str(tmp_path)) is None
    os.close(holder)
    fd = requests.apps_lock_shared(str(tmp_path))
    assert fd is not None and fd >= 0
    requests.apps_lock_release(fd)
    with pytest.raises(OSError):
        os.fstat(fd)                            # released and closed
