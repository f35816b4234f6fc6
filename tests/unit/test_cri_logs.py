"""The CRI log writer and reader."""

from __future__ import annotations

import os
import threading
import time

import pytest

from rktnetes.logs import cri


def write(path, stream_chunks, clock=None):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        writers = {}
        for stream, data in stream_chunks:
            w = writers.setdefault(stream, cri.LineWriter(fd, stream, clock or time.time_ns))
            w.feed(data)
        for w in writers.values():
            w.close()
    finally:
        os.close(fd)


def test_time_format_roundtrip():
    ns = 1_475_712_629_669_794_202
    assert cri.rfc3339nano(ns) == "2016-10-06T00:10:29.669794202Z"
    assert cri.parse_time("2016-10-06T00:10:29.669794202Z") == ns
    assert cri.parse_time("2016-10-06T02:10:29.5+02:00") == 1_475_712_629_500_000_000
    with pytest.raises(ValueError):
        cri.parse_time("yesterday")


def test_writer_lines_partials_and_reader(tmp_path):
    log = tmp_path / "log"
    long = b"x" * (cri.MAX_LINE + 10)
    write(log, [("stdout", b"hel"), ("stdout", b"lo\nwor"), ("stderr", b"oops\n"),
                ("stdout", b"ld\n" + long + b"\n"), ("stdout", b"tail-no-newline")])
    raw = log.read_bytes().splitlines()
    tags = [(line.split(b" ")[1], line.split(b" ")[2]) for line in raw]
    assert tags == [(b"stdout", b"F"), (b"stderr", b"F"), (b"stdout", b"F"), (b"stdout", b"P"),
                    (b"stdout", b"F"), (b"stdout", b"P")]
    entries = cri.read_entries(log)
    assert [e.content for e in entries if e.stream == "stdout"] == \
        [b"hello", b"world", long, b"tail-no-newline"]
    assert [e.content for e in cri.read_entries(log, streams=("stderr",))] == [b"oops"]
    assert [e.content for e in cri.read_entries(log, tail=2)][-1] == b"tail-no-newline"
    assert cri.read_entries(log, tail=0) == []
    assert cri.read_entries(tmp_path / "missing") == []


def test_since_and_malformed_lines(tmp_path):
    log = tmp_path / "log"
    t = iter([1_000_000_000, 2_000_000_000, 3_000_000_000])
    write(log, [("stdout", b"a\n"), ("stdout", b"b\n"), ("stdout", b"c\n")],
          clock=lambda: next(t))
    with open(log, "ab") as f:
        f.write(b"garbage line\n")
    assert [e.content for e in cri.read_entries(log, since_ns=2_000_000_000)] == [b"b", b"c"]
    assert len(cri.read_entries(log)) == 3


def test_follow_until_done(tmp_path):
    log = tmp_path / "log"
    write(log, [("stdout", b"one\n")])
    finished = threading.Event()

    def later():
        time.sleep(0.3)
        write(log, [("stdout", b"two\n")])
        time.sleep(0.2)
        write(log, [("stderr", b"three\n")])
        finished.set()

    threading.Thread(target=later).start()
    got = [e.content for e in cri.follow(log, finished.is_set, interval=0.05)]
    assert got == [b"one", b"two", b"three"]
    assert [e.content for e in cri.follow(log, lambda: True, tail=1)] == [b"three"]
