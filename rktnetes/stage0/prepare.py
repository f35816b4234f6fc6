"""`rkt prepare` (and the first half of `rkt run`, of a sandbox's start): resolve a PodSpec's
images and apps, check everything, and leave a pod in `prepared`, locked by the caller.

Everything that can be checked without a pod directory is checked first, so bad input leaves
nothing behind; what follows the directory's creation removes it on failure. The checks here
are the engine's, in neutral words (the CLI has checked its flags already, in its own).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import time

from rktnetes.config import Paths
from rktnetes.errors import NotFoundError, PodError, RktError, UsageError
from rktnetes.image.config import ImageConfig
from rktnetes.lazylog import getLogger
from rktnetes.pod.manifest import App, NetworkRequest, PodManifest, PortForward, Volume
from rktnetes.pod.store import PREPARE, PREPARED, Pod, PodLock, PodStore, new_uuid
from rktnetes.store import ImageRecord, Store

from .appspec import assign_names, build_app, short
from .imagefs import LayeredFS
from .options import PULL_POLICIES
from .spec import (RESTART_POLICIES, AppSpec, InvalidSpec, PodSpec, PullOptions, Resources,
                   check_app, check_hostname, check_sysctls)

log = getLogger(__name__)
_ID_RE = re.compile(r"^(sha256:[0-9a-f]{4,64}|[0-9a-f]{12,64})$")


# -- the spec, before any image is looked at ---------------------------------------------------

def check_pod(spec: PodSpec) -> None:
    """What the flavor can do, and what can be checked without the images. InvalidSpec (or
    UsageError, for a flavor asked for what it cannot do: hint "flavor") with one line."""
    from rktnetes.net.flags import check_net_requests
    from rktnetes.stage1 import capabilities

    caps = capabilities(spec.stage1)
    name = spec.stage1
    if spec.restart not in RESTART_POLICIES:
        raise InvalidSpec(f"restart policy {spec.restart!r}: use never, on-failure or always")
    if spec.hostname:
        check_hostname(spec.hostname)
        if not caps.own_hostname:
            raise InvalidSpec(f"a {name} pod has the host's name: it cannot have its own",
                              hint="flavor")
    requests = check_net_requests(default_networks(spec))
    if not caps.own_network and [r.name for r in requests] != ["host"]:
        raise InvalidSpec(f"the {name} stage1 always uses the host network", hint="flavor")
    if spec.ports and [r.name for r in requests] in (["host"], ["none"]):
        raise InvalidSpec(f"port forwards need a pod network; the {requests[0].name} network "
                          f"has none")
    if spec.sandbox and not caps.sandbox:
        raise InvalidSpec(f"a sandbox needs namespaces for its apps to share: the {name} "
                          f"stage1 cannot run one", hint="flavor")
    if spec.interactive and len(spec.apps) != 1:
        raise InvalidSpec("an interactive pod needs exactly one app")
    if caps.max_apps and len(spec.apps) > caps.max_apps:
        raise InvalidSpec(f"the {name} stage1 runs exactly one app", hint="flavor")
    check_sysctls(spec.sysctls, [r.name for r in requests] == ["host"])
    if spec.cgroup_parent and not posixpath.isabs(spec.cgroup_parent):
        raise InvalidSpec(f"cgroup parent {spec.cgroup_parent[:80]!r}: must be an absolute "
                          f"cgroup path")
    if not caps.resource_limits:
        for a in spec.apps:
            if a.resources != Resources():
                raise InvalidSpec(f"{name} applies no resource limits (it runs apps in the "
                                  f"host's cgroups)", hint="flavor")
    names = [v.name for v in spec.volumes]
    for n in names:
        if names.count(n) > 1:
            raise InvalidSpec(f"volume {n!r} given more than once")
    for a in spec.apps:
        check_app(a)
        for m in a.mounts:
            if m.volume not in names:
                raise InvalidSpec(f"app {a.name or a.image}: mount of unknown volume "
                                  f"{m.volume!r}")


def default_networks(spec: PodSpec) -> list[NetworkRequest]:
    """The networks a pod joins: those asked for, else its flavor's default."""
    from rktnetes.stage1 import capabilities

    if spec.networks:
        return list(spec.networks)
    return [NetworkRequest("default" if capabilities(spec.stage1).own_network else "host")]


def check_network_setup(paths: Paths, networks: list[NetworkRequest],
                        ports: list[PortForward]) -> None:
    """What can be checked on the host before a pod exists: the networks are defined and
    parse, their plugins are installed, the host ports are free. NetworkError (one line)."""
    from rktnetes.net.flags import check_net_requests

    # --net=none / --net=host without ports: nothing on the host to check (preflight would
    # only re-validate the requests, done here), so skip importing rktnetes.net.setup and its
    # CNI/netns modules on every `rkt run`'s start (~10 ms).
    requests = check_net_requests(list(networks) or [NetworkRequest("none")])
    if not ports and [r.name for r in requests] in (["none"], ["host"]):
        return
    from rktnetes.net.setup import preflight

    preflight(paths, networks, ports)


def resolve_image(paths: Paths, store: Store, name: str, pull: PullOptions) -> ImageRecord:
    """An image ID (prefix) from the store, or a reference fetched per the pull policy."""
    if pull.policy not in PULL_POLICIES:
        raise InvalidSpec(f"pull policy {pull.policy!r}: use new, update or never")
    if _ID_RE.match(name):
        with contextlib.suppress(NotFoundError):
            return store.images.find(name)
    from rktnetes.stage0.fetch import fetch

    return fetch(paths, name, pull.policy, insecure_http=pull.insecure_http, quiet=pull.quiet,
                 insecure_tls=pull.insecure_tls, credentials=pull.credentials)


def image_config(store: Store, rec: ImageRecord) -> ImageConfig:
    return ImageConfig.parse(store.blobs.read(rec.id), f"config of {rec.name}")


def image_fs(store: Store, rec: ImageRecord) -> LayeredFS:
    from rktnetes.image.layers import ensure_layer

    return LayeredFS([ensure_layer(store, layer) for layer in rec.layers])


def check_exec(app: App, fs: LayeredFS) -> None:
    cmd = app.exec[0]
    if "/" in cmd and not cmd.startswith("/"):
        cmd = posixpath.normpath(posixpath.join(app.working_dir, cmd))
    if fs.which(cmd, app.env.get("PATH", "")) is None:
        raise PodError(f"app {app.name}: {short(app.exec[0])} not found (or not executable) "
                       f"in image {short(app.image_name)}")


def check_identity(app: App, fs: LayeredFS, stage1: str = "default") -> None:
    """The app's user and group exist in the image's /etc/passwd and /etc/group (names are
    looked up as stage1 will; numbers pass), and the ids are ones the stage1 can use."""
    from rktnetes.stage1 import capabilities
    from rktnetes.stage1.users import identity_files, resolve

    try:
        passwd, group = identity_files(fs.read_file)
        ident = resolve(app.user, app.group, passwd, group, app.supplementary_gids)
    except RktError as e:
        raise PodError(f"app {app.name}: {e} (image {short(app.image_name)})") from None
    except ValueError:  # a malformed passwd/group line: stage1 would fail the same way
        raise PodError(f"app {app.name}: cannot read the users of image "
                       f"{short(app.image_name)} (malformed /etc/passwd or /etc/group)") from None
    caps = capabilities(stage1)
    limit = caps.max_id
    if limit:
        for what, n in (("uid", ident.uid), ("gid", ident.gid),
                        *(("supplementary gid", g) for g in ident.additional_gids)):
            if n > limit:
                raise InvalidSpec(f"app {app.name}: {what} {n} is out of range for the "
                                  f"{stage1} stage1 ({caps.max_id_by or 'it'} takes "
                                  f"0..{limit})")


def check_uuid_file(path: str, flag: str = "--uuid-file-save") -> None:
    """A file we will write the pod's UUID to: its directory exists, and it is not one."""
    if not path:
        return
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{flag} {short(path)}: is a directory")
    if not os.path.isdir(parent):
        why = "does not exist" if not os.path.lexists(parent) else "is not a directory"
        raise UsageError(f"{flag} {short(path)}: {short(parent)} {why}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {short(path)}: {short(parent)} is not writable")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise UsageError(f"{flag} {short(path)}: not a regular file")


def write_uuid_file(path: str, uuid: str, flag: str = "--uuid-file-save") -> None:
    try:
        with open(path, "w") as f:
            f.write(uuid + "\n")
    except OSError as e:
        raise PodError(f"{flag} {short(path)}: {e.strerror or e}") from None


def check_volumes(apps: list[App], volumes: list[Volume]) -> None:
    """On the host: each host volume's source exists; each mount names a volume."""
    names = [v.name for v in volumes]
    for v in volumes:
        if v.kind == "host" and not os.path.exists(v.source):
            raise PodError(f"volume {v.name}: host source {v.source} does not exist")
    for a in apps:
        for m in a.mounts:
            if m.volume not in names:
                raise InvalidSpec(f"app {a.name}: mount of unknown volume {m.volume!r}")


def resolve_ports(spec: PodSpec, exposed: list[str]) -> list[PortForward]:
    from rktnetes.net import check_port_forwards
    from rktnetes.net.flags import resolve_port

    return check_port_forwards([resolve_port(p, exposed) for p in spec.ports])


def app_for(paths: Paths, store: Store, spec: AppSpec, name: str, pull: PullOptions,
            stage1: str, interactive: bool = False, tty: bool = False
            ) -> tuple[App, ImageConfig]:
    """One app of a pod: its image resolved (fetched per the pull policy), its App built from
    the image's config and the spec, its command and identity checked inside the image."""
    rec = resolve_image(paths, store, spec.image, pull)
    cfg = image_config(store, rec)
    app = build_app(name, rec.id, spec.image, cfg, spec)
    app.interactive, app.tty = interactive, tty
    fs = image_fs(store, rec)
    try:
        check_exec(app, fs)
        check_identity(app, fs, stage1)
    finally:
        fs.close()
    return app, cfg


def build_manifest(paths: Paths, spec: PodSpec, pull: PullOptions | None = None) -> PodManifest:
    """Everything about the pod, checked; touches nothing but the image store (fetch)."""
    pull = pull or PullOptions()
    check_pod(spec)
    names = assign_names(spec.apps)
    store = Store.open(paths)
    apps = []
    exposed: list[str] = []
    for i, (a, name) in enumerate(zip(spec.apps, names)):
        try:
            app, cfg = app_for(paths, store, a, name, pull, spec.stage1, spec.interactive,
                               spec.interactive and spec.tty)
        except RktError as e:
            if not hasattr(e, "image_position"):
                e.image_position = i   # which image failed: a front end may say more of it
            raise
        exposed += [p for p in cfg.exposed_ports if p not in exposed]
        apps.append(app)
    check_volumes(apps, spec.volumes)
    ports = resolve_ports(spec, exposed)
    networks = default_networks(spec)
    check_network_setup(paths, networks, ports)
    uuid = new_uuid()
    return PodManifest(uuid=uuid, apps=apps, volumes=list(spec.volumes),
                       annotations=dict(spec.annotations), labels=dict(spec.labels),
                       stage1=spec.stage1, restart=spec.restart, created_at=time.time(),
                       networks=networks, ports=ports, hostname=spec.hostname or f"rkt-{uuid[:8]}",
                       dns=list(spec.dns), dns_search=list(spec.dns_search),
                       dns_options=list(spec.dns_options),
                       hosts_entries={k: list(v) for k, v in spec.hosts_entries.items()},
                       sandbox=spec.sandbox, cgroup_parent=spec.cgroup_parent,
                       host_uts=spec.host_uts,
                       sysctls=dict(spec.sysctls), origin=dict(spec.origin))


def prepare(paths: Paths, spec: PodSpec, pull: PullOptions | None = None
            ) -> tuple[Pod, PodLock]:
    """A pod in `prepared`, returned locked: the caller runs it or releases the lock."""
    store = Store.open(paths)
    # Shared gc lock: image gc cannot remove our images between resolving them and the
    # moment pod.json (which images_in_use reads) names them.
    with store.gc_lock.held(shared=True):
        manifest = build_manifest(paths, spec, pull)
        paths.secure()
        pod, lock = PodStore(paths.pods).create(manifest)
    try:
        pod.move(PREPARE)
        for app in manifest.apps:
            pod.app_dir(app.name).mkdir(parents=True, exist_ok=True)
        pod.move(PREPARED)
        for image_id in {a.image_id for a in manifest.apps}:
            with contextlib.suppress(RktError, OSError):
                store.images.touch(image_id)
    except BaseException:
        discard(paths, pod, lock)
        raise
    return pod, lock


def discard(paths: Paths, pod: Pod, lock: PodLock) -> None:
    """Remove a pod that never ran (a failed prepare), undoing whatever its journal records."""
    from .podfs import remove_pod_dir

    try:
        pod.refresh()
        remove_pod_dir(paths, pod)
    except RktError as e:
        log.warning("could not remove pod %s: %s", pod.uuid, e)
    finally:
        lock.close()


def set_networks(paths: Paths, pod: Pod, requests: list[NetworkRequest]) -> None:
    """Replace the networks a prepared pod was made with (`rkt run-prepared --net`). The caller
    holds the pod's lock."""
    from rktnetes.net.flags import check_net_requests
    from rktnetes.stage1 import capabilities

    pod.refresh()
    if pod.state != PREPARED:
        raise PodError(f"pod {pod.uuid} is {pod.state}, not prepared")
    m = pod.manifest()
    requests = check_net_requests(list(requests))
    if not capabilities(m.stage1).own_network and [r.name for r in requests] != ["host"]:
        raise InvalidSpec(f"the {m.stage1} stage1 always uses the host network", hint="flavor")
    if m.ports and [r.name for r in requests] in (["host"], ["none"]):
        raise InvalidSpec(f"pod {pod.uuid} forwards ports: --net={requests[0].name} has no "
                          f"pod network to forward them to")
    check_network_setup(paths, requests, m.ports)
    m.networks = requests
    pod.save_manifest(m)
