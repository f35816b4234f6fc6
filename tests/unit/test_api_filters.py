"""The API service's pure logic: rkt's filter rules, state mapping, event derivation, CRI logs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rktnetes.api import filters, logs, states
from rktnetes.api.events import AppMark, ApiEvent, PodMark, pod_events
from rktnetes.api.names import split_reference
from rktnetes.proto.v1alpha import api_pb2 as pb

KV = pb.KeyValue

POD = filters.PodFacts(id="u1", state=pb.POD_STATE_RUNNING, app_names=frozenset({"web", "db"}),
                       image_ids=frozenset({"sha256:a", "sha256:b"}),
                       network_names=frozenset({"default", "backend"}),
                       annotations={"team": "a", "env": "prod"}, cgroup="/pods/u1")


@pytest.mark.parametrize("f, ok", [
    (pb.PodFilter(), True),
    (pb.PodFilter(ids=["u0", "u1"]), True),                       # any id
    (pb.PodFilter(ids=["u0"]), False),
    (pb.PodFilter(states=[pb.POD_STATE_EXITED, pb.POD_STATE_RUNNING]), True),   # any state
    (pb.PodFilter(states=[pb.POD_STATE_EXITED]), False),
    (pb.PodFilter(app_names=["web", "db"]), True),                # all app names
    (pb.PodFilter(app_names=["web", "cache"]), False),
    (pb.PodFilter(image_ids=["sha256:a"]), True),                 # all image ids
    (pb.PodFilter(image_ids=["sha256:a", "sha256:c"]), False),
    (pb.PodFilter(network_names=["default", "backend"]), True),   # all networks
    (pb.PodFilter(network_names=["other"]), False),
    (pb.PodFilter(annotations=[KV(Key="team", value="a"), KV(Key="env", value="prod")]), True),
    (pb.PodFilter(annotations=[KV(Key="team", value="a"), KV(Key="env", value="dev")]), False),
    (pb.PodFilter(annotations=[KV(Key="missing", value="")]), False),
    (pb.PodFilter(cgroups=["/pods/u1", "/x"]), True),
    (pb.PodFilter(cgroups=["/pods"]), False),
    (pb.PodFilter(pod_sub_cgroups=["/pods/u1/app"]), True),
    (pb.PodFilter(pod_sub_cgroups=["/pods/u10"]), False),         # a path prefix, not a string one
    (pb.PodFilter(ids=["u1"], app_names=["web"], states=[pb.POD_STATE_RUNNING]), True),  # AND
    (pb.PodFilter(ids=["u1"], app_names=["cache"]), False),
])
def test_pod_filter_rules(f, ok):
    assert filters.pod_matches(POD, f) is ok


def test_pod_filters_are_ored():
    miss, hit = pb.PodFilter(ids=["nope"]), pb.PodFilter(app_names=["db"])
    assert filters.pod_matches_any(POD, [miss, hit])
    assert not filters.pod_matches_any(POD, [miss, miss])
    assert filters.pod_matches_any(POD, [])                      # no filters: everything


def test_pod_without_cgroup_never_matches_sub_cgroups():
    assert not filters.pod_matches(replace(POD, cgroup=""), pb.PodFilter(pod_sub_cgroups=["/"]))


IMG = filters.ImageFacts(id="sha256:e", names=("quay.io/coreos/etcd",),
                         labels={"tier": "kv", "owner": "coreos"},
                         annotations={"src": "git"}, imported_at=2000)


@pytest.mark.parametrize("f, ok", [
    (pb.ImageFilter(), True),
    (pb.ImageFilter(ids=["sha256:x", "sha256:e"]), True),
    (pb.ImageFilter(ids=["sha256:x"]), False),
    (pb.ImageFilter(prefixes=["docker.io/", "quay.io/"]), True),
    (pb.ImageFilter(prefixes=["docker.io/"]), False),
    (pb.ImageFilter(base_names=["etcd"]), True),
    (pb.ImageFilter(base_names=["etc"]), False),                   # the whole last component
    (pb.ImageFilter(keywords=["cd", "zzz"]), True),
    (pb.ImageFilter(keywords=["zzz"]), False),
    (pb.ImageFilter(full_names=["quay.io/coreos/etcd"]), True),
    (pb.ImageFilter(full_names=["etcd"]), False),
    (pb.ImageFilter(labels=[KV(Key="tier", value="kv"), KV(Key="owner", value="coreos")]), True),
    (pb.ImageFilter(labels=[KV(Key="tier", value="kv"), KV(Key="owner", value="me")]), False),
    (pb.ImageFilter(annotations=[KV(Key="src", value="git")]), True),
    (pb.ImageFilter(annotations=[KV(Key="src", value="svn")]), False),
    (pb.ImageFilter(imported_after=1999), True),
    (pb.ImageFilter(imported_after=2000), False),                  # strict bounds
    (pb.ImageFilter(imported_before=2001), True),
    (pb.ImageFilter(imported_before=2000), False),
    (pb.ImageFilter(prefixes=["quay.io/"], labels=[KV(Key="tier", value="web")]), False),  # AND
])
def test_image_filter_rules(f, ok):
    assert filters.image_matches(IMG, f) is ok


def test_image_filters_are_ored_and_any_name_counts():
    two = replace(IMG, names=("quay.io/coreos/etcd", "docker.io/library/etcd"))
    assert filters.image_matches(two, pb.ImageFilter(prefixes=["docker.io/"]))
    assert filters.image_matches_any(IMG, [pb.ImageFilter(ids=["x"]), pb.ImageFilter(base_names=["etcd"])])
    assert not filters.image_matches_any(IMG, [pb.ImageFilter(ids=["x"])])


def test_event_filter():
    ev = ApiEvent(pb.EVENT_TYPE_APP_EXITED, "u1", "web", 100)
    F = pb.EventFilter
    assert filters.event_matches(ev, None)
    assert filters.event_matches(ev, F(types=[pb.EVENT_TYPE_APP_EXITED], ids=["u1"], names=["web"]))
    assert not filters.event_matches(ev, F(types=[pb.EVENT_TYPE_POD_EXITED]))
    assert not filters.event_matches(ev, F(names=["db"]))
    assert filters.event_matches(ev, F(since_time=100, until_time=100))
    assert not filters.event_matches(ev, F(since_time=101))
    assert not filters.event_matches(ev, F(until_time=99))


@pytest.mark.parametrize("dir_state, locked, want", [
    ("embryo", True, pb.POD_STATE_EMBRYO),
    ("prepare", True, pb.POD_STATE_PREPARING),
    ("prepare", False, pb.POD_STATE_ABORTED_PREPARE),
    ("prepared", False, pb.POD_STATE_PREPARED),
    ("run", True, pb.POD_STATE_RUNNING),
    ("run", False, pb.POD_STATE_EXITED),
    ("exited-garbage", False, pb.POD_STATE_EXITED),
    ("garbage", False, pb.POD_STATE_GARBAGE),
    ("elsewhere", False, pb.POD_STATE_UNDEFINED),
])
def test_pod_state_mapping(dir_state, locked, want):
    assert states.pod_state(dir_state, locked) == want


def test_app_state_mapping():
    assert states.app_state("running", None, pod_running=True) == pb.APP_STATE_RUNNING
    assert states.app_state("running", None, pod_running=False) == pb.APP_STATE_UNDEFINED
    assert states.app_state("exited", 0, pod_running=True) == pb.APP_STATE_EXITED
    assert states.app_state("created", -1, pod_running=False) == pb.APP_STATE_EXITED
    assert states.app_state("created", None, pod_running=False) == pb.APP_STATE_UNDEFINED


@pytest.mark.parametrize("ref, want", [
    ("docker.io/library/busybox:1.36", ("docker.io/library/busybox", "1.36")),
    ("localhost:5000/app", ("localhost:5000/app", "latest")),
    ("localhost:5000/app:v1", ("localhost:5000/app", "v1")),
    ("docker://quay.io/a/b", ("quay.io/a/b", "latest")),
    ("r.io/a@sha256:" + "0" * 64, ("r.io/a", "sha256:" + "0" * 64)),
])
def test_split_reference(ref, want):
    assert split_reference(ref) == want


# -- events from marks ------------------------------------------------------------------------

def types(evs):
    return [pb.EventType.Name(e.type).replace("EVENT_TYPE_", "") for e in evs]


def test_pod_events_whole_life_at_once():
    new = PodMark("exited-garbage", prepared=True, started_at=10.0, exited_at=20.0,
                  apps={"web": AppMark(11.0, (19.0, 0))})
    assert types(pod_events("u", None, new, 30.0)) == [
        "POD_PREPARED", "POD_STARTED", "APP_STARTED", "APP_EXITED", "POD_EXITED"]


def test_pod_events_step_by_step_and_gone():
    prepared = PodMark("prepared", prepared=True)
    running = replace(prepared, dir_state="run", started_at=10.0, apps={"a": AppMark(10.0)})
    app_done = replace(running, apps={"a": AppMark(10.0, (15.0, 2))})
    assert types(pod_events("u", PodMark("prepare"), prepared, 1)) == ["POD_PREPARED"]
    assert types(pod_events("u", prepared, running, 1)) == ["POD_STARTED", "APP_STARTED"]
    evs = pod_events("u", running, app_done, 1)
    assert types(evs) == ["APP_EXITED"] and evs[0].data == (("exit_code", "2"),)
    assert evs[0].time == 15 and evs[0].from_ == "a"
    assert pod_events("u", app_done, app_done, 1) == []
    # removed while running (never seen exiting): it exited, then was collected
    assert types(pod_events("u", app_done, None, 99)) == ["POD_EXITED", "POD_GARBAGE_COLLECTED"]
    assert pod_events("u", None, None, 1) == []


def test_restarted_app_starts_again():
    first = PodMark("run", True, started_at=1.0, apps={"a": AppMark(1.0, (2.0, 1))})
    again = replace(first, apps={"a": AppMark(3.0, (2.0, 1))})
    assert types(pod_events("u", first, again, 4)) == ["APP_STARTED"]


def test_prepare_aborted():
    assert types(pod_events("u", PodMark("prepare"), PodMark("prepare", aborted=True), 1)) == [
        "POD_PREPARE_ABORTED"]


# -- CRI logs ---------------------------------------------------------------------------------

def test_parse_timestamp():
    assert logs.parse_timestamp("1970-01-01T00:00:01.5Z") == 1_500_000_000
    assert logs.parse_timestamp("1970-01-01T00:00:01.000000001Z") == 1_000_000_001
    assert logs.parse_timestamp("1970-01-01T01:00:00+01:00") == 0
    assert logs.parse_timestamp("yesterday") is None


def test_cri_parser_joins_partial_lines_per_stream():
    p = logs.CRIParser("web")
    assert p.feed("1970-01-01T00:00:01Z stdout P hel") is None
    assert p.feed("1970-01-01T00:00:02Z stderr F oops") == logs.LogLine(2 * 10**9, "stderr", "oops", "web")
    assert p.feed("1970-01-01T00:00:03Z stdout F lo world\n") == logs.LogLine(
        10**9, "stdout", "hello world", "web")
    assert p.feed("1970-01-01T00:00:04Z stdout F") == logs.LogLine(4 * 10**9, "stdout", "", "web")
    assert p.feed("garbage") is None and p.feed("1970-01-01T00:00:04Z stdin F x") is None


def test_window_and_merge():
    a = [logs.LogLine(s * 10**9 + 5, "stdout", f"a{s}") for s in (1, 3, 5)]
    b = [logs.LogLine(s * 10**9, "stdout", f"b{s}") for s in (2, 4)]
    merged = list(logs.merge([a, b]))
    assert [x.text for x in merged] == ["a1", "b2", "a3", "b4", "a5"]
    assert [x.text for x in logs.Window(since=2, until=4).select(merged)] == ["b2", "a3", "b4"]
    assert [x.text for x in logs.Window(tail=2).select(merged)] == ["b4", "a5"]
    assert [x.text for x in logs.Window(until=3, tail=1).select(merged)] == ["a3"]


def test_log_file_waits_for_a_whole_line_and_rereads_after_truncation(tmp_path):
    path = tmp_path / "log"
    f = logs.LogFile(lambda: path, "a")
    assert f.read_new() == []                                    # not there yet
    path.write_text("1970-01-01T00:00:01Z stdout F one\n1970-01-01T00:00:02Z std")
    assert [x.text for x in f.read_new()] == ["one"]
    with open(path, "a") as w:
        w.write("out F two\n")
    assert [x.text for x in f.read_new()] == ["two"]
    path.write_text("1970-01-01T00:00:03Z stdout F new\n")       # truncated and rewritten
    assert [x.text for x in f.read_new()] == ["new"]
    f.close()
