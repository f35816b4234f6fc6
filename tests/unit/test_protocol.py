"""The monitor and stage0 speak one on-disk protocol (rktnetes.pod.protocol): the typed views
stage0 reads must hold exactly the fields the monitor writes, with the same defaults."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from rktnetes.pod import protocol
from rktnetes.pod.state import AppState, PodRuntime
from rktnetes.pod.store import Pod
from rktnetes.supervise import monitor


def _defaults(cls) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = ""       # AppState.name, given by every writer
    return out


def test_app_state_fields_match_the_monitors():
    assert _defaults(AppState) == protocol.APP_STATE_FIELDS
    assert monitor.APP_STATE is protocol.APP_STATE_FIELDS


def test_pod_state_fields_match():
    assert _defaults(PodRuntime) == protocol.POD_STATE_FIELDS


def test_the_monitor_writes_only_known_pod_state_fields():
    """Every keyword the monitor passes to save_pod_state is a field of the typed view (else a
    reader would drop it as unknown)."""
    tree = ast.parse(Path(monitor.__file__).read_text())
    written = {kw.arg for node in ast.walk(tree) if isinstance(node, ast.Call)
               and getattr(node.func, "attr", "") == "save_pod_state"
               for kw in node.keywords if kw.arg not in (None, "durable")}
    written |= {"stage1_state"}   # save_pod_state adds it
    assert written and written <= set(protocol.POD_STATE_FIELDS), written - set(
        protocol.POD_STATE_FIELDS)


def test_moves_and_names_are_the_same_on_both_sides(tmp_path):
    pod = Pod(tmp_path, "u", protocol.RUN)
    assert str(pod.path) == protocol.state_path(str(tmp_path), protocol.RUN, "u")
    assert str(pod.app_dir("a")) == protocol.app_dir(str(pod.path), "a")
    m = monitor.Monitor.__new__(monitor.Monitor)
    m.dir = str(pod.path)
    assert m.app_dir("a") == str(pod.app_dir("a"))
