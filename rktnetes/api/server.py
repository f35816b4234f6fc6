"""`rkt api-service`: rkt's read-only v1alpha PublicAPI over gRPC, answered from the data dir.

The service only reads: pods and images through the caching readers, logs through read-only
file handles, events from the watcher. It holds no lock beyond momentary shared probes and
writes nothing under the data directory, so it can be started, stopped or restarted at any
time without affecting pods. Errors reach clients as gRPC status codes; an unexpected one is
logged and reported as INTERNAL rather than ending the process.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import os
import re
import signal
import socket
import stat
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_reflection.v1alpha import reflection

from rktnetes import __version__
from rktnetes.config import Paths
from rktnetes.errors import RktError, UsageError
from rktnetes.pod.store import STATES
from rktnetes.proto.v1alpha import api_pb2 as pb
from rktnetes.proto.v1alpha import api_pb2_grpc as pb_grpc

from rktnetes.proto.serving import (RUN_DIR, Listen, bind, clear_stale_socket,  # noqa: F401
                                    parse_listen)

from . import filters, logs, wire
from .events import EventHub, Watcher
from .images import ImageReader
from .pods import PodReader

log = logging.getLogger(__name__)

API_VERSION = "1.0.0-alpha"        # the v1alpha API version rkt reports
DEFAULT_LISTEN = "127.0.0.1:15441"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PublicAPI"].full_name
STREAM_TICK = 0.25                 # how often streams notice a gone client or a deadline


def _report(name: str, e: Exception, context) -> None:
    if context.code() is not None:    # context.abort() already chose the status
        raise e
    log.exception("%s failed", name)
    context.abort(grpc.StatusCode.INTERNAL, f"{name}: {e}")


def _guarded(fn):
    """Unexpected exceptions become INTERNAL for this call only; the service keeps serving."""
    if fn.__name__ in STREAMS:
        @functools.wraps(fn)
        def stream(self, request, context):
            try:
                yield from fn(self, request, context)
            except Exception as e:
                _report(fn.__name__, e, context)
        return stream

    @functools.wraps(fn)
    def unary(self, request, context):
        try:
            return fn(self, request, context)
        except Exception as e:
            _report(fn.__name__, e, context)
    return unary


STREAMS = ("ListenEvents", "GetLogs")


def _only(context, found: list, what: str, wanted: str):
    """The one pod or image an Inspect call names; aborts the call on none or several."""
    if not found:
        context.abort(grpc.StatusCode.NOT_FOUND, f"no {what} {wanted!r}")
    if len(found) > 1:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                      f"{what} id prefix {wanted!r} matches {len(found)} {what}s")
    return found[0]


class PublicAPI(pb_grpc.PublicAPIServicer):
    def __init__(self, paths: Paths, hub: EventHub | None = None):
        self.paths = paths
        self.pods = PodReader(paths.pods)
        self.images = ImageReader(paths.store)
        self.hub = hub or EventHub()

    # -- info, pods, images -----------------------------------------------------------------

    @_guarded
    def GetInfo(self, request, context):
        return pb.GetInfoResponse(info=pb.Info(
            rkt_version=__version__, appc_version="", api_version=API_VERSION,
            global_flags=pb.GlobalFlags(dir=str(self.paths.data),
                                        system_config_dir=str(self.paths.config))))

    @_guarded
    def ListPods(self, request, context) -> bytes:
        # A serialized ListPodsResponse assembled from each pod's cached bytes (see wire.py).
        fs = list(request.filters)
        return b"".join(v.framed(request.detail) for v in self.pods.all()
                        if not fs or filters.pod_matches_any(v.facts(), fs))

    @_guarded
    def InspectPod(self, request, context):
        if not request.id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a pod id is required")
        pod = _only(context, self.pods.find(request.id), "pod", request.id)
        return pb.InspectPodResponse(pod=pod.message(detail=True))

    @_guarded
    def ListImages(self, request, context) -> bytes:
        fs = list(request.filters)
        return b"".join(v.framed(request.detail) for v in self.images.all()
                        if not fs or filters.image_matches_any(v.facts(), fs))

    @_guarded
    def InspectImage(self, request, context):
        if not request.id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "an image id is required")
        image = _only(context, self.images.find(request.id), "image", request.id)
        return pb.InspectImageResponse(image=image.message(detail=True))

    # -- streams ----------------------------------------------------------------------------

    @_guarded
    def ListenEvents(self, request, context):
        f = request.filter if request.HasField("filter") else None
        until = f.until_time if f else 0
        # since_time replays the history kept since the service started; without it, only
        # what happens from now on.
        seq = 0 if f and f.since_time else self.hub.seq
        while context.is_active():
            events, seq = self.hub.after(seq, STREAM_TICK)
            batch = [e.message() for e in events if filters.event_matches(e, f)]
            if batch:
                yield pb.ListenEventsResponse(events=batch)
            if until and time.time() > until:
                return

    @_guarded
    def GetLogs(self, request, context):
        if not request.pod_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a pod id is required")
        found = self.pods.find(request.pod_id)
        if len(found) != 1:
            context.abort(grpc.StatusCode.NOT_FOUND if not found else
                          grpc.StatusCode.FAILED_PRECONDITION,
                          f"pod {request.pod_id!r}: {len(found)} pods match")
        pod = found[0]
        names = [a.name for a in pod.apps]
        if request.app_name:
            if request.app_name not in names:
                context.abort(grpc.StatusCode.NOT_FOUND,
                              f"pod {pod.uuid} has no app {request.app_name!r}")
            names = [request.app_name]
        window = logs.Window(request.since_time, request.until_time, max(request.lines, 0))
        files = [logs.LogFile(functools.partial(self._log_path, pod.uuid, n), n) for n in names]
        try:
            lines = window.select(logs.merge([f.read_new() for f in files]))
            if lines or not request.follow:
                yield pb.GetLogsResponse(lines=[x.text for x in lines])
            if request.follow:
                yield from self._follow(pod.uuid, files, window, context)
        finally:
            for f in files:
                f.close()

    def _pod_dir(self, uuid: str) -> Path | None:
        """Where the pod is now: it may have moved since it was looked up."""
        for st in STATES:
            if os.path.isdir(self.paths.pods / st / uuid):
                return self.paths.pods / st / uuid
        return None

    def _log_path(self, uuid: str, app: str) -> Path | None:
        from rktnetes.pod.protocol import app_log_path, read_json

        d = self._pod_dir(uuid)
        if not d:
            return None
        try:
            entry = next((a for a in read_json(str(d / "pod.json")).get("apps", [])
                          if a.get("name") == app), {})
        except (OSError, ValueError, AttributeError):
            entry = {}
        return Path(app_log_path(str(d / "apps" / app), entry))

    def _follow(self, uuid, files, window, context):
        """New lines as they are written, until the client leaves, until_time passes, or the
        pod is gone from disk (its files were read to the end first)."""
        last_check = time.monotonic()
        while context.is_active():
            lines = [x for x in logs.merge([f.read_new() for f in files]) if window.admits(x)]
            if lines:
                yield pb.GetLogsResponse(lines=[x.text for x in lines])
            if window.until and time.time() > window.until:
                return
            if time.monotonic() - last_check > 1.0:
                last_check = time.monotonic()
                if self._pod_dir(uuid) is None:       # removed: drain what is left, then end
                    rest = [x for x in logs.merge([f.read_new() for f in files]) if window.admits(x)]
                    if rest:
                        yield pb.GetLogsResponse(lines=[x.text for x in rest])
                    return
            time.sleep(0.1)


def handlers(api: PublicAPI) -> grpc.GenericRpcHandler:
    """The PublicAPI's method handlers, as the generated add_PublicAPIServicer_to_server makes
    them, except that responses may also be pre-serialized bytes (ListPods, ListImages)."""
    service = pb.DESCRIPTOR.services_by_name["PublicAPI"]
    table = {}
    for m in service.methods:
        make = (grpc.unary_stream_rpc_method_handler if m.server_streaming
                else grpc.unary_unary_rpc_method_handler)
        request_type = getattr(pb, m.input_type.name)
        table[m.name] = make(getattr(api, m.name),
                             request_deserializer=request_type.FromString,
                             response_serializer=wire.serialize)
    return grpc.method_handlers_generic_handler(service.full_name, table)


# -- serving -----------------------------------------------------------------------------------

@dataclass
class Running:
    server: grpc.Server
    watcher: Watcher
    address: str              # what clients dial: "127.0.0.1:PORT" or "unix:///path"

    def stop(self, grace: float = 1.0) -> None:
        self.watcher.stop()
        self.server.stop(grace).wait()


def start(paths: Paths, listen: str = DEFAULT_LISTEN, workers: int = 64,
          poll_interval: float = 0.1) -> Running:
    api = PublicAPI(paths)
    watcher = Watcher(api.pods, api.images, api.hub, poll_interval)
    watcher.start()                # baseline first: events are what changes after this
    # Streams (events, followed logs) hold a worker each, hence a generous pool.
    # No SO_REUSEPORT (grpc's default): a second service on the same port must fail, not
    # silently share the port with the first.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api"),
                         options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handlers(api),))
    reflection.enable_server_reflection((SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        address = bind(server, listen)
    except BaseException:
        watcher.stop()
        raise
    server.start()
    return Running(server, watcher, address)


def serve(paths: Paths, listen: str = DEFAULT_LISTEN) -> int:
    """Run until SIGINT/SIGTERM."""
    running = start(paths, listen)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(f"API service running on {running.address}", flush=True)
    done.wait()
    running.stop()
    return 0
