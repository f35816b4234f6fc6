"""Setting up and tearing down a pod's networks: the API the rest of rktnetes calls.

Order of things, so that a `kill -9` at any point leaves only what the journal can undo:
  1. everything that can be checked is checked first (network names, plugin binaries, host
     ports), so bad input leaves nothing behind;
  2. the netns is recorded in the pod journal, then created and `lo` brought up;
  3. per network: the exact configuration is saved in `net/<ifname>.json`, a `cni` journal
     entry recorded, then ADD runs; each plugin's result is saved as it comes
     (`net/<ifname>.result.json`), because DEL needs it (`firewall` removes its rules by the
     IPs of the result);
  4. the summary is saved as `networks.json`.
Teardown needs only the journal and those files: DEL each attachment in reverse, then remove
the netns. A successful DEL removes the attachment's files, so a repeated teardown does not DEL
again (an address released by the first DEL may already belong to another pod).
"""

from __future__ import annotations

import contextlib
import errno
import re
from pathlib import Path

from rktnetes import fsutil
from rktnetes.config import Paths
from rktnetes.errors import NetworkError
from rktnetes.lazylog import getLogger
from rktnetes.pod import resources
from rktnetes.pod.manifest import NetworkRequest, PortForward

from . import cni, netns
from .config import NetworkConfig, get_networks
from .flags import check_net_requests
from .status import CNI, HOST, NONE, Attachment, NetworkStatus, save_status
from .sweep import sweep_rules

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds on every pod's start
    from typing import Any, Iterator


log = getLogger(__name__)

NET_DIR = "net"                     # inside the pod directory
PORT_CAPABILITY = "portMappings"
# Plugins create host-wide iptables chains on first use with check-then-create steps, so two
# first ADDs at once add the same jump rule twice. The first ADD of each kind of list (since
# boot: /run and the rules both vanish then) runs alone under this lock and leaves a marker;
# later ADDs, the chains now there, run concurrently.
CNI_LOCK = Path("/run/rktnetes/cni.lock")
CNI_WARM_DIR = Path("/run/rktnetes/cni-warm")


def setup_networks(paths: Paths, pod_dir: Path, uuid: str, requests: list[NetworkRequest],
                   ports: list[PortForward], *, netns_dir: Path = netns.NETNS_DIR
                   ) -> NetworkStatus:
    """Give the pod its networks; the returned status's `netns` is the path the pod's
    processes must join ("" for host networking). Raises NetworkError with nothing left set
    up (the journal then holds only undone entries)."""
    requests = check_net_requests(list(requests) or [NetworkRequest(NONE)])
    names = [r.name for r in requests]
    configs = preflight(paths, requests, ports)
    if names == [HOST]:
        st = NetworkStatus(HOST)
        save_status(pod_dir, st)
        return st
    dirs = cni.plugin_dirs()
    port_net = _port_network(configs, ports)

    ns_path = netns.netns_path(uuid, netns_dir)
    resources.record(pod_dir, "netns", path=str(ns_path))
    netns.create(ns_path)
    attached: list[tuple[NetworkConfig, Path]] = []
    try:
        # lo is brought up by netns.create, in the same child that made the namespace
        st = NetworkStatus(NONE if not configs else CNI, str(ns_path))
        for i, (cfg, req) in enumerate(zip(configs, requests)):
            ifname = f"eth{i}"
            caps = {PORT_CAPABILITY: port_mappings(ports)} if cfg is port_net else {}
            rt = cni.RuntimeConf(uuid, str(ns_path), ifname, dict(req.args), caps)
            conf_path = _save_attachment(pod_dir, cfg, rt)
            # relative: the pod directory moves between state directories by rename
            resources.record(pod_dir, "cni", network=cfg.name, ifname=ifname,
                             conf=str(conf_path.relative_to(pod_dir)))
            attached.append((cfg, conf_path))
            result_path = _result_path(conf_path)
            with _first_use_lock(cfg, rt):
                res = cni.add_list(cfg.name, cfg.cni_version, cfg.plugins, rt, dirs,
                                   on_result=lambda r, p=result_path:
                                   fsutil.atomic_write_json(p, r))
            st.networks.append(Attachment.from_result(cfg.name, ifname, res))
        save_status(pod_dir, st)
        return st
    except BaseException as e:
        # Undo in reverse: the failed attachment too (a plugin may have done half its work).
        errs: list[NetworkError] = []
        for cfg, conf_path in reversed(attached):
            errs += _del_attachment(conf_path, dirs)
        if not errs:
            netns.remove(ns_path)
        for err in errs:
            log.warning("cleanup after failed network setup: %s", err)
        if isinstance(e, NetworkError) and errs:
            raise NetworkError(f"{e} (and cleanup failed: {errs[0]})") from None
        raise


def preflight(paths: Paths, requests: list[NetworkRequest], ports: list[PortForward]
              ) -> list[NetworkConfig]:
    """Everything checkable before anything is created: the networks are defined and parse,
    their plugins are installed, ports can be forwarded on them and the host ports are free.
    Returns the networks' configurations (none for `host` / `none`). NetworkError."""
    requests = check_net_requests(list(requests) or [NetworkRequest(NONE)])
    names = [r.name for r in requests]
    if names == [HOST]:
        if ports:
            raise NetworkError("port forwards need a pod network; a --net=host pod already "
                               "listens on the host's ports")
        return []
    configs: list[NetworkConfig] = []
    if names != [NONE]:
        configs = get_networks(paths.net_d, names)
    dirs = cni.plugin_dirs()
    for cfg in configs:
        for ptype in cni.required_plugins(cfg.plugins):
            cni.find_plugin(ptype, dirs, cfg.name)
    _port_network(configs, ports)
    check_host_ports(ports)
    return configs


def teardown_networks(paths: Paths, pod_dir: Path, uuid: str, *, force: bool = False) -> None:
    """Undo `setup_networks` from the journal and saved configurations alone. Idempotent.
    A DEL that really fails is reported (NetworkError) and the netns kept, so a later
    attempt can finish; `force` removes the netns and forgets the attachment anyway."""
    entries = resources.load(pod_dir)
    dirs = cni.plugin_dirs()
    errs: list[NetworkError] = []
    seen: set[str] = set()
    for r in reversed([e for e in entries if e.kind == "cni"]):
        conf = r.data.get("conf", "")
        if not conf or conf in seen:
            continue
        seen.add(conf)
        errs += _del_attachment(_in_pod(pod_dir, conf), dirs, force=force)
    if errs and not force:
        more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        raise NetworkError(f"pod {uuid}: {errs[0]}{more}")
    for r in entries:
        if r.kind == "netns" and r.data.get("path"):
            netns.remove(Path(r.data["path"]))


def check_networks(paths: Paths, pod_dir: Path, uuid: str) -> None:
    """CNI CHECK of each live attachment: NetworkError when a plugin finds its part broken
    (a deleted veth, a flushed rule). Lists older than spec 0.4.0 have no CHECK: skipped."""
    dirs = cni.plugin_dirs()
    for r in resources.load(pod_dir):
        if r.kind != "cni":
            continue
        conf_path = _in_pod(pod_dir, r.data.get("conf", ""))
        try:
            doc = fsutil.read_json(conf_path)
            prev = fsutil.read_json(_result_path(conf_path))
        except (FileNotFoundError, ValueError):
            continue
        cfg = NetworkConfig.from_json(doc["network"])
        if tuple(int(x) for x in cfg.cni_version.split(".")) < (0, 4, 0):
            continue
        rt = cni.RuntimeConf(doc["containerId"], doc["netns"], doc["ifname"],
                             doc.get("args") or {}, doc.get("capabilityArgs") or {})
        cni.check_list(cfg.name, cfg.cni_version, cfg.plugins, rt, dirs, prev)


# -- attachments on disk --------------------------------------------------------------------


def _save_attachment(pod_dir: Path, cfg: NetworkConfig, rt: cni.RuntimeConf) -> Path:
    """The exact configuration an ADD runs with, so DEL can run with the same later."""
    path = pod_dir / NET_DIR / f"{rt.ifname}.json"
    fsutil.atomic_write_json(path, {
        "network": cfg.to_json(), "containerId": rt.container_id, "netns": rt.netns,
        "ifname": rt.ifname, "args": rt.args, "capabilityArgs": rt.capability_args})
    _result_path(path).unlink(missing_ok=True)   # a stale result from an earlier run
    return path


def _in_pod(pod_dir: Path, conf: str) -> Path:
    """A journal's conf path: relative to the pod dir; an absolute one that no longer exists
    (the pod moved) is looked up under the pod's net/ directory by name."""
    p = Path(conf)
    if not p.is_absolute():
        return pod_dir / p
    return p if p.exists() else pod_dir / NET_DIR / p.name


def _result_path(conf_path: Path) -> Path:
    return conf_path.with_name(conf_path.stem + ".result.json")


def _del_attachment(conf_path: Path, dirs: list[str], force: bool = False
                    ) -> list[NetworkError]:
    try:
        doc = fsutil.read_json(conf_path)
    except FileNotFoundError:
        return []                                # never added, or already deleted
    except ValueError:
        return [NetworkError(f"corrupt saved network config {conf_path}")]
    cfg = NetworkConfig.from_json(doc["network"])
    try:
        prev: dict[str, Any] | None = fsutil.read_json(_result_path(conf_path))
    except (FileNotFoundError, ValueError):
        prev = None
    ns = doc.get("netns", "")
    # A namespace that is gone (reboot) must not be named: plugins would fail to enter it.
    rt = cni.RuntimeConf(doc["containerId"], ns if ns and netns.is_netns(Path(ns)) else "",
                         doc["ifname"], doc.get("args") or {}, doc.get("capabilityArgs") or {})
    try:
        errs = cni.del_list(cfg.name, cfg.cni_version, cfg.plugins, rt, dirs, prev)
    except NetworkError as e:
        errs = [e]
    if not errs or force:
        sweep_rules(cfg.name, rt.container_id)
        _result_path(conf_path).unlink(missing_ok=True)
        conf_path.unlink(missing_ok=True)
    return errs


def teardown_attachment(pod_dir: Path, conf: str) -> None:
    """DEL one journaled attachment (`conf` as in its `cni` journal entry). Idempotent."""
    errs = _del_attachment(_in_pod(pod_dir, conf), cni.plugin_dirs())
    if errs:
        more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        raise NetworkError(f"{errs[0]}{more}")


@contextlib.contextmanager
def _first_use_lock(cfg: NetworkConfig, rt: cni.RuntimeConf) -> Iterator[None]:
    kind = "+".join(sorted({str(p.get("type")) for p in cfg.plugins}) +
                    sorted(k for k, v in rt.capability_args.items() if v))
    import hashlib

    marker = CNI_WARM_DIR / hashlib.sha256(kind.encode()).hexdigest()[:16]
    if marker.exists():
        yield
        return
    with fsutil.FileLock(CNI_LOCK).held():
        yield
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


# -- helpers --------------------------------------------------------------------------------


def _port_network(configs: list[NetworkConfig], ports: list[PortForward]
                  ) -> NetworkConfig | None:
    """Ports are forwarded on the first network whose plugins take portMappings."""
    if not ports:
        return None
    for cfg in configs:
        if cfg.has_capability(PORT_CAPABILITY):
            return cfg
    names = ",".join(c.name for c in configs) or "none"
    raise NetworkError(f"cannot forward ports: network {names!r} has no plugin with the "
                       f"{PORT_CAPABILITY!r} capability (portmap)")


def port_mappings(ports: list[PortForward]) -> list[dict[str, Any]]:
    """The portMappings capability argument, as the portmap plugin reads it."""
    out = []
    for p in ports:
        m: dict[str, Any] = {"hostPort": p.host_port, "containerPort": p.container_port,
                             "protocol": p.protocol}
        if p.host_ip:
            m["hostIP"] = p.host_ip
        out.append(m)
    return out


def check_host_ports(ports: list[PortForward]) -> None:
    """Fail before any ADD when a host port is taken: by a listening socket (try bind()), or by
    another pod's forward (a portmap DNAT rule, which holds no socket)."""
    if not ports:
        return
    import socket  # here: most pods forward no port, and it costs milliseconds to import

    for p in ports:
        fam = socket.AF_INET6 if ":" in p.host_ip else socket.AF_INET
        kind = socket.SOCK_DGRAM if p.protocol == "udp" else socket.SOCK_STREAM
        if p.protocol not in ("tcp", "udp"):
            continue
        with socket.socket(fam, kind) as s:
            if kind == socket.SOCK_STREAM:
                # allowed past TIME_WAIT leftovers, refused by a listener
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((p.host_ip or ("::" if fam == socket.AF_INET6 else "0.0.0.0"),
                        p.host_port))
            except OSError as e:
                why = "already in use" if e.errno == errno.EADDRINUSE else e.strerror
                where = f"{p.host_ip}:" if p.host_ip else ""
                raise NetworkError(f"host port {where}{p.host_port}/{p.protocol} for "
                                   f"--port {p.name}: {why}") from None
    if ports:
        taken = _forwarded_ports()
        for p in ports:
            if (p.protocol, p.host_port) in taken:
                raise NetworkError(f"host port {p.host_port}/{p.protocol} for --port {p.name}:"
                                   f" already forwarded to another pod")


_DNAT_RULE = re.compile(r"^-A CNI-HOSTPORT-DNAT .*-p (\w+) .*--dports ([\d,:]+)")


def _forwarded_ports() -> set[tuple[str, int]]:
    """(proto, port) of every portmap forward on this host, from its top-level DNAT chain."""
    try:
        import subprocess  # only for a pod that forwards ports

        p = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True)
    except OSError:
        return set()
    out: set[tuple[str, int]] = set()
    for line in p.stdout.splitlines():
        m = _DNAT_RULE.match(line)
        if m:
            for part in m.group(2).split(","):
                lo, _, hi = part.partition(":")
                out.update((m.group(1), n) for n in range(int(lo), int(hi or lo) + 1))
    return out
