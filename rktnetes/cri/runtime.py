"""runtime.v1.RuntimeService: pod sandboxes are sandbox pods, containers their apps.

Every call goes to stage0's typed entries in this process. Calls on different sandboxes run
in parallel (gRPC's worker threads); calls that create things in one sandbox take that
sandbox's lock, so that name reservations hold; the pod's own file locks keep its directory
whole against everyone else (the CLI, a second server).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field

from rktnetes import __version__
from rktnetes.config import Paths
from rktnetes.errors import (UNAVAILABLE, UNIMPLEMENTED, AlreadyExists, NetworkError, NotFoundError,
                             NotRunning, PodError, RktError, TimedOut)
from rktnetes.pod.manifest import NetworkRequest
from rktnetes.proto.runtime.v1 import api_pb2 as pb
from rktnetes.proto.runtime.v1 import api_pb2_grpc as pb_grpc
from rktnetes.stage0 import apps as stage0_apps
from rktnetes.stage0.rm import remove_pod
from rktnetes.stage0.spec import InvalidSpec, PullOptions
from rktnetes.supervise.launcher import Launcher

from . import stats, translate, views
from .codes import guarded, guarded_stream
from .events import Hub, Watcher
from .inventory import Container, Inventory, Sandbox
from .listing import chunks, matches

CRI_VERSION = "v1"
EXEC_OUTPUT_LIMIT = (16 << 20) - (64 << 10)   # both streams, within kubelet's 16 MiB messages


class Unimplemented(RktError):
    kind = UNIMPLEMENTED


class Unavailable(RktError):
    kind = UNAVAILABLE


@dataclass
class Options:
    handlers: list[str] = field(default_factory=lambda: ["default"])
    network: str = "default"              # the CNI network pods join
    stream_address: str = ""


class RuntimeService(pb_grpc.RuntimeServiceServicer):
    def __init__(self, paths: Paths, options: Options):
        self.paths, self.opts = paths, options
        self.inv = Inventory(paths)
        self.hub = Hub()
        self.watcher = Watcher(self.hub, self._snapshot)
        self.stats = stats.Sampler()
        self._reserved: set[tuple] = set()
        self._mu = threading.Lock()
        self.inv.sandboxes()          # the index, from disk
        self.launcher = Launcher()    # sandboxes' monitors, forked warm
        self.streaming = None         # stream.server.StreamServer, set by server.start

    # -- events ----------------------------------------------------------------------------

    def _snapshot(self) -> dict:
        out = {}
        for c in self.inv.containers():
            state = views.container(c).state
            out[c.id] = (state, lambda kind, c=c: self._event(c, kind))
        return out

    def _event(self, c: Container, kind: int) -> pb.ContainerEventResponse:
        with contextlib.suppress(RktError, OSError):
            c.sandbox.pod.refresh()
        return pb.ContainerEventResponse(
            container_id=c.id, container_event_type=kind, created_at=time.time_ns(),
            pod_sandbox_status=views.sandbox_status(c.sandbox),
            containers_statuses=[views.container_status(x)
                                 for x in self.inv.containers([c.sandbox])])

    def _sandbox_event(self, sb: Sandbox, kind: int, cid: str = "",
                       status: pb.PodSandboxStatus | None = None) -> None:
        """An event about the sandbox itself (container_id = its id, as kubelet's evented PLEG
        expects) or a container of it that is gone; `status`: the sandbox's, taken before it
        went."""
        if status is None:
            with contextlib.suppress(RktError, OSError):
                sb.pod.refresh()
            status = views.sandbox_status(sb)
        self.hub.publish(pb.ContainerEventResponse(
            container_id=cid or sb.pod.uuid, container_event_type=kind,
            created_at=time.time_ns(), pod_sandbox_status=status))

    def _announce(self, c: Container, kind: int) -> None:
        sb = self.inv.sandbox(c.sandbox.pod.uuid)
        c = Container(sb, sb.manifest.app(c.id) or c.app, c.record)
        ev = self._event(c, kind)
        state = next((s.state for s in ev.containers_statuses if s.id == c.id), None)
        self.watcher.note(c.id, None if kind == pb.CONTAINER_DELETED_EVENT else state)
        self.hub.publish(ev)

    # -- reservations: one sandbox per (name, namespace, uid, attempt), as containerd ------

    @contextlib.contextmanager
    def _reserve(self, key: tuple, what: str):
        with self._mu:
            if key in self._reserved:
                raise AlreadyExists(f"{what} is being created by another call")
            self._reserved.add(key)
        try:
            yield
        finally:
            with self._mu:
                self._reserved.discard(key)

    # -- version, status, config -----------------------------------------------------------

    @guarded
    def Version(self, request, context):
        return pb.VersionResponse(version="0.1.0", runtime_name="rktnetes",
                                  runtime_version=__version__,
                                  runtime_api_version=CRI_VERSION)

    @guarded
    def Status(self, request, context):
        from rktnetes.stage0.prepare import check_network_setup

        net = pb.RuntimeCondition(type="NetworkReady", status=True)
        try:
            check_network_setup(self.paths, [NetworkRequest(self.opts.network)], [])
        except (NetworkError, RktError) as e:
            net = pb.RuntimeCondition(type="NetworkReady", status=False,
                                      reason="NetworkPluginNotReady", message=str(e))
        info = {}
        if request.verbose:
            info["config"] = json.dumps({"handlers": self.opts.handlers,
                                         "network": self.opts.network,
                                         "data_dir": str(self.paths.data)})
        return pb.StatusResponse(
            status=pb.RuntimeStatus(conditions=[
                pb.RuntimeCondition(type="RuntimeReady", status=True), net]),
            info=info,
            runtime_handlers=[pb.RuntimeHandler(name=h, features=pb.RuntimeHandlerFeatures())
                              for h in self.opts.handlers] +
            [pb.RuntimeHandler(name="", features=pb.RuntimeHandlerFeatures())])

    @guarded
    def RuntimeConfig(self, request, context):
        return pb.RuntimeConfigResponse(linux=pb.LinuxRuntimeConfiguration(
            cgroup_driver=pb.CGROUPFS))

    @guarded
    def UpdateRuntimeConfig(self, request, context):
        return pb.UpdateRuntimeConfigResponse()   # the pod CIDR is the CNI config's to know

    # -- sandboxes ---------------------------------------------------------------------------

    @guarded
    def RunPodSandbox(self, request, context):
        spec = translate.sandbox_spec(request.config, request.runtime_handler,
                                      self.opts.handlers, self.opts.network)
        md = request.config.metadata
        key = ("sandbox", md.name, md.namespace, md.uid, md.attempt)
        what = f"sandbox {md.namespace}/{md.name} (uid {md.uid}, attempt {md.attempt})"
        with self._reserve(key, what):
            for sb in self.inv.sandboxes():
                o = views.sandbox_config(sb).metadata
                if (o.name, o.namespace, o.uid, o.attempt) == key[1:]:
                    raise AlreadyExists(f"{what} already exists: {sb.pod.uuid}")
            pod = stage0_apps.sandbox(self.paths, spec, discard_failed=True,
                                      launcher=self.launcher)
        with contextlib.suppress(RktError, OSError):
            sb = self.inv.sandbox(pod.uuid)
            self._sandbox_event(sb, pb.CONTAINER_CREATED_EVENT)
            self._sandbox_event(sb, pb.CONTAINER_STARTED_EVENT)
        return pb.RunPodSandboxResponse(pod_sandbox_id=pod.uuid)

    def _find_sandbox(self, sid: str) -> Sandbox | None:
        try:
            return self.inv.sandbox(sid)
        except NotFoundError:
            return None

    @guarded
    def StopPodSandbox(self, request, context):
        sb = self._find_sandbox(request.pod_sandbox_id)
        if sb is None:
            return pb.StopPodSandboxResponse()        # stopped already, as far as anyone knows
        running = [c for c in self.inv.containers([sb])
                   if views.container(c).state == pb.CONTAINER_RUNNING]
        from rktnetes.stage0.stop import stop

        with self.inv.lock(sb.pod.uuid):
            with contextlib.suppress(NotRunning):
                # kubelet has stopped the containers with their grace periods before this
                stop(self.paths, sb.pod, timeout=0, force=True)
        for c in running:
            with contextlib.suppress(RktError, OSError):
                self._announce(c, pb.CONTAINER_STOPPED_EVENT)
        with contextlib.suppress(RktError, OSError):
            self._sandbox_event(sb, pb.CONTAINER_STOPPED_EVENT)
        return pb.StopPodSandboxResponse()

    @guarded
    def RemovePodSandbox(self, request, context):
        sb = self._find_sandbox(request.pod_sandbox_id)
        if sb is None:
            return pb.RemovePodSandboxResponse()
        gone = self.inv.containers([sb])
        last = views.sandbox_status(sb)
        with self.inv.lock(sb.pod.uuid):
            remove_pod(self.paths, sb.pod, force=True)
        self.inv.forget(sb.pod.uuid)
        for c in gone:
            self.watcher.note(c.id, None)
            self._sandbox_event(sb, pb.CONTAINER_DELETED_EVENT, c.id, last)
        self._sandbox_event(sb, pb.CONTAINER_DELETED_EVENT, status=last)
        return pb.RemovePodSandboxResponse()

    @guarded
    def PodSandboxStatus(self, request, context):
        sb = self.inv.sandbox(request.pod_sandbox_id)
        info = {}
        if request.verbose:
            ps = sb.pod.pod_state()
            info["info"] = json.dumps({"pod": sb.manifest.to_json(), "state": ps.to_json(),
                                       "pod_state": sb.pod.state})
        return pb.PodSandboxStatusResponse(
            status=views.sandbox_status(sb), info=info,
            containers_statuses=[views.container_status(c) for c in self.inv.containers([sb])],
            timestamp=time.time_ns())

    def _sandboxes(self, f: pb.PodSandboxFilter) -> list[pb.PodSandbox]:
        items = (views.pod_sandbox(sb) for sb in self.inv.sandboxes()
                 if not f.id or sb.pod.uuid.startswith(f.id.lower()))
        return [x for x in items if matches(f, x.id, x.labels, x.state)]

    @guarded
    def ListPodSandbox(self, request, context):
        return pb.ListPodSandboxResponse(items=self._sandboxes(request.filter))

    @guarded_stream
    def StreamPodSandboxes(self, request, context):
        for part in chunks(self._sandboxes(request.filter)):
            yield pb.StreamPodSandboxesResponse(pod_sandboxes=part)

    @guarded
    def UpdatePodSandboxResources(self, request, context):
        self.inv.sandbox(request.pod_sandbox_id)
        # the pod's limits are its cgroup parent's, which kubelet itself resizes
        return pb.UpdatePodSandboxResourcesResponse()

    # -- containers --------------------------------------------------------------------------

    @guarded
    def CreateContainer(self, request, context):
        from rktnetes.stage0.spec import KNOWN_CAPS
        from rktnetes.stage1.ocispec import DEFAULT_CAPS

        sb = self.inv.sandbox(request.pod_sandbox_id)
        cfg = request.config
        cid = secrets.token_hex(16)
        spec, volumes = translate.container_spec(cid, cfg, views.sandbox_config(sb),
                                                 DEFAULT_CAPS,
                                                 sorted(f"CAP_{c}" for c in KNOWN_CAPS))
        md = cfg.metadata
        key = ("container", sb.pod.uuid, md.name, md.attempt)
        what = f"container {md.name} (attempt {md.attempt}) in sandbox {sb.pod.uuid}"
        for v in volumes:   # the CRI: a host path that does not exist is an error
            if not os.path.exists(v.source):
                raise InvalidSpec(f"mount: host path {v.source} does not exist")
        with self._reserve(key, what), self.inv.lock(sb.pod.uuid):
            for c in self.inv.containers([self.inv.sandbox(sb.pod.uuid)]):
                o = views.container_config(c).metadata
                if (o.name, o.attempt) == (md.name, md.attempt):
                    raise AlreadyExists(f"{what} already exists: {c.id}")
            stage0_apps.add(self.paths, sb.pod, spec, PullOptions(policy="never"),
                            volumes=volumes)
        c = self.inv.container(cid)
        self._announce(c, pb.CONTAINER_CREATED_EVENT)
        return pb.CreateContainerResponse(container_id=cid)

    @guarded
    def StartContainer(self, request, context):
        c = self.inv.container(request.container_id)
        try:
            stage0_apps.start(self.paths, c.sandbox.pod, c.id)
        finally:
            with contextlib.suppress(RktError, OSError):
                self._announce(c, pb.CONTAINER_STARTED_EVENT)
        return pb.StartContainerResponse()

    @guarded
    def StopContainer(self, request, context):
        c = self.inv.container(request.container_id)
        was = views.container(c).state
        if was in (pb.CONTAINER_RUNNING, pb.CONTAINER_UNKNOWN):
            try:
                stage0_apps.stop(self.paths, c.sandbox.pod, c.id,
                                 timeout=max(0, request.timeout))
            except NotRunning:
                pass                   # the sandbox stopped: so did the container
        if was == pb.CONTAINER_RUNNING:
            with contextlib.suppress(RktError, OSError):
                self._announce(c, pb.CONTAINER_STOPPED_EVENT)
        return pb.StopContainerResponse()

    @guarded
    def RemoveContainer(self, request, context):
        try:
            c = self.inv.container(request.container_id)
        except NotFoundError:
            return pb.RemoveContainerResponse()
        pod = c.sandbox.pod
        last = views.sandbox_status(c.sandbox)
        try:
            stage0_apps.rm(self.paths, pod, c.id, force=True)
        except NotRunning:
            stage0_apps.forget(self.paths, pod, c.id)
        except NotFoundError:
            pass
        self.watcher.note(c.id, None)
        self._sandbox_event(c.sandbox, pb.CONTAINER_DELETED_EVENT, c.id, last)
        return pb.RemoveContainerResponse()

    def _containers(self, f: pb.ContainerFilter) -> list[pb.Container]:
        sbs = self.inv.sandboxes()
        if f.pod_sandbox_id:
            sbs = [s for s in sbs if s.pod.uuid.startswith(f.pod_sandbox_id.lower())]
        items = (views.container(c) for c in self.inv.containers(sbs)
                 if not f.id or c.id.startswith(f.id.lower()))
        return [x for x in items if matches(f, x.id, x.labels, x.state)]

    @guarded
    def ListContainers(self, request, context):
        return pb.ListContainersResponse(containers=self._containers(request.filter))

    @guarded_stream
    def StreamContainers(self, request, context):
        for part in chunks(self._containers(request.filter)):
            yield pb.StreamContainersResponse(containers=part)

    @guarded
    def ContainerStatus(self, request, context):
        c = self.inv.container(request.container_id)
        info = {}
        if request.verbose:
            s = c.sandbox.pod.app_state(c.id)
            info["info"] = json.dumps({"sandboxID": c.sandbox.pod.uuid, "pid": s.pid,
                                       "app": c.app.name, "state": s.to_json()})
        return pb.ContainerStatusResponse(status=views.container_status(c), info=info)

    @guarded
    def UpdateContainerResources(self, request, context):
        c = self.inv.container(request.container_id)
        if not request.HasField("linux"):
            return pb.UpdateContainerResourcesResponse()   # nothing for Linux to change
        res = translate.resources(request.linux)
        stage0_apps.update_resources(self.paths, c.sandbox.pod, c.id, res)
        return pb.UpdateContainerResourcesResponse()

    def _running_container(self, cid: str) -> Container:
        c = self.inv.container(cid)
        if views.container(c).state != pb.CONTAINER_RUNNING:
            raise NotRunning(f"container {c.id} is not running")
        return c

    @guarded
    def ReopenContainerLog(self, request, context):
        c = self._running_container(request.container_id)
        stage0_apps.reopen_log(self.paths, c.sandbox.pod, c.id)
        return pb.ReopenContainerLogResponse()

    @guarded
    def ExecSync(self, request, context):
        from rktnetes.stage1.base import ExecError

        if not request.cmd:
            raise InvalidSpec("no command given")
        if request.timeout < 0:
            raise InvalidSpec(f"timeout {request.timeout}: must not be negative")
        c = self._running_container(request.container_id)
        out = _Collector()
        err = _Collector()
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            code = stage0_apps.exec_in(self.paths, c.sandbox.pod, c.id, list(request.cmd),
                                       stdio=(null, out.w, err.w),
                                       timeout=request.timeout or None)
        except ExecError as e:
            code = e.exit_code
            err.extra = f"{e}\n".encode()
        except TimedOut:
            raise TimedOut(f"command {request.cmd[0]!r} timed out after {request.timeout}s") \
                from None
        finally:
            os.close(null)
            out.finish()
            err.finish()
        # the rest is discarded, as the CRI says: stdout and stderr together stay within
        # kubelet's 16 MiB message limit
        stdout = out.data[:EXEC_OUTPUT_LIMIT]
        stderr = (err.data + err.extra)[:EXEC_OUTPUT_LIMIT - len(stdout)]
        return pb.ExecSyncResponse(stdout=stdout, stderr=stderr, exit_code=code)

    # -- streaming: a URL on the streaming server, whose token carries what the session runs

    @staticmethod
    def _wanted(request):
        from .stream.channels import Wanted

        if not (request.stdin or request.stdout or request.stderr):
            raise InvalidSpec("one of stdin, stdout, or stderr must be set")
        if request.tty and request.stderr:
            raise InvalidSpec("tty and stderr cannot both be set: a terminal has one output")
        return Wanted(request.stdin, request.stdout, request.stderr, request.tty)

    @guarded
    def Exec(self, request, context):
        from .stream.server import ExecRequest

        if not request.cmd:
            raise InvalidSpec("no command given")
        wanted = self._wanted(request)
        c = self._running_container(request.container_id)
        paths, pod, name, cmd = self.paths, c.sandbox.pod, c.id, list(request.cmd)

        def execute(stdio: tuple[int, int, int], cancel: int) -> int:
            from rktnetes.stage1.base import ExecError

            try:
                return stage0_apps.exec_in(paths, pod, name, cmd, tty=wanted.tty,
                                           stdio=stdio, cancel=cancel)
            except ExecError as e:     # a missing command: its message, and 126/127
                os.write(stdio[2], f"{e}\n".encode())
                return e.exit_code

        return pb.ExecResponse(url=self._streams().url("exec", ExecRequest(wanted, execute)))

    @guarded
    def Attach(self, request, context):
        from .stream.server import AttachRequest

        wanted = self._wanted(request)
        c = self._running_container(request.container_id)
        # kubelet asks for a terminal when the container has tty: set; it runs without one
        # here, and attach carries its output as it is. Stdin it does not take: output only,
        # as containerd does.
        pod, name, stdin = c.sandbox.pod, c.id, wanted.stdin and c.app.stdin

        def attach(stdio: tuple[int, int, int], cancel: int) -> int:
            from rktnetes.stage0.attach import attach

            attach(pod, name, stdio, stdin=stdin, cancel=cancel)
            return 0      # an attach that ran to its end is a success, whatever the app's code

        return pb.AttachResponse(url=self._streams().url("attach",
                                                         AttachRequest(wanted, attach)))

    @guarded
    def PortForward(self, request, context):
        from rktnetes.host.namespaces import connect_tcp

        from .stream.server import PortForwardRequest

        sb = self.inv.sandbox(request.pod_sandbox_id)
        if not views.sandbox_ready(sb):
            raise NotRunning(f"pod sandbox {sb.pod.uuid} is not ready")
        for port in request.port:
            if not 0 < port < 65536:
                raise InvalidSpec(f"invalid port {port}: must be 1-65535")
        netns = sb.pod.pod_state().netns_path      # "": a host-network sandbox

        def dial(port: int):
            return connect_tcp(netns, port)

        return pb.PortForwardResponse(url=self._streams().url(
            "portforward", PortForwardRequest(sb.pod.uuid, dial, list(request.port))))

    def _streams(self):
        if self.streaming is None:
            raise Unavailable("the streaming server is not running")
        return self.streaming

    @guarded
    def CheckpointContainer(self, request, context):
        raise Unimplemented("checkpointing containers is not supported")

    # -- stats -----------------------------------------------------------------------------

    def _container_stats(self, cs: list[Container]) -> list[pb.ContainerStats]:
        return [self.stats.container(c) for c in cs]

    def _filtered_containers(self, f) -> list[Container]:
        pod = f.pod_sandbox_id.lower()
        return [c for c in self.inv.containers()
                if c.sandbox.pod.uuid.startswith(pod)
                and matches(f, c.id, views.container_config(c).labels)
                and views.container(c).state == pb.CONTAINER_RUNNING]

    @guarded
    def ContainerStats(self, request, context):
        c = self.inv.container(request.container_id)
        return pb.ContainerStatsResponse(stats=self.stats.container(c))

    @guarded
    def ListContainerStats(self, request, context):
        return pb.ListContainerStatsResponse(
            stats=self._container_stats(self._filtered_containers(request.filter)))

    @guarded_stream
    def StreamContainerStats(self, request, context):
        for part in chunks(self._container_stats(self._filtered_containers(request.filter))):
            yield pb.StreamContainerStatsResponse(container_stats=part)

    def _pod_stats(self, f) -> list[pb.PodSandboxStats]:
        return [self.stats.sandbox(sb, self.inv.containers([sb])) for sb in self.inv.sandboxes()
                if matches(f, sb.pod.uuid, views.sandbox_config(sb).labels)
                and views.sandbox_ready(sb)]

    @guarded
    def PodSandboxStats(self, request, context):
        sb = self.inv.sandbox(request.pod_sandbox_id)
        return pb.PodSandboxStatsResponse(stats=self.stats.sandbox(sb, self.inv.containers([sb])))

    @guarded
    def ListPodSandboxStats(self, request, context):
        return pb.ListPodSandboxStatsResponse(stats=self._pod_stats(request.filter))

    @guarded_stream
    def StreamPodSandboxStats(self, request, context):
        for part in chunks(self._pod_stats(request.filter)):
            yield pb.StreamPodSandboxStatsResponse(pod_sandbox_stats=part)

    @guarded
    def ListMetricDescriptors(self, request, context):
        return pb.ListMetricDescriptorsResponse()    # no metrics beyond the stats above

    @guarded
    def ListPodSandboxMetrics(self, request, context):
        return pb.ListPodSandboxMetricsResponse()

    @guarded_stream
    def StreamPodSandboxMetrics(self, request, context):
        return
        yield

    # -- events ----------------------------------------------------------------------------

    @guarded_stream
    def GetContainerEvents(self, request, context):
        yield from self.hub.subscribe(context.is_active)


class _Collector:
    """A pipe whose read end a thread drains into memory, up to EXEC_OUTPUT_LIMIT (the rest
    is read and dropped, so the command never blocks on a full pipe)."""

    def __init__(self):
        self.r, self.w = os.pipe2(os.O_CLOEXEC)
        self.buf = bytearray()
        self.extra = b""
        self.t = threading.Thread(target=self._drain, daemon=True)
        self.t.start()

    def _drain(self) -> None:
        while True:
            try:
                b = os.read(self.r, 65536)
            except OSError:
                break
            if not b:
                break
            room = EXEC_OUTPUT_LIMIT - len(self.buf)
            if room > 0:
                self.buf += b[:room]
        os.close(self.r)

    def finish(self) -> None:
        """The command is done: close our write end, wait for what is left in the pipe."""
        if self.w >= 0:
            os.close(self.w)
            self.w = -1
        self.t.join(5)

    @property
    def data(self) -> bytes:
        return bytes(self.buf)
