"""Container events for GetContainerEvents (kubelet's evented PLEG): what this server did
(created, started, stopped, deleted), and what happened on its own (an app that exited, a
container removed behind our back), found by a watcher comparing states every second."""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Iterator

from rktnetes.proto.runtime.v1 import api_pb2 as pb

QUEUE_SIZE = 1000    # per subscriber; a client that stops reading loses the oldest


class Hub:
    def __init__(self):
        self._mu = threading.Lock()
        self._subs: list[queue.Queue] = []

    def publish(self, ev: pb.ContainerEventResponse) -> None:
        with self._mu:
            subs = list(self._subs)
        for q in subs:
            while True:
                try:
                    q.put_nowait(ev)
                    break
                except queue.Full:
                    try:
                        q.get_nowait()
                    except queue.Empty:
                        pass

    def subscribe(self, alive: Callable[[], bool]) -> Iterator[pb.ContainerEventResponse]:
        q: queue.Queue = queue.Queue(QUEUE_SIZE)
        with self._mu:
            self._subs.append(q)
        try:
            while alive():
                try:
                    yield q.get(timeout=0.5)
                except queue.Empty:
                    continue
        finally:
            with self._mu:
                self._subs.remove(q)


class Watcher(threading.Thread):
    """Every `interval` s: each container's state; a change not announced by us becomes an
    event (`snapshot` returns {container id: (state, make_event(type))})."""

    def __init__(self, hub: Hub, snapshot: Callable[[], dict], interval: float = 1.0):
        super().__init__(name="cri-events", daemon=True)
        self.hub, self.snapshot, self.interval = hub, snapshot, interval
        self.known: dict[str, int] = {}
        self.makers: dict = {}
        self.done = threading.Event()
        self.mu = threading.Lock()

    def note(self, cid: str, state: int | None) -> None:
        """We announced it ourselves: the watcher must not announce it again."""
        with self.mu:
            if state is None:
                self.known.pop(cid, None)
            else:
                self.known[cid] = state

    def run(self) -> None:
        try:
            first = self.snapshot()
        except Exception:  # noqa: BLE001 - a torn pod directory: try at the next tick
            first = {}
        with self.mu:
            self.known = {cid: s for cid, (s, _) in first.items()}
            self.makers = {cid: m for cid, (_, m) in first.items()}
        while not self.done.wait(self.interval):
            # under the lock: a state noted meanwhile by a call is never compared with an
            # older snapshot
            with self.mu:
                try:
                    now = self.snapshot()
                except Exception:  # noqa: BLE001
                    continue
                for cid, (state, make) in now.items():
                    was = self.known.get(cid)
                    if was != state:
                        kind = {pb.CONTAINER_CREATED: pb.CONTAINER_CREATED_EVENT,
                                pb.CONTAINER_RUNNING: pb.CONTAINER_STARTED_EVENT}.get(
                            state, pb.CONTAINER_STOPPED_EVENT)
                        self.hub.publish(make(kind))
                        self.known[cid] = state
                for cid in [c for c in self.known if c not in now]:
                    del self.known[cid]
                    make = self.makers.get(cid)
                    try:   # with its sandbox's status, as kubelet needs it
                        ev = make(pb.CONTAINER_DELETED_EVENT)
                    except Exception:  # noqa: BLE001 - its pod is gone too
                        ev = pb.ContainerEventResponse(
                            container_id=cid, container_event_type=pb.CONTAINER_DELETED_EVENT,
                            created_at=time.time_ns())
                    self.hub.publish(ev)
                self.makers = {cid: m for cid, (_, m) in now.items()}

    def stop(self) -> None:
        self.done.set()
