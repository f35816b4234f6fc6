"""Events derived from the on-disk state, whoever changed it (rkt, the CRI server, the monitor).

A watcher thread polls the pod state directories and the image records at a short interval
and compares what it sees with what it saw: a pod that reached `prepared` was PREPARED, one
whose monitor recorded a start was STARTED, and so on. Polling, not inotify, because the
facts live in files three directories deep (apps/<name>/state.json) that come and go with
the pods; a poll costs a few directory listings plus a read of each pod that is not yet
exited (exited pods do not change until they are removed).

Milestones are derived from cumulative facts (a start time, an exit code), not from the one
state seen at each poll, so a pod that ran and exited between two polls still yields
PREPARED, STARTED, APP_STARTED, APP_EXITED and EXITED, in that order.

Events go into an EventHub: a bounded history since the service started (ListenEvents with
since_time replays it) and a condition variable that wakes the streams.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace

from rktnetes.pod.store import EXITED_GARBAGE, GARBAGE, PREPARED, RUN
from rktnetes.proto.v1alpha import api_pb2 as pb

from .images import ImageReader
from .pods import PodReader, PodView

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiEvent:
    type: int                     # v1alpha.EventType
    id: str                       # pod UUID or image ID
    from_: str                    # pod UUID, app name or image name
    time: int                     # seconds since the epoch
    data: tuple[tuple[str, str], ...] = ()

    def message(self) -> pb.Event:
        return pb.Event(type=self.type, id=self.id, time=self.time,
                        data=[pb.KeyValue(Key=k, value=v) for k, v in self.data],
                        **{"from": self.from_})


# -- pods: cumulative facts and the events between two of them --------------------------------

@dataclass(frozen=True)
class AppMark:
    started_at: float = 0.0
    exited: tuple | None = None   # (finished_at, exit_code) once it exited


@dataclass(frozen=True)
class PodMark:
    """What is known to have happened to a pod so far."""

    dir_state: str = ""
    prepared: bool = False
    aborted: bool = False
    started_at: float = 0.0       # 0: not known to have started
    exited_at: float | None = None
    apps: dict[str, AppMark] = field(default_factory=dict)


def mark_of(v: PodView, old: PodMark | None, now: float) -> PodMark:
    o = old or PodMark()
    apps = {}
    for a in v.apps:
        s = a.state
        exited = (s.finished_at, s.exit_code) if (s.exit_code is not None or s.finished_at) else None
        apps[a.name] = AppMark(s.started_at or (o.apps.get(a.name) or AppMark()).started_at, exited)
    started_at = v.started_at_ns / 1e9 or o.started_at
    if not started_at and (v.state == pb.POD_STATE_RUNNING or any(x.started_at for x in apps.values())):
        started_at = now
    prepared = o.prepared or bool(started_at) or v.dir_state in (PREPARED, RUN, EXITED_GARBAGE)
    aborted = o.aborted or (not prepared and (v.state == pb.POD_STATE_ABORTED_PREPARE
                                              or v.dir_state == GARBAGE))
    exited_at = o.exited_at
    if exited_at is None and started_at and (v.state == pb.POD_STATE_EXITED or v.dir_state in (
            EXITED_GARBAGE, GARBAGE)):
        exited_at = v.finished_at_ns / 1e9 or now
    return PodMark(v.dir_state, prepared, aborted, started_at, exited_at, apps)


def pod_events(uuid: str, old: PodMark | None, new: PodMark | None, now: float) -> list[ApiEvent]:
    """The events between two marks of one pod; `new` None means the pod is gone from disk."""
    o = old or PodMark()
    gone = new is None
    if gone:
        if old is None:
            return []
        new = replace(o, exited_at=o.exited_at if o.exited_at is not None or not o.started_at
                      else now)
    t = int(now)
    out: list[ApiEvent] = []

    def pod(typ: int, when: float | None = None) -> None:
        out.append(ApiEvent(typ, uuid, uuid, int(when or t), (("state", new.dir_state),)))

    if new.prepared and not o.prepared:
        pod(pb.EVENT_TYPE_POD_PREPARED)
    if new.aborted and not o.aborted:
        pod(pb.EVENT_TYPE_POD_PREPARE_ABORTED)
    if new.started_at and not o.started_at:
        pod(pb.EVENT_TYPE_POD_STARTED, new.started_at)
    for name, a in new.apps.items():
        was = o.apps.get(name) or AppMark()
        if a.started_at and a.started_at != was.started_at:
            out.append(ApiEvent(pb.EVENT_TYPE_APP_STARTED, uuid, name, int(a.started_at)))
        if a.exited is not None and a.exited != was.exited:
            finished, code = a.exited
            out.append(ApiEvent(pb.EVENT_TYPE_APP_EXITED, uuid, name, int(finished or t),
                                (("exit_code", "" if code is None else str(code)),)))
    if new.exited_at is not None and o.exited_at is None:
        pod(pb.EVENT_TYPE_POD_EXITED, new.exited_at)
    if gone:
        pod(pb.EVENT_TYPE_POD_GARBAGE_COLLECTED)
    return out


# -- the hub: history and wake-ups -------------------------------------------------------------

class EventHub:
    def __init__(self, keep: int = 10000):
        self._events: deque[tuple[int, ApiEvent]] = deque(maxlen=keep)
        self._seq = 0
        self._cond = threading.Condition()

    @property
    def seq(self) -> int:
        return self._seq

    def publish(self, events: list[ApiEvent]) -> None:
        if not events:
            return
        with self._cond:
            for ev in events:
                self._seq += 1
                self._events.append((self._seq, ev))
            self._cond.notify_all()

    def after(self, seq: int, timeout: float) -> tuple[list[ApiEvent], int]:
        """Events published after `seq` (waiting up to `timeout` for one), and the new seq."""
        with self._cond:
            if self._seq <= seq:
                self._cond.wait(timeout)
            return [ev for s, ev in self._events if s > seq], self._seq


# -- the watcher ---------------------------------------------------------------------------

class Watcher:
    def __init__(self, pods: PodReader, images: ImageReader, hub: EventHub,
                 interval: float = 0.1):
        self.pods, self.images, self.hub, self.interval = pods, images, hub, interval
        self._marks: dict[str, PodMark] = {}
        self._images: dict[str, tuple[str, str]] = {}   # record file name -> (id, name)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Take the baseline (no events for what already exists), then watch."""
        self.poll(emit=False)
        self._thread = threading.Thread(target=self._run, name="api-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:        # a bad poll must not end the events for good
                log.exception("event watcher poll failed")

    def poll(self, emit: bool = True) -> None:
        now = time.time()
        imported, removed = self._poll_images(now)
        # An image is imported before a pod using it is prepared, and removed after.
        events = imported + self._poll_pods(now) + removed
        if emit:
            self.hub.publish(events)

    def _poll_pods(self, now: float) -> list[ApiEvent]:
        located: dict[str, str] = {}
        for uuid, st in self.pods.locate():
            located.setdefault(uuid, st)
        events = []
        for uuid, st in located.items():
            old = self._marks.get(uuid)
            if old and old.dir_state == st and st in (EXITED_GARBAGE, GARBAGE):
                continue                 # settled: nothing changes until it is removed
            view = self.pods.get(uuid, st)
            if view is None:
                continue                 # moving, vanishing or malformed: look again next time
            new = mark_of(view, old, now)
            events += pod_events(uuid, old, new, now)
            self._marks[uuid] = new
        for uuid in self._marks.keys() - located.keys():
            events += pod_events(uuid, self._marks.pop(uuid), None, now)
        return events

    def _poll_images(self, now: float) -> tuple[list[ApiEvent], list[ApiEvent]]:
        names = set(self.images.names())
        events, removed = [], []
        for name in names - self._images.keys():
            v = self.images.get_file(name)
            if v is None:
                continue
            self._images[name] = (v.id, v.display_name)
            events.append(ApiEvent(pb.EVENT_TYPE_IMAGE_IMPORTED, v.id, v.display_name,
                                   int(v.record.imported_at or now),
                                   tuple(("reference", r) for r in v.record.references)))
        for name in self._images.keys() - names:
            image_id, display = self._images.pop(name)
            removed.append(ApiEvent(pb.EVENT_TYPE_IMAGE_REMOVED, image_id, display, int(now)))
        return events, removed
