"""`rkt prepare` (and the first half of `rkt run`): resolve images and apps, validate everything,
and leave a pod in `prepared`, locked by the caller.

Everything that can be checked without a pod directory is checked first, so bad input leaves
nothing behind; what follows the directory's creation removes it on failure.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import posixpath
import re
import sys
import time
from dataclasses import dataclass, field

from rktnetes.config import Paths
from rktnetes.errors import NotFoundError, PodError, RktError, UsageError
from rktnetes.image.config import ImageConfig
from rktnetes.lazylog import getLogger
from rktnetes.pod.manifest import App, NetworkRequest, PodManifest, PortForward, Volume
from rktnetes.pod.store import PREPARE, PREPARED, Pod, PodLock, PodStore, new_uuid
from rktnetes.store import ImageRecord, Store

from .appspec import AppFlags, assign_names, build_app, read_env_files, short
from .imagefs import LayeredFS
from .options import PULL_POLICIES, RESTART_POLICIES, parse_insecure_options
from .volumes import parse_volume

log = getLogger(__name__)
# compiled (and cached by `re`) at first use: only --hostname and --hosts-entry need it
_HOSTNAME = (r"^(?=.{1,253}$)[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
             r"(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$")
_ID_RE = re.compile(r"^(sha256:[0-9a-f]{4,64}|[0-9a-f]{12,64})$")


@dataclass
class PodOptions:
    """The pod flags of `rkt run` / `rkt prepare`."""

    stage1: str = "default"
    hostname: str = ""
    interactive: bool = False
    volumes: list[str] = field(default_factory=list)
    restart: str = "never"
    annotations: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    net: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)         # --port NAME:[HOSTIP:]HOSTPORT
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_opt: list[str] = field(default_factory=list)
    hosts_entries: list[str] = field(default_factory=list)  # --hosts-entry IP=HOST
    pull_policy: str = "new"
    insecure_options: list[str] = field(default_factory=list)
    quiet: bool = False


def parse_kv_list(values: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        k, sep, val = v.partition("=")
        if not sep or not k.strip():
            raise UsageError(f"{flag} {v!r}: expected KEY=VALUE")
        out[k.strip()] = val
    return out


# -- pod-level network flags: --net, --port, --dns*, --hosts-entry, --hostname -------------


def _split_list(values: list[str]) -> list[str]:
    """Repeatable flags that also take comma lists (`--dns 1.1.1.1,8.8.8.8`)."""
    return [x.strip() for v in values for x in v.split(",") if x.strip()]


def parse_hosts_entries(values: list[str]) -> dict[str, list[str]]:
    """`--hosts-entry IP=HOST[,HOST...]` (repeatable) -> {ip: [names]}."""
    out: dict[str, list[str]] = {}
    for v in values:
        ip, eq, names = v.partition("=")
        hosts = [h.strip() for h in names.replace(" ", ",").split(",") if h.strip()]
        if not eq or not hosts:
            raise UsageError(f"--hosts-entry {v!r}: expected IP=HOSTNAME")
        try:
            ip = str(ipaddress.ip_address(ip.strip()))
        except ValueError:
            raise UsageError(f"--hosts-entry {v!r}: {ip.strip()!r} is not an IP address") from None
        for h in hosts:
            if not re.match(_HOSTNAME, h):
                raise UsageError(f"--hosts-entry {v!r}: {h!r} is not a valid host name")
        out.setdefault(ip, [])
        out[ip] += [h for h in hosts if h not in out[ip]]
    return out


def parse_dns(values: list[str]) -> list[str]:
    """`--dns IP` (repeatable, comma lists), or rkt's `host` / `none`."""
    servers = _split_list(values)
    if any(s in ("host", "none") for s in servers):
        if len(servers) > 1:
            raise UsageError("--dns=host and --dns=none cannot be combined with other servers")
        return servers
    for s in servers:
        try:
            ipaddress.ip_address(s)
        except ValueError:
            raise UsageError(f"--dns {s!r}: not an IP address (or host, none)") from None
    return servers


def _check_port_syntax(values: list[str]) -> None:
    """The host side of each --port, before any fetch (the name needs the images' config)."""
    from rktnetes.net import parse_port_flag

    for v in values:
        name = v.partition(":")[0]
        parse_port_flag(v, {name: "1/tcp"} if name else {})


def network_fields(net: list[str], ports: list[str], *, stage1: str = "default",
                   exposed_ports: list[str] | dict[str, str] | None = None, dns: list[str] = (),
                   dns_search: list[str] = (), dns_opt: list[str] = (),
                   hosts_entries: list[str] = (), hostname: str = "") -> dict:
    """The pod manifest fields for the pod-level network flags (`rkt run|prepare`, and
    `rkt app sandbox`): {networks, ports, dns, dns_search, dns_options, hosts_entries,
    hostname}. `exposed_ports` are the apps' images' ("80/tcp", ...); none known yet: only
    PORT/PROTO names work. Pure: checks syntax; `check_network_setup` checks the host."""
    from rktnetes.net import check_port_forwards, parse_net_flags, parse_port_flag

    if hostname and not re.match(_HOSTNAME, hostname):
        raise UsageError(f"--hostname {hostname!r}: not a valid host name")
    if stage1 == "fly":
        if hostname:
            raise UsageError("--hostname: a fly pod runs in the host's namespaces and has the "
                             "host's name; use --stage1=default")
        requests = parse_net_flags(net)          # still checked, though fly uses the host's
        if any(r.name != "host" for r in requests) and net:
            raise UsageError("the fly stage1 always uses the host network (--net=host)")
        requests = [NetworkRequest("host")]
    else:
        requests = parse_net_flags(net)
    exposed = exposed_ports or []
    forwards: list[PortForward] = check_port_forwards([parse_port_flag(p, exposed)
                                                       for p in ports])
    if forwards and [r.name for r in requests] in (["host"], ["none"]):
        raise UsageError(f"--port needs a pod network; --net={requests[0].name} has none")
    return {"networks": requests, "ports": forwards, "dns": parse_dns(list(dns)),
            "dns_search": _split_list(list(dns_search)), "dns_options": _split_list(list(dns_opt)),
            "hosts_entries": parse_hosts_entries(list(hosts_entries)), "hostname": hostname}


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


def available_stage1s() -> list[str]:
    try:
        from rktnetes import stage1 as s1

        return list(getattr(s1, "FLAVORS", None) or getattr(s1, "NAMES", None) or ("default", "fly"))
    except ImportError:
        return ["default", "fly"]


def check_options(o: PodOptions) -> None:
    if o.stage1 not in available_stage1s():
        raise UsageError(f"unknown stage1 {o.stage1!r} (available: {', '.join(available_stage1s())})")
    if o.restart not in RESTART_POLICIES:
        raise UsageError(f"--restart={o.restart}: use never, on-failure or always")
    if o.pull_policy not in PULL_POLICIES:
        raise UsageError(f"--pull-policy={o.pull_policy}: use new, update or never")


def resolve_image(paths: Paths, store: Store, name: str, o: PodOptions) -> ImageRecord:
    """An image ID (prefix) from the store, or a reference fetched per the pull policy."""
    if _ID_RE.match(name):
        with contextlib.suppress(NotFoundError):
            return store.images.find(name)
    from rktnetes.stage0.fetch import fetch

    insecure = parse_insecure_options(o.insecure_options)
    return fetch(paths, name, o.pull_policy, insecure_http="http" in insecure,
                 quiet=o.quiet, insecure_tls="tls" in insecure)


def image_config(store: Store, rec: ImageRecord) -> ImageConfig:
    return ImageConfig.parse(store.blobs.read(rec.id), f"config of {rec.name}")


def image_fs(store: Store, rec: ImageRecord) -> LayeredFS:
    from rktnetes.store.layers import ensure_layer

    return LayeredFS([ensure_layer(store, layer) for layer in rec.layers])


def check_exec(app: App, fs: LayeredFS) -> None:
    cmd = app.exec[0]
    if "/" in cmd and not cmd.startswith("/"):
        cmd = posixpath.normpath(posixpath.join(app.working_dir, cmd))
    if fs.which(cmd, app.env.get("PATH", "")) is None:
        raise PodError(f"app {app.name}: {short(app.exec[0])} not found (or not executable) "
                       f"in image {short(app.image_name)}")


RUNC_MAX_ID = 2**31 - 1   # runc (libcontainer) refuses larger uids and gids


def check_identity(app: App, fs: LayeredFS, stage1: str = "default") -> None:
    """The app's user and group exist in the image's /etc/passwd and /etc/group (names are
    looked up as stage1 will; numbers pass), and the ids are ones the stage1 can use."""
    from rktnetes.stage1.users import identity_files, resolve

    try:
        passwd, group = identity_files(fs.read_file)
        ident = resolve(app.user, app.group, passwd, group, app.supplementary_gids)
    except RktError as e:
        raise PodError(f"app {app.name}: {e} (image {short(app.image_name)})") from None
    except ValueError:  # a malformed passwd/group line: stage1 would fail the same way
        raise PodError(f"app {app.name}: cannot read the users of image "
                       f"{short(app.image_name)} (malformed /etc/passwd or /etc/group)") from None
    if stage1 != "fly":
        for what, n in (("uid", ident.uid), ("gid", ident.gid),
                        *(("supplementary gid", g) for g in ident.additional_gids)):
            if n > RUNC_MAX_ID:
                raise UsageError(f"app {app.name}: {what} {n} is out of range for the "
                                 f"{stage1} stage1 (runc takes 0..{RUNC_MAX_ID})")


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
    names = [v.name for v in volumes]
    for n in names:
        if names.count(n) > 1:
            raise UsageError(f"volume {n!r} given more than once")
    for v in volumes:
        if v.kind == "host" and not os.path.exists(v.source):
            raise PodError(f"volume {v.name}: host source {v.source} does not exist")
    for a in apps:
        for m in a.mounts:
            if m.volume not in names:
                raise UsageError(f"app {a.name}: --mount names unknown volume {m.volume!r} "
                                 f"(define it with --volume {m.volume},kind=...)")


def build_manifest(paths: Paths, o: PodOptions, flags: list[AppFlags]) -> PodManifest:
    """Everything about the pod, checked; touches nothing but the image store (fetch)."""
    check_options(o)
    volumes = [parse_volume(v) for v in o.volumes]
    annotations = parse_kv_list(o.annotations, "--annotation")
    labels = parse_kv_list(o.labels, "--label")
    # syntax only: port names need the images' exposed ports
    net = network_fields(o.net, [], stage1=o.stage1, dns=o.dns, dns_search=o.dns_search,
                         dns_opt=o.dns_opt, hosts_entries=o.hosts_entries, hostname=o.hostname)
    _check_port_syntax(o.ports)
    names = assign_names(flags)
    if o.interactive and len(flags) != 1:
        raise UsageError("--interactive needs exactly one app")
    if o.stage1 == "fly" and len(flags) != 1:
        raise UsageError("the fly stage1 runs exactly one app")
    if o.stage1 == "fly":
        for f in flags:
            for flag, v in (("--memory", f.memory), ("--cpu", f.cpu)):
                if v:
                    raise UsageError(f"{flag}: fly applies no resource limits (it runs apps "
                                     f"in the host's cgroups); use --stage1=default")
    env_files = [read_env_files(f.env_files) for f in flags]
    # Check pure app flags before any fetch, so a typo never costs a download.
    for f, files in zip(flags, env_files):
        build_app("x", "", f.image, _EMPTY_CFG, _with_exec(f), files)  # raises UsageError
    store = Store.open(paths)
    apps = []
    exposed: list[str] = []
    for i, (f, name, files) in enumerate(zip(flags, names, env_files)):
        try:
            rec = resolve_image(paths, store, f.image, o)
        except RktError as e:
            e.image_position = i   # which image failed: a front end may say more about it
            raise
        cfg = image_config(store, rec)
        exposed += [p for p in cfg.exposed_ports if p not in exposed]
        app = build_app(name, rec.id, f.image, cfg, f, files)
        app.interactive = o.interactive
        app.tty = o.interactive and sys.stdin.isatty()
        fs = image_fs(store, rec)
        check_exec(app, fs)
        check_identity(app, fs, o.stage1)
        apps.append(app)
    check_volumes(apps, volumes)
    if o.ports:
        net["ports"] = network_fields(o.net, o.ports, stage1=o.stage1,
                                      exposed_ports=exposed)["ports"]
    check_network_setup(paths, net["networks"], net["ports"])
    uuid = new_uuid()
    net["hostname"] = net["hostname"] or f"rkt-{uuid[:8]}"
    return PodManifest(uuid=uuid, apps=apps, volumes=volumes, annotations=annotations, labels=labels,
                       stage1=o.stage1, restart=o.restart, created_at=time.time(), **net)


_EMPTY_CFG = ImageConfig("linux", "", [], [], ["/x"], [], "", "", [], {}, "", {})


def _with_exec(f: AppFlags) -> AppFlags:
    from dataclasses import replace

    return replace(f, exec=f.exec or "/x")


def prepare(paths: Paths, o: PodOptions, flags: list[AppFlags]) -> tuple[Pod, PodLock]:
    """A pod in `prepared`, returned locked: the caller runs it or releases the lock."""
    store = Store.open(paths)
    # Shared gc lock: image gc cannot remove our images between resolving them and the
    # moment pod.json (which images_in_use reads) names them.
    with store.gc_lock.held(shared=True):
        manifest = build_manifest(paths, o, flags)
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


def set_networks(paths: Paths, pod: Pod, net: list[str]) -> None:
    """`rkt run-prepared --net ...`: replace the networks a prepared pod was made with.
    The caller holds the pod's lock."""
    from rktnetes.net import parse_net_flags

    pod.refresh()
    if pod.state != PREPARED:
        raise PodError(f"pod {pod.uuid} is {pod.state}, not prepared")
    m = pod.manifest()
    requests = parse_net_flags(net)
    if m.stage1 == "fly":
        if [r.name for r in requests] != ["host"]:
            raise UsageError("the fly stage1 always uses the host network (--net=host)")
    if m.ports and [r.name for r in requests] in (["host"], ["none"]):
        raise UsageError(f"pod {pod.uuid} forwards ports: --net={requests[0].name} has no "
                         f"pod network to forward them to")
    check_network_setup(paths, requests, m.ports)
    m.networks = requests
    pod.save_manifest(m)
