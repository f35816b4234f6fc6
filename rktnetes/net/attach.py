"""A pod's CNI attachments: ADD each network with the exact configuration saved first in the
pod directory, so that DEL and CHECK can later run from that directory alone.

Per network: the configuration is saved in `net/<ifname>.json`, a `cni` journal entry
recorded, then ADD runs; each plugin's result is saved as it comes (`net/<ifname>.result.json`),
because DEL needs it (`firewall` removes its rules by the IPs of the result). A successful DEL
removes the attachment's files, so a repeated teardown does not DEL again (an address released
by the first DEL may already belong to another pod). Only pods on CNI networks load this.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from rktnetes import fsutil
from rktnetes.config import Paths
from rktnetes.errors import NetworkError
from rktnetes.host.namespaces import has_interface
from rktnetes.lazylog import getLogger
from rktnetes.pod import resources
from rktnetes.pod.manifest import NetworkRequest, PortForward

from . import cni, netns
from .config import NetworkConfig, get_networks
from .ports import PORT_CAPABILITY, port_mappings, port_network
from .status import Attachment
from .sweep import sweep_rules

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds on every pod's start
    from typing import Any, Iterator

log = getLogger(__name__)

NET_DIR = "net"                     # inside the pod directory
# Plugins create host-wide iptables chains on first use with check-then-create steps, so two
# first ADDs at once add the same jump rule twice. The first ADD of each kind of list (since
# boot: /run and the rules both vanish then) runs alone under this lock and leaves a marker;
# later ADDs, the chains now there, run concurrently.
CNI_LOCK = Path("/run/rktnetes/cni.lock")
CNI_WARM_DIR = Path("/run/rktnetes/cni-warm")


def load_networks(paths: Paths, names: list[str]) -> list[NetworkConfig]:
    """The named networks' configurations, each checked to parse and to have its plugins
    installed. NetworkError."""
    configs = get_networks(paths.net_d, names)
    dirs = cni.plugin_dirs()
    for cfg in configs:
        for ptype in cni.required_plugins(cfg.plugins):
            cni.find_plugin(ptype, dirs, cfg.name)
    return configs


def attach_networks(pod_dir: Path, uuid: str, ns_path: Path, configs: list[NetworkConfig],
                    requests: list[NetworkRequest], ports: list[PortForward]
                    ) -> list[Attachment]:
    """ADD the pod's netns `ns_path` to each network, as eth0, eth1, ... On failure every
    attachment made is DELeted and the netns removed (kept if a DEL failed), then it raises."""
    attached: list[Path] = []
    out: list[Attachment] = []
    dirs = cni.plugin_dirs()
    try:
        port_net = port_network(configs, ports)   # (preflight checked it can be found)
        for i, (cfg, req) in enumerate(zip(configs, requests)):
            ifname = f"eth{i}"
            caps = {PORT_CAPABILITY: port_mappings(ports)} if cfg is port_net else {}
            rt = cni.RuntimeConf(uuid, str(ns_path), ifname, dict(req.args), caps)
            conf_path = _save_attachment(pod_dir, cfg, rt)
            # relative: the pod directory moves between state directories by rename
            resources.record(pod_dir, "cni", owner="rktnetes.net.cleanup",
                             network=cfg.name, ifname=ifname,
                             conf=str(conf_path.relative_to(pod_dir)))
            attached.append(conf_path)
            result_path = _result_path(conf_path)
            with _first_use_lock(cfg, rt):
                res = cni.add_list(cfg.name, cfg.cni_version, cfg.plugins, rt, dirs,
                                   on_result=lambda r, p=result_path:
                                   fsutil.atomic_write_json(p, r))
            out.append(Attachment.from_result(cfg.name, ifname, res))
        return out
    except BaseException as e:
        # Undo in reverse: the failed attachment too (a plugin may have done half its work).
        errs: list[NetworkError] = []
        for conf_path in reversed(attached):
            errs += _del_attachment(conf_path, dirs)
        if not errs:
            netns.remove(ns_path)
        for err in errs:
            log.warning("cleanup after failed network setup: %s", err)
        if isinstance(e, NetworkError) and errs:
            raise NetworkError(f"{e} (and cleanup failed: {errs[0]})") from None
        raise


def detach_journaled(pod_dir: Path, entries: list[resources.Resource], force: bool = False
                     ) -> list[NetworkError]:
    """DEL the journal's `cni` attachments, newest first; the errors of those that failed."""
    dirs = cni.plugin_dirs()
    errs: list[NetworkError] = []
    seen: set[str] = set()
    for r in reversed([e for e in entries if e.kind == "cni"]):
        conf = r.data.get("conf", "")
        if not conf or conf in seen:
            continue
        seen.add(conf)
        errs += _del_attachment(_in_pod(pod_dir, conf), dirs, force=force)
    return errs


def teardown_attachment(pod_dir: Path, conf: str) -> None:
    """DEL one journaled attachment (`conf` as in its `cni` journal entry). Idempotent."""
    errs = _del_attachment(_in_pod(pod_dir, conf), cni.plugin_dirs())
    if errs:
        more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        raise NetworkError(f"{errs[0]}{more}")


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
    # A plugin's DEL may miss what it finds only on the pod's interface (bridge 1.1.1's
    # un-masquerade): the sweep, three iptables-saves, is for when that interface is gone.
    intact = bool(rt.netns) and has_interface(rt.netns, rt.ifname)
    try:
        errs = cni.del_list(cfg.name, cfg.cni_version, cfg.plugins, rt, dirs, prev)
    except NetworkError as e:
        errs = [e]
    if errs and force or not errs and not intact:
        sweep_rules(cfg.name, rt.container_id)
    if not errs or force:
        _result_path(conf_path).unlink(missing_ok=True)
        conf_path.unlink(missing_ok=True)
    return errs


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
