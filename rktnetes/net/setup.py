"""Setting up and tearing down a pod's networks: the API the rest of rktnetes calls.

Order of things, so that a `kill -9` at any point leaves only what the journal can undo:
  1. everything that can be checked is checked first (network names, plugin binaries, host
     ports), so bad input leaves nothing behind;
  2. the netns is recorded in the pod journal, then created and `lo` brought up;
  3. each CNI network is attached (`attach.py`: its configuration saved and journaled before
     ADD runs);
  4. the summary is saved as `networks.json`.
Teardown needs only the journal and the files attach.py saved: DEL each attachment in
reverse, then remove the netns. The CNI machinery (attach, cni, config, ports, sweep) is
loaded only for pods that use it: a `--net=none` pod's start does without it.
"""

from __future__ import annotations

from pathlib import Path

from rktnetes.config import Paths
from rktnetes.errors import NetworkError
from rktnetes.lazylog import getLogger
from rktnetes.pod import resources
from rktnetes.pod.manifest import NetworkRequest, PortForward

from . import netns
from .flags import check_net_requests
from .status import CNI, HOST, NONE, NetworkStatus, save_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .config import NetworkConfig


def setup_networks(paths: Paths, pod_dir: Path, uuid: str, requests: list[NetworkRequest],
                   ports: list[PortForward], *, netns_dir: Path = netns.NETNS_DIR
                   ) -> NetworkStatus:
    """Give the pod its networks; the returned status's `netns` is the path the pod's
    processes must join ("" for host networking). Raises NetworkError with nothing left set
    up (the journal then holds only undone entries)."""
    requests = check_net_requests(list(requests) or [NetworkRequest(NONE)])
    configs = preflight(paths, requests, ports)
    if [r.name for r in requests] == [HOST]:
        st = NetworkStatus(HOST)
        save_status(pod_dir, st)
        return st

    ns_path = netns.netns_path(uuid, netns_dir)
    resources.record(pod_dir, "netns", path=str(ns_path))
    netns.create(ns_path)      # and brings lo up, in the same child that made the namespace
    st = NetworkStatus(CNI if configs else NONE, str(ns_path))
    if configs:
        from .attach import attach_networks  # removes the netns itself if it fails

        st.networks = attach_networks(pod_dir, uuid, ns_path, configs, requests, ports)
    try:
        save_status(pod_dir, st)
    except BaseException:
        try:  # undo what was set up, as a failed ADD does; the journal still has it all
            teardown_networks(paths, pod_dir, uuid)
        except NetworkError as err:
            getLogger(__name__).warning("cleanup after failed network setup: %s", err)
        raise
    return st


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
        from .attach import load_networks

        configs = load_networks(paths, names)
    if ports:
        from .ports import check_host_ports, port_network

        port_network(configs, ports)
        check_host_ports(ports)
    return configs


def teardown_networks(paths: Paths, pod_dir: Path, uuid: str, *, force: bool = False) -> None:
    """Undo `setup_networks` from the journal and saved configurations alone. Idempotent.
    A DEL that really fails is reported (NetworkError) and the netns kept, so a later
    attempt can finish; `force` removes the netns and forgets the attachment anyway."""
    entries = resources.load(pod_dir)
    if any(e.kind == "cni" for e in entries):
        from .attach import detach_journaled

        errs = detach_journaled(pod_dir, entries, force=force)
        if errs and not force:
            more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
            raise NetworkError(f"pod {uuid}: {errs[0]}{more}")
    for r in entries:
        if r.kind == "netns" and r.data.get("path"):
            netns.remove(Path(r.data["path"]))
