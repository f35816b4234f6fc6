"""`rkt api-service` as a real process, called over gRPC for every method of rkt's v1alpha API.

Pods are made with the project's own code paths — PodStore.create, Pod.move under the pod's
lock, Pod.save_app_state / save_pod_state and CRI-format log files — which is exactly what
stage0 and the monitor write; one test also runs a real pod with `rkt run` when the runtime can.
Images are built with rktnetes.image.builder, put in the blob store and committed with
rktnetes.image.commit.commit_image, as every image source does.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from rktnetes.config import Paths
from rktnetes.fsutil import atomic_write_json, rmtree
from rktnetes.image import builder
from rktnetes.image.commit import commit_image
from rktnetes.pod.manifest import App, PodManifest
from rktnetes.pod.state import AppState, PodRuntime
from rktnetes.pod.store import Pod, PodLock, PodStore
from rktnetes.proto.v1alpha import api_pb2 as pb
from rktnetes.proto.v1alpha import api_pb2_grpc as pb_grpc
from rktnetes.store import Store

from .pod_helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]


# -- the service, as a process ------------------------------------------------------------------

@dataclass
class Service:
    proc: subprocess.Popen
    address: str
    stub: pb_grpc.PublicAPIStub
    channel: grpc.Channel
    paths: Paths
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None


def start_service(paths: Paths, listen: str, workdir: Path) -> Service:
    err = workdir / "api.stderr"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rktnetes", "--dir", str(paths.data), "--config-dir",
         str(paths.config), "api-service", "--listen", listen],
        stdout=subprocess.PIPE, stderr=open(err, "w"), text=True, cwd=ROOT)
    line = proc.stdout.readline()           # printed once the port is bound
    assert line.startswith("API service running on "), (line, err.read_text())
    address = line.split(" on ", 1)[1].strip()
    channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=10)
    return Service(proc, address, pb_grpc.PublicAPIStub(channel), channel, paths, err)


def stop_service(svc: Service) -> None:
    svc.channel.close()
    svc.proc.terminate()
    try:
        svc.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        svc.proc.kill()
        svc.proc.wait()


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    (tmp_path / "config").mkdir()
    return Paths(tmp_path / "data", tmp_path / "config")


@pytest.fixture
def api(paths: Paths, tmp_path: Path):
    # A short socket path: unix socket paths are limited to 108 bytes.
    sockdir = Path(tempfile.mkdtemp(prefix="rkt-api-"))
    svc = start_service(paths, f"unix://{sockdir}/api.sock", tmp_path)
    yield svc
    stop_service(svc)
    shutil.rmtree(sockdir, ignore_errors=True)


# -- pods and images, made the way the runtime makes them -------------------------------------

IMG_A = "sha256:" + "a" * 64
IMG_B = "sha256:" + "b" * 64


def new_pod(paths: Paths, apps: list[tuple[str, str]] | None = None,
            annotations: dict | None = None) -> tuple[Pod, PodLock]:
    """A pod in embryo, locked, as `rkt prepare` starts one."""
    apps = apps if apps is not None else [("app", IMG_A)]
    m = PodManifest(uuid="", apps=[App(n, img, f"docker.io/library/{n}:1.0", ["/bin/true"])
                                   for n, img in apps],
                    annotations=annotations or {}, created_at=time.time())
    return PodStore(paths.pods).create(m)


def advance(pod: Pod, *states: str) -> None:
    for st in states:
        pod.move(st)


def start_pod(pod: Pod, networks: list | None = None, cgroup: str = "") -> None:
    """What the monitor writes when the pod starts: pod state, then each app running."""
    now = time.time()
    pod.save_pod_state(PodRuntime(monitor_pid=os.getpid(), started_at=now,
                                  networks=networks or [], cgroup=cgroup))
    for a in pod.manifest().apps:
        pod.save_app_state(AppState(a.name, "running", pid=os.getpid(), created_at=now,
                                    started_at=now))


def exit_app(pod: Pod, name: str, code: int) -> None:
    st = pod.app_state(name)
    st.state, st.exit_code, st.finished_at = "exited", code, time.time()
    st.reason = "Completed" if code == 0 else "Error"
    pod.save_app_state(st)


def exit_pod(pod: Pod, lock: PodLock) -> None:
    """The monitor's end: finished_at recorded, pod moved to exited-garbage, lock released."""
    ps = pod.pod_state()
    ps.finished_at = time.time()
    pod.save_pod_state(ps)
    pod.move("exited-garbage")
    lock.close()


def exited_pod(paths: Paths, apps=None, annotations=None, code: int = 0) -> Pod:
    pod, lk = new_pod(paths, apps, annotations)
    advance(pod, "prepare", "prepared", "run")
    start_pod(pod)
    for a in pod.manifest().apps:
        exit_app(pod, a.name, code)
    exit_pod(pod, lk)
    return pod


def cri_line(t: float, stream: str, text: str, tag: str = "F") -> str:
    ts = datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"
    return f"{ts} {stream} {tag} {text}\n"


def append_log(pod: Pod, app: str, lines: list[str]) -> None:
    pod.app_dir(app).mkdir(parents=True, exist_ok=True)
    with open(pod.log_path(app), "a") as f:
        f.write("".join(lines))
        f.flush()


def make_image(store: Store, refs: list[str], labels: dict | None = None,
               annotations: dict | None = None, content: bytes = b"x") -> str:
    """A one-layer OCI image, committed to the store the way every importer does."""
    import tarfile
    ti = tarfile.TarInfo("hello.txt")
    ti.mode = 0o644
    layer = builder.tar_entries([(ti, content)])
    spec = builder.ImageSpec(layers=[layer], config={"Cmd": ["/hello"], "Labels": labels or {}})
    manifest, cfg = builder.manifest_blob(spec)
    if annotations:
        doc = json.loads(manifest)
        doc["annotations"] = annotations
        manifest = json.dumps(doc, sort_keys=True).encode()
    store.blobs.put_bytes(cfg)
    store.blobs.put_bytes(layer.blob)
    mdigest = store.blobs.put_bytes(manifest)
    return commit_image(store, mdigest, refs).id


class EventCollector:
    """Reads a ListenEvents stream in a thread."""

    def __init__(self, stub, flt: pb.EventFilter | None = None):
        req = pb.ListenEventsRequest(filter=flt) if flt is not None else pb.ListenEventsRequest()
        self.call = stub.ListenEvents(req)
        self.q: queue.Queue = queue.Queue()
        self.ended = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            for resp in self.call:
                for e in resp.events:
                    self.q.put(e)
        except grpc.RpcError:
            pass
        finally:
            self.ended.set()

    def take(self, n: int, timeout: float = 10.0) -> list:
        out = []
        end = time.time() + timeout
        while len(out) < n:
            try:
                out.append(self.q.get(timeout=max(0.01, end - time.time())))
            except queue.Empty:
                raise AssertionError(f"got {len(out)} of {n} events: "
                                     f"{[pb.EventType.Name(e.type) for e in out]}") from None
        return out

    def none_within(self, seconds: float) -> bool:
        try:
            e = self.q.get(timeout=seconds)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected event {pb.EventType.Name(e.type)}")

    def cancel(self):
        self.call.cancel()


def ids(pods) -> set[str]:
    return {p.id for p in pods}


# -- GetInfo, reflection, stubs ---------------------------------------------------------------

def test_get_info(api: Service):
    info = api.stub.GetInfo(pb.GetInfoRequest()).info
    assert info.api_version == "1.0.0-alpha"
    assert info.rkt_version
    assert info.global_flags.dir == str(api.paths.data)


def test_reflection_lists_and_describes_the_service(api: Service):
    stub = reflection_pb2_grpc.ServerReflectionStub(api.channel)
    reqs = [reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="v1alpha.PublicAPI")]
    answers = list(stub.ServerReflectionInfo(iter(reqs)))
    names = {s.name for s in answers[0].list_services_response.service}
    assert "v1alpha.PublicAPI" in names
    from google.protobuf import descriptor_pb2
    fd = descriptor_pb2.FileDescriptorProto.FromString(
        answers[1].file_descriptor_response.file_descriptor_proto[0])
    assert fd.package == "v1alpha"
    methods = {m.name for s in fd.service for m in s.method}
    assert methods == {"GetInfo", "ListPods", "InspectPod", "ListImages", "InspectImage",
                       "ListenEvents", "GetLogs"}


def test_wire_format_matches_rkt():
    """Field numbers clients compiled against rkt's api.proto rely on (a sample of them)."""
    f = {m: {x.name: x.number for x in getattr(pb, m).DESCRIPTOR.fields}
         for m in ("Pod", "App", "Image", "PodFilter", "ImageFilter", "GetLogsRequest", "Event")}
    assert f["Pod"] == {"id": 1, "pid": 2, "state": 3, "apps": 4, "networks": 5, "manifest": 6,
                        "annotations": 7, "cgroup": 8, "created_at": 9, "started_at": 10,
                        "gc_marked_at": 11}
    assert f["ImageFilter"]["full_names"] == 9 and f["ImageFilter"]["imported_before"] == 7
    assert f["GetLogsRequest"] == {"pod_id": 1, "app_name": 2, "lines": 3, "follow": 4,
                                   "since_time": 5, "until_time": 6}
    assert f["Event"] == {"type": 1, "id": 2, "from": 3, "time": 4, "data": 5}
    assert pb.POD_STATE_GARBAGE == 8 and pb.EVENT_TYPE_IMAGE_REMOVED == 9


def test_generated_stubs_are_current():
    r = subprocess.run([sys.executable, "-m", "rktnetes.proto.gen", "--check"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# -- pods ---------------------------------------------------------------------------------------

def test_list_and_inspect_pods_in_every_state(api: Service, paths: Paths):
    embryo, _lk1 = new_pod(paths)
    preparing, _lk2 = new_pod(paths)
    advance(preparing, "prepare")
    aborted, lk3 = new_pod(paths)
    advance(aborted, "prepare")
    lk3.close()                                  # stage0 died while preparing
    prepared, lk4 = new_pod(paths)
    advance(prepared, "prepare", "prepared")
    lk4.close()
    running, _lk5 = new_pod(paths, [("web", IMG_A), ("side", IMG_B)])
    advance(running, "prepare", "prepared", "run")
    start_pod(running, networks=[{"name": "default", "ip": "10.88.0.5/16"}])
    exit_app(running, "side", 7)
    crashed, lk6 = new_pod(paths)
    advance(crashed, "prepare", "prepared", "run")
    start_pod(crashed)
    lk6.close()                                  # monitor gone: run + lock free = exited
    exited = exited_pod(paths, code=3)
    garbage = exited_pod(paths)
    lk = garbage.lock()
    lk.acquire()
    advance(garbage, "garbage")
    lk.close()

    pods = {p.id: p for p in api.stub.ListPods(pb.ListPodsRequest()).pods}
    want = [(embryo, pb.POD_STATE_EMBRYO), (preparing, pb.POD_STATE_PREPARING),
            (aborted, pb.POD_STATE_ABORTED_PREPARE), (prepared, pb.POD_STATE_PREPARED),
            (running, pb.POD_STATE_RUNNING), (crashed, pb.POD_STATE_EXITED),
            (exited, pb.POD_STATE_EXITED), (garbage, pb.POD_STATE_GARBAGE)]
    assert {p.uuid: s for p, s in want} == {k: v.state for k, v in pods.items()}

    r = pods[running.uuid]
    assert r.pid == os.getpid() and r.started_at > r.created_at > 0
    assert [a.name for a in r.apps] == ["web", "side"] and r.apps[0].image.id == IMG_A
    assert r.manifest == b"" and r.apps[0].state == pb.APP_STATE_UNDEFINED   # no detail
    assert [(n.name, n.ipv4) for n in r.networks] == [("default", "10.88.0.5")]
    assert pods[embryo.uuid].apps == [] and pods[embryo.uuid].pid == -1      # only id + state
    assert pods[garbage.uuid].gc_marked_at > 0

    detailed = {p.id: p for p in api.stub.ListPods(pb.ListPodsRequest(detail=True)).pods}
    d = detailed[running.uuid]
    assert json.loads(d.manifest)["uuid"] == running.uuid
    assert [(a.state, a.exit_code) for a in d.apps] == [(pb.APP_STATE_RUNNING, 0),
                                                        (pb.APP_STATE_EXITED, 7)]
    assert (d.apps[0].image.name, d.apps[0].image.version) == ("docker.io/library/web", "1.0")

    insp = api.stub.InspectPod(pb.InspectPodRequest(id=exited.uuid)).pod
    assert insp.state == pb.POD_STATE_EXITED and insp.apps[0].exit_code == 3
    assert insp.apps[0].state == pb.APP_STATE_EXITED and insp.manifest
    assert api.stub.InspectPod(pb.InspectPodRequest(id=exited.uuid[:13])).pod.id == exited.uuid
    with pytest.raises(grpc.RpcError) as e:
        api.stub.InspectPod(pb.InspectPodRequest(id="00000000-dead"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        api.stub.InspectPod(pb.InspectPodRequest())
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_pod_filters(api: Service, paths: Paths):
    p1 = exited_pod(paths, [("web", IMG_A), ("db", IMG_B)], {"team": "a", "env": "prod"})
    p2 = exited_pod(paths, [("web", IMG_A)], {"team": "a", "env": "dev"})
    p3, _lk = new_pod(paths, [("db", IMG_B)], {"team": "b"})
    advance(p3, "prepare", "prepared", "run")
    start_pod(p3, networks=[{"name": "default", "ip": "10.0.0.2"}, {"name": "backend", "ip": "10.1.0.2"}],
              cgroup="/rktnetes/pod-3")

    def ls(*filters, detail=False):
        return ids(api.stub.ListPods(pb.ListPodsRequest(filters=list(filters), detail=detail)).pods)

    F, KV = pb.PodFilter, pb.KeyValue
    assert ls() == {p1.uuid, p2.uuid, p3.uuid}
    # ids and states: any of them
    assert ls(F(ids=[p1.uuid, p3.uuid, "nope"])) == {p1.uuid, p3.uuid}
    assert ls(F(states=[pb.POD_STATE_RUNNING, pb.POD_STATE_PREPARED])) == {p3.uuid}
    assert ls(F(states=[pb.POD_STATE_EXITED])) == {p1.uuid, p2.uuid}
    # app names, image ids, networks and annotations: all of them
    assert ls(F(app_names=["web"])) == {p1.uuid, p2.uuid}
    assert ls(F(app_names=["web", "db"])) == {p1.uuid}
    assert ls(F(app_names=["web", "cache"])) == set()
    assert ls(F(image_ids=[IMG_A, IMG_B])) == {p1.uuid}
    assert ls(F(image_ids=[IMG_B])) == {p1.uuid, p3.uuid}
    assert ls(F(network_names=["default", "backend"])) == {p3.uuid}
    assert ls(F(network_names=["default", "other"])) == set()
    assert ls(F(annotations=[KV(Key="team", value="a")])) == {p1.uuid, p2.uuid}
    assert ls(F(annotations=[KV(Key="team", value="a"), KV(Key="env", value="prod")])) == {p1.uuid}
    assert ls(F(annotations=[KV(Key="team", value="c")])) == set()
    assert ls(F(cgroups=["/rktnetes/pod-3"])) == {p3.uuid}
    assert ls(F(pod_sub_cgroups=["/rktnetes/pod-3/app-db"])) == {p3.uuid}
    assert ls(F(pod_sub_cgroups=["/rktnetes/pod-30"])) == set()
    # conditions in one filter are ANDed ...
    assert ls(F(states=[pb.POD_STATE_EXITED], app_names=["db"])) == {p1.uuid}
    assert ls(F(ids=[p2.uuid], annotations=[KV(Key="env", value="prod")])) == set()
    # ... several filters are ORed
    assert ls(F(app_names=["web", "db"]), F(states=[pb.POD_STATE_RUNNING])) == {p1.uuid, p3.uuid}
    assert ls(F(ids=["x"]), F(ids=["y"])) == set()
    assert ls(F(app_names=["db"]), detail=True) == {p1.uuid, p3.uuid}


def test_malformed_pods_are_skipped_and_logged(api: Service, paths: Paths):
    good = exited_pod(paths)
    bad_json = exited_pod(paths)
    (bad_json.path / "pod.json").write_text('{"uuid": "half-writ')
    no_manifest = paths.pods / "prepared" / "11111111-2222-3333-4444-555555555555"
    no_manifest.mkdir(parents=True)
    wrong_type = exited_pod(paths)
    (wrong_type.path / "pod.json").write_text('["not", "an", "object"]')
    # a torn app state.json (as a crash of the machine can leave one: only exit records are
    # fsync'd) is not a malformed pod: its app reads as never started, as in `rkt list`
    torn_app = exited_pod(paths)
    (torn_app.app_dir("app") / "state.json").write_text("{{{")
    (torn_app.path / "state.json").write_text("")
    (paths.pods / "run").mkdir(parents=True, exist_ok=True)
    (paths.pods / "run" / "stray-file").write_text("not a pod")

    for detail in (False, True):
        got = ids(api.stub.ListPods(pb.ListPodsRequest(detail=detail)).pods)
        assert got == {good.uuid, torn_app.uuid}
    torn = api.stub.InspectPod(pb.InspectPodRequest(id=torn_app.uuid)).pod
    assert [a.state for a in torn.apps] == [pb.APP_STATE_UNDEFINED]
    with pytest.raises(grpc.RpcError) as e:
        api.stub.InspectPod(pb.InspectPodRequest(id=bad_json.uuid))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert api.alive()
    err = api.stderr()
    assert "skipping malformed pod" in err and bad_json.uuid in err and "Traceback" not in err
    # Fixed on disk, it comes back (the cache is keyed by the files' versions).
    bad_json.save_manifest(good.manifest().__class__.from_json(
        {**json.loads(json.dumps(good.manifest().to_json())), "uuid": bad_json.uuid}))
    assert bad_json.uuid in ids(api.stub.ListPods(pb.ListPodsRequest()).pods)


def test_listing_survives_concurrent_gc(api: Service, paths: Paths, tmp_path: Path):
    """Clients list in a loop while the real `rkt gc` marks and removes the pods."""
    pods = [exited_pod(paths) for _ in range(120)]
    errors: list[Exception] = []
    counts: list[int] = []
    stop = threading.Event()

    def client():
        ch = grpc.insecure_channel(api.address)
        stub = pb_grpc.PublicAPIStub(ch)
        try:
            while not stop.is_set():
                detail = len(counts) % 2 == 0
                counts.append(len(stub.ListPods(pb.ListPodsRequest(detail=detail)).pods))
                for p in pods[::40]:
                    try:
                        stub.InspectPod(pb.InspectPodRequest(id=p.uuid))
                    except grpc.RpcError as e:
                        if e.code() != grpc.StatusCode.NOT_FOUND:
                            raise
        except Exception as e:   # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            ch.close()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    rkt = [sys.executable, "-m", "rktnetes", "--dir", str(paths.data), "--config-dir",
           str(paths.config), "gc", "--grace-period", "0s"]
    r1 = subprocess.run(rkt, capture_output=True, text=True, timeout=120)   # mark + sweep
    r2 = subprocess.run(rkt, capture_output=True, text=True, timeout=120)
    wait_for(lambda: len(api.stub.ListPods(pb.ListPodsRequest()).pods) == 0, 20, "empty list")
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    assert not errors, errors
    assert counts and max(counts) <= 120 and api.alive()
    assert "Traceback" not in api.stderr()


def test_service_writes_nothing(api: Service, paths: Paths):
    pod = exited_pod(paths)
    append_log(pod, "app", [cri_line(time.time(), "stdout", "hi")])
    make_image(Store(paths.store), ["docker.io/library/ro:1"])

    def snapshot():
        out = {}
        for root, dirs, files in os.walk(paths.data):
            for n in dirs + files:
                p = os.path.join(root, n)
                st = os.lstat(p)
                out[p] = (st.st_mtime_ns, st.st_size, st.st_mode)
        return out

    before = snapshot()
    api.stub.ListPods(pb.ListPodsRequest(detail=True))
    api.stub.InspectPod(pb.InspectPodRequest(id=pod.uuid))
    api.stub.ListImages(pb.ListImagesRequest(detail=True))
    list(api.stub.GetLogs(pb.GetLogsRequest(pod_id=pod.uuid)))
    time.sleep(0.3)                       # a few event polls
    assert snapshot() == before


# -- images -------------------------------------------------------------------------------------

def test_images_list_inspect_and_filters(api: Service, paths: Paths):
    store = Store(paths.store)
    busybox = make_image(store, ["docker.io/library/busybox:latest"], {"tier": "base"}, content=b"1")
    etcd = make_image(store, ["quay.io/coreos/etcd:v3.5"], {"tier": "kv", "owner": "coreos"},
                      {"org.opencontainers.image.source": "etcd"}, content=b"2")
    backup = make_image(store, ["k8s.io/etcd-backup:1"], {"tier": "kv"}, content=b"3")
    # Import times a second apart, so the strict bounds can be tested without sleeping: the
    # records are rewritten as an earlier import would have left them.
    for image_id, t in ((busybox, 1000), (etcd, 2000), (backup, 3000)):
        rec = store.images.get(image_id)
        rec.imported_at = t
        atomic_write_json(store.images._path(image_id), rec.to_json())

    def ls(*filters, detail=False):
        return {i.id for i in api.stub.ListImages(
            pb.ListImagesRequest(filters=list(filters), detail=detail)).images}

    F, KV = pb.ImageFilter, pb.KeyValue
    assert ls() == {busybox, etcd, backup}
    images = {i.id: i for i in api.stub.ListImages(pb.ListImagesRequest()).images}
    e = images[etcd]
    assert (e.name, e.version, e.import_timestamp) == ("quay.io/coreos/etcd", "v3.5", 2000)
    assert e.base_format.type == pb.IMAGE_TYPE_OCI and e.size > 0 and e.manifest == b""
    assert {(k.Key, k.value) for k in e.labels} == {("tier", "kv"), ("owner", "coreos")}
    assert [(k.Key, k.value) for k in e.annotations] == [("org.opencontainers.image.source", "etcd")]

    assert ls(F(ids=[etcd, "sha256:" + "0" * 64])) == {etcd}
    assert ls(F(prefixes=["quay.io/", "k8s.io/"])) == {etcd, backup}
    assert ls(F(base_names=["etcd"])) == {etcd}                    # not etcd-backup
    assert ls(F(keywords=["etcd"])) == {etcd, backup}
    assert ls(F(full_names=["docker.io/library/busybox"])) == {busybox}
    assert ls(F(labels=[KV(Key="tier", value="kv")])) == {etcd, backup}
    assert ls(F(labels=[KV(Key="tier", value="kv"), KV(Key="owner", value="coreos")])) == {etcd}
    assert ls(F(annotations=[KV(Key="org.opencontainers.image.source", value="etcd")])) == {etcd}
    assert ls(F(imported_after=1000)) == {etcd, backup}            # strictly after
    assert ls(F(imported_before=3000)) == {busybox, etcd}          # strictly before
    assert ls(F(imported_after=1000, imported_before=3000)) == {etcd}
    assert ls(F(keywords=["etcd"], labels=[KV(Key="owner", value="coreos")])) == {etcd}  # AND
    assert ls(F(base_names=["busybox"]), F(base_names=["etcd-backup"])) == {busybox, backup}  # OR

    # A malformed record (written by hand, or by a broken tool) is skipped, not fatal.
    (store.images.root / ("f" * 64 + ".json")).write_text("{not json")
    assert ls() == {busybox, etcd, backup}
    assert "skipping unreadable image record" in api.stderr()

    detailed = {i.id: i for i in api.stub.ListImages(pb.ListImagesRequest(detail=True)).images}
    rec = store.images.get(etcd)
    assert detailed[etcd].manifest == store.blobs.read(rec.manifest_digest)

    for ident in (etcd, etcd[7:19], "quay.io/coreos/etcd:v3.5"):
        got = api.stub.InspectImage(pb.InspectImageRequest(id=ident)).image
        assert got.id == etcd and json.loads(got.manifest)["schemaVersion"] == 2
    with pytest.raises(grpc.RpcError) as err:
        api.stub.InspectImage(pb.InspectImageRequest(id="sha256:" + "0" * 64))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


# -- events -------------------------------------------------------------------------------------

def test_events_for_a_pods_whole_life(api: Service, paths: Paths):
    t0 = int(time.time())
    every = EventCollector(api.stub)
    apps_only = EventCollector(api.stub, pb.EventFilter(
        types=[pb.EVENT_TYPE_APP_STARTED, pb.EVENT_TYPE_APP_EXITED], names=["db"]))
    time.sleep(0.3)   # both streams are open before anything happens

    pod, lk = new_pod(paths, [("web", IMG_A), ("db", IMG_B)])
    advance(pod, "prepare")
    advance(pod, "prepared")
    assert [e.type for e in every.take(1)] == [pb.EVENT_TYPE_POD_PREPARED]
    advance(pod, "run")
    start_pod(pod)
    got = every.take(3)
    assert [e.type for e in got] == [pb.EVENT_TYPE_POD_STARTED, pb.EVENT_TYPE_APP_STARTED,
                                     pb.EVENT_TYPE_APP_STARTED]
    assert {getattr(e, "from") for e in got[1:]} == {"web", "db"}
    exit_app(pod, "db", 4)
    e = every.take(1)[0]
    assert (e.type, e.id, getattr(e, "from")) == (pb.EVENT_TYPE_APP_EXITED, pod.uuid, "db")
    assert {(k.Key, k.value) for k in e.data} == {("exit_code", "4")}
    exit_app(pod, "web", 0)
    exit_pod(pod, lk)
    assert [e.type for e in every.take(2)] == [pb.EVENT_TYPE_APP_EXITED, pb.EVENT_TYPE_POD_EXITED]
    rmtree(pod.refresh().path)                       # what gc's sweep ends with
    e = every.take(1)[0]
    assert (e.type, e.id) == (pb.EVENT_TYPE_POD_GARBAGE_COLLECTED, pod.uuid)

    db = apps_only.take(2)
    assert [(e.type, getattr(e, "from")) for e in db] == [(pb.EVENT_TYPE_APP_STARTED, "db"),
                                                          (pb.EVENT_TYPE_APP_EXITED, "db")]
    assert apps_only.none_within(0.5)

    # A pod that runs and exits between two polls still yields every milestone, in order.
    quick, qlk = new_pod(paths, [("job", IMG_A)])
    advance(quick, "prepare", "prepared", "run")
    start_pod(quick)
    exit_app(quick, "job", 0)
    exit_pod(quick, qlk)
    assert [e.type for e in every.take(5)] == [
        pb.EVENT_TYPE_POD_PREPARED, pb.EVENT_TYPE_POD_STARTED, pb.EVENT_TYPE_APP_STARTED,
        pb.EVENT_TYPE_APP_EXITED, pb.EVENT_TYPE_POD_EXITED]
    # A pod abandoned while preparing.
    aborted, alk = new_pod(paths)
    advance(aborted, "prepare")
    alk.close()
    e = every.take(1)[0]
    assert (e.type, e.id) == (pb.EVENT_TYPE_POD_PREPARE_ABORTED, aborted.uuid)
    every.cancel()
    apps_only.cancel()

    # since_time replays what happened since the service started; until_time ends the stream.
    replay = EventCollector(api.stub, pb.EventFilter(since_time=t0, until_time=int(time.time()) + 1,
                                                     ids=[pod.uuid]))
    got = replay.take(8)
    assert [e.type for e in got] == [
        pb.EVENT_TYPE_POD_PREPARED, pb.EVENT_TYPE_POD_STARTED, pb.EVENT_TYPE_APP_STARTED,
        pb.EVENT_TYPE_APP_STARTED, pb.EVENT_TYPE_APP_EXITED, pb.EVENT_TYPE_APP_EXITED,
        pb.EVENT_TYPE_POD_EXITED, pb.EVENT_TYPE_POD_GARBAGE_COLLECTED]
    assert replay.ended.wait(5), "the stream must close once until_time has passed"
    future = EventCollector(api.stub, pb.EventFilter(since_time=int(time.time()) + 3600))
    assert future.none_within(0.5)
    future.cancel()


def test_events_for_image_import_and_removal(api: Service, paths: Paths):
    from rktnetes.store.gc import remove_image

    events = EventCollector(api.stub, pb.EventFilter(
        types=[pb.EVENT_TYPE_IMAGE_IMPORTED, pb.EVENT_TYPE_IMAGE_REMOVED]))
    time.sleep(0.3)
    store = Store(paths.store)
    image_id = make_image(store, ["docker.io/library/evt:2"])
    e = events.take(1)[0]
    assert (e.type, e.id, getattr(e, "from")) == (pb.EVENT_TYPE_IMAGE_IMPORTED, image_id,
                                                  "docker.io/library/evt")
    remove_image(store, image_id)
    e = events.take(1)[0]
    assert (e.type, e.id) == (pb.EVENT_TYPE_IMAGE_REMOVED, image_id)
    events.cancel()


# -- logs ---------------------------------------------------------------------------------------

def test_get_logs(api: Service, paths: Paths):
    pod, lk = new_pod(paths, [("web", IMG_A), ("db", IMG_B)])
    advance(pod, "prepare", "prepared", "run")
    start_pod(pod)
    base = int(time.time()) - 100
    append_log(pod, "web", [cri_line(base + 1, "stdout", "web one"),
                            cri_line(base + 3, "stderr", "web two, in ", "P"),
                            cri_line(base + 3.5, "stderr", "two parts"),
                            cri_line(base + 5, "stdout", "web three")])
    append_log(pod, "db", [cri_line(base + 2, "stdout", "db one"),
                           cri_line(base + 4, "stdout", "db two")])

    def logs(**kw):
        return [x for r in api.stub.GetLogs(pb.GetLogsRequest(pod_id=pod.uuid, **kw)) for x in r.lines]

    assert logs(app_name="web") == ["web one", "web two, in two parts", "web three"]
    assert logs() == ["web one", "db one", "web two, in two parts", "db two", "web three"]
    assert logs(app_name="web", lines=2) == ["web two, in two parts", "web three"]
    assert logs(since_time=int(base + 2), until_time=int(base + 4)) == [
        "db one", "web two, in two parts", "db two"]
    with pytest.raises(grpc.RpcError) as e:
        logs(app_name="nope")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND

    # follow: the last line, then new lines as the app writes them
    call = api.stub.GetLogs(pb.GetLogsRequest(pod_id=pod.uuid, app_name="web", lines=1, follow=True))
    it = iter(call)
    assert list(next(it).lines) == ["web three"]
    append_log(pod, "web", [cri_line(time.time(), "stdout", "live 1")])
    assert list(next(it).lines) == ["live 1"]
    with open(pod.log_path("web"), "a") as f:          # a line written in two writes
        f.write(cri_line(time.time(), "stdout", "live 2")[:20])
        f.flush()
        time.sleep(0.3)
        f.write(cri_line(time.time(), "stdout", "live 2")[20:])
    assert list(next(it).lines) == ["live 2"]
    # the pod exits and moves: the open file keeps being read
    exit_pod(pod, lk)
    append_log(pod, "web", [cri_line(time.time(), "stdout", "after move")])
    assert list(next(it).lines) == ["after move"]
    call.cancel()

    # follow ends by itself once the pod is removed
    call = api.stub.GetLogs(pb.GetLogsRequest(pod_id=pod.uuid, app_name="db", follow=True))
    it = iter(call)
    assert list(next(it).lines) == ["db one", "db two"]
    rmtree(pod.path)
    ended = threading.Event()
    threading.Thread(target=lambda: (list(it), ended.set()), daemon=True).start()
    assert ended.wait(10)


def test_follow_logs_of_an_app_not_started_yet(api: Service, paths: Paths):
    """The log file appears only once the pod runs, by then in another state directory."""
    pod, lk = new_pod(paths, [("late", IMG_A)])
    advance(pod, "prepare", "prepared")
    call = api.stub.GetLogs(pb.GetLogsRequest(pod_id=pod.uuid, follow=True))
    it = iter(call)
    time.sleep(0.3)
    advance(pod, "run")
    start_pod(pod)
    append_log(pod, "late", [cri_line(time.time(), "stdout", "finally")])
    assert list(next(it).lines) == ["finally"]
    call.cancel()
    lk.close()


# -- a real pod, run by the real runtime --------------------------------------------------------

def _runtime_ready() -> str:
    try:
        import rktnetes.supervise.monitor  # noqa: F401
    except ImportError:
        return "the pod monitor (rktnetes.supervise.monitor) is not there yet"
    if os.geteuid() != 0:
        return "running pods needs root"
    return ""


@pytest.mark.containers
@pytest.mark.skipif(bool(_runtime_ready()), reason=_runtime_ready() or "ok")
def test_real_pod_through_rkt_run(api: Service, paths: Paths):
    events = EventCollector(api.stub)
    time.sleep(0.3)
    rkt = [sys.executable, "-m", "rktnetes", "--dir", str(paths.data), "--config-dir",
           str(paths.config)]
    r = subprocess.run([*rkt, "run", "--stage1", "fly", "builtin:busybox", "--name", "hello",
                        "--exec", "/bin/sh", "--", "-c", "echo hello from rkt; exit 3"],
                       capture_output=True, text=True, timeout=300)
    assert "hello from rkt" in r.stdout, r.stderr
    pods = api.stub.ListPods(pb.ListPodsRequest(detail=True)).pods
    assert len(pods) == 1
    pod = pods[0]
    assert pod.state == pb.POD_STATE_EXITED
    assert [(a.name, a.state, a.exit_code) for a in pod.apps] == [("hello", pb.APP_STATE_EXITED, 3)]
    img = api.stub.InspectImage(pb.InspectImageRequest(id=pod.apps[0].image.id)).image
    assert img.id == pod.apps[0].image.id
    lines = [x for resp in api.stub.GetLogs(pb.GetLogsRequest(pod_id=pod.id)) for x in resp.lines]
    assert "hello from rkt" in lines
    types = [e.type for e in events.take(6, timeout=30)]
    assert types[0] == pb.EVENT_TYPE_IMAGE_IMPORTED
    assert set(types[1:]) == {pb.EVENT_TYPE_POD_PREPARED, pb.EVENT_TYPE_POD_STARTED,
                              pb.EVENT_TYPE_APP_STARTED, pb.EVENT_TYPE_APP_EXITED,
                              pb.EVENT_TYPE_POD_EXITED}
    events.cancel()


def test_tcp_listen_and_restart_leaves_pods_alone(paths: Paths, tmp_path: Path):
    pod, _lk = new_pod(paths)
    advance(pod, "prepare", "prepared", "run")
    start_pod(pod)
    for _ in range(2):                  # stop and start again: the pod stays as it is
        svc = start_service(paths, "127.0.0.1:0", tmp_path)
        try:
            p = svc.stub.InspectPod(pb.InspectPodRequest(id=pod.uuid)).pod
            assert p.state == pb.POD_STATE_RUNNING
        finally:
            stop_service(svc)
        assert svc.proc.returncode == 0
    assert pod.refresh().state == "run" and pod.is_locked()


# -- --listen: checked before gRPC sees it, one line on failure -------------------------------

@pytest.mark.parametrize("listen, expect", [
    ("127.0.0.1:99999", "not a number from 0 to 65535"),
    ("0.0.0.0:70000", "not a number from 0 to 65535"),
    ("127.0.0.1:-1", "not a number from 0 to 65535"),
    ("256.1.1.1:1234", "'256.1.1.1' is not an IPv4 address"),
    ("bogus", "expected HOST:PORT"),
    (":1234", "expected HOST:PORT"),
    ("::1:1234", "IPv6 address goes in brackets"),
    ("[nope]:1234", "is not an IPv6 address"),
    ("bad_host!:1234", "is not a host name or address"),
    ("unix://relative/sock", "needs an absolute path"),
])
def test_bad_listen_addresses_are_refused(rkt, listen, expect):
    res = rkt.fails("api-service", f"--listen={listen}", timeout=30)
    assert res.returncode == 2 and expect in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1, res.stderr


def test_parse_listen():
    from rktnetes.api.server import Listen, parse_listen

    assert parse_listen("127.0.0.1:0") == Listen(host="127.0.0.1", port=0)
    assert parse_listen("[::1]:65535") == Listen(host="::1", port=65535)
    assert parse_listen("localhost:15441") == Listen(host="localhost", port=15441)
    assert parse_listen("unix:///run/x.sock") == Listen(unix="/run/x.sock")


def test_port_in_use_is_one_line(rkt):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = rkt.fails("api-service", f"--listen=127.0.0.1:{port}", timeout=30)
    assert res.stderr == f"rkt: cannot listen on 127.0.0.1:{port}: address already in use\n"


def test_unix_socket_needs_an_existing_directory(rkt, tmp_path):
    sock = tmp_path / "no" / "dir" / "api.sock"
    res = rkt.fails("api-service", f"--listen=unix://{sock}", timeout=30)
    assert f"parent directory {sock.parent} does not exist" in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1 and not (tmp_path / "no").exists()


def test_only_the_run_directory_is_created(tmp_path, monkeypatch):
    from rktnetes.proto import serving
    from rktnetes.errors import RktError

    monkeypatch.setattr(serving, "RUN_DIR", tmp_path / "run")
    serving.clear_stale_socket(tmp_path / "run" / "api.sock")
    assert (tmp_path / "run").is_dir()
    monkeypatch.setattr(serving, "RUN_DIR", tmp_path / "a" / "run")
    with pytest.raises(RktError, match="cannot create"):   # /run itself must exist
        serving.clear_stale_socket(tmp_path / "a" / "run" / "api.sock")
    assert not (tmp_path / "a").exists()
