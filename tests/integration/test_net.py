"""Pod networking with the real CNI plugins and real network namespaces.

No stage1 here: each "pod" is a network namespace from `setup_networks`, with busybox httpd and
wget run inside it through nsenter. Test networks use their own bridges (rktnt*) and subnets
(10.88.201-203.x), IPAM state in the test's data dir, and a private --config-dir, so nothing
touches /etc/rktnetes or the built-in rkt0 network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid as uuidlib
from pathlib import Path

import pytest

from rktnetes.config import Paths
from rktnetes.errors import NetworkError
from rktnetes.net import check_networks, netns, parse_net_flag, parse_port_flag, \
    setup_networks, status_entries, teardown_networks
from rktnetes.net.cni import DEFAULT_PLUGIN_DIRS, plugin_versions
from rktnetes.net.status import NetworkStatus, load_status
from rktnetes.pod import resources

pytestmark = [pytest.mark.root, pytest.mark.containers]

BUSYBOX = "/bin/busybox"
BRIDGES = {"t1": ("rktnt1", "10.88.201.0/24"), "t2": ("rktnt2", "10.88.202.0/24"),
           "tiny": ("rktnt3", "10.88.203.0/30")}


def _need_tools():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not any(Path(d, "bridge").exists() for d in DEFAULT_PLUGIN_DIRS):
        pytest.skip("CNI plugins are not installed")
    for tool in ("unshare", "nsenter", "ip", "iptables-save"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    if not Path(BUSYBOX).exists():
        pytest.skip("busybox is not installed")


@pytest.fixture(scope="module", autouse=True)
def _bridges():
    _need_tools()
    yield
    for br, _ in BRIDGES.values():    # bridges are host-wide; the plugin never removes them
        subprocess.run(["ip", "link", "del", br], capture_output=True)


def conflist(name: str, data: Path, *, plugins: list[dict] | None = None, portmap=True,
             firewall=True) -> dict:
    br, subnet = BRIDGES.get(name, BRIDGES["t1"])
    plugins = plugins or [
        {"type": "bridge", "bridge": br, "isGateway": True, "ipMasq": True, "hairpinMode": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                  "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(data / "ipam")}}]
    if portmap:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
    if firewall:
        plugins.append({"type": "firewall"})
    return {"cniVersion": "1.0.0", "name": name, "plugins": plugins}


class Pods:
    """Pods as bare network namespaces; everything is torn down at the end of the test."""

    def __init__(self, tmp: Path):
        self.paths = Paths(tmp / "data", tmp / "config")
        self.paths.net_d.mkdir(parents=True)
        self.root = tmp / "pods"
        self.made: list[tuple[Path, str]] = []
        self.procs: list[subprocess.Popen] = []

    def define(self, name: str, **kw) -> None:
        doc = conflist(name, self.paths.data, **kw)
        (self.paths.net_d / f"10-{name}.conflist").write_text(json.dumps(doc))

    def new(self) -> tuple[Path, str]:
        uuid = str(uuidlib.uuid4())
        pod_dir = self.root / uuid
        pod_dir.mkdir(parents=True)
        self.made.append((pod_dir, uuid))
        return pod_dir, uuid

    def setup(self, net: str = "t1", ports: tuple[str, ...] = ()
              ) -> tuple[Path, str, NetworkStatus]:
        pod_dir, uuid = self.new()
        st = setup_networks(self.paths, pod_dir, uuid, parse_net_flag(net),
                            [parse_port_flag(p, ["80/tcp"]) for p in ports])
        return pod_dir, uuid, st

    def teardown(self, pod_dir: Path, uuid: str) -> None:
        teardown_networks(self.paths, pod_dir, uuid)

    def httpd(self, st: NetworkStatus, body: str = "hello") -> None:
        www = self.root / f"www-{len(self.procs)}"
        www.mkdir()
        (www / "index.html").write_text(body)
        p = subprocess.Popen(["nsenter", f"--net={st.netns}", BUSYBOX, "httpd", "-f", "-p", "80",
                              "-h", str(www)])
        self.procs.append(p)
        deadline = time.time() + 5
        while wget(st.netns, "http://127.0.0.1/") != body and time.time() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        for pod_dir, uuid in reversed(self.made):
            teardown_networks(self.paths, pod_dir, uuid, force=True)


@pytest.fixture
def pods(tmp_path: Path):
    p = Pods(tmp_path)
    p.define("t1")
    yield p
    p.close()


def wget(ns: str | None, url: str) -> str:
    """busybox wget from inside a netns (or the host); its -T flag crashes, so `timeout`."""
    argv = ["timeout", "5", BUSYBOX, "wget", "-qO-", url]
    if ns:
        argv = ["nsenter", f"--net={ns}", *argv]
    p = subprocess.run(argv, capture_output=True, text=True)
    return p.stdout if p.returncode == 0 else f"<failed: {p.returncode} {p.stderr.strip()}>"


def in_ns(ns: str, *argv: str) -> str:
    return subprocess.run(["nsenter", f"--net={ns}", *argv], capture_output=True, text=True,
                          check=True).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


# -- what is on the host, to show nothing leaked -------------------------------------------

_COUNTERS = re.compile(r"\[\d+:\d+\]")


def iptables_rules() -> list[str]:
    out = []
    for table in ("filter", "nat", "mangle"):
        text = subprocess.run(["iptables-save", "-t", table], capture_output=True,
                              text=True).stdout
        out += [_COUNTERS.sub("", line) for line in text.splitlines()
                if line and not line.startswith("#")]
    return sorted(out)


def veths() -> set[str]:
    """Host ends of veths on this module's bridges (rktnt*), not other pods' on rkt0."""
    text = subprocess.run(["ip", "-o", "link", "show", "type", "veth"], capture_output=True,
                          text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in text.splitlines()
            if " master rktnt" in line}


def ipam_reservations(data: Path) -> set[str]:
    """host-local's files naming reserved addresses (lock and last_reserved_ip aside)."""
    root = data / "ipam"
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and p.name != "lock" and not p.name.startswith("last_reserved_ip")
            } if root.exists() else set()


_RULE_ID = re.compile(r'id: \\?"([0-9a-f-]{36})\\?"')
_POD_CHAIN = re.compile(r"\bCNI-(?:DN-)?[0-9a-f]{20,}\b")


def ours_only(rules: list[str], uuids: set[str]) -> list[str]:
    """Rules minus those of pods other processes run meanwhile on this host (another test
    run, a benchmark): a rule naming a foreign pod id, or a per-pod chain such a rule uses."""
    foreign_chains = set()
    for line in rules:
        m = _RULE_ID.search(line)
        if m and m.group(1) not in uuids:
            foreign_chains.update(_POD_CHAIN.findall(line))
    return [line for line in rules
            if not ((m := _RULE_ID.search(line)) and m.group(1) not in uuids)
            and not foreign_chains & set(_POD_CHAIN.findall(line))
            and "172.16.28." not in line]


def host_snapshot(pods: Pods) -> dict:
    """What this test's pods could leave on the host: rules, veths on the test bridges,
    IPAM files, and network namespaces of the pods it made."""
    ours = {uuid for _, uuid in pods.made}
    return {"iptables": ours_only(iptables_rules(), ours), "veths": veths(),
            "ipam": ipam_reservations(pods.paths.data),
            "netns": sorted(set(os.listdir(netns.NETNS_DIR)) & ours)
            if netns.NETNS_DIR.exists() else []}


def warm_up(pods: Pods, net: str = "t1") -> None:
    """One pod with a port forward made and removed, so that the host-wide chains the plugins
    create once and never delete (CNI-HOSTPORT-*, CNI-FORWARD) exist before a snapshot."""
    pod_dir, uuid, _ = pods.setup(net, ports=(f"80/tcp:{free_port()}",))
    pods.teardown(pod_dir, uuid)


# -- the tests ------------------------------------------------------------------------------


def test_plugins_answer_version():
    assert "1.0.0" in plugin_versions("bridge", list(DEFAULT_PLUGIN_DIRS))


def test_two_pods_reach_each_other_and_the_bridge(pods: Pods):
    pods.define("default", plugins=conflist("t1", pods.paths.data)["plugins"][:1])
    a_dir, a_uuid, a = pods.setup("default")
    _, _, b = pods.setup("default")
    assert a.mode == "cni" and Path(a.netns).parent == netns.NETNS_DIR
    assert [n.network for n in a.networks] == ["default"]
    assert a.networks[0].ip.startswith("10.88.201.") and a.networks[0].gateway == "10.88.201.1"
    assert a.networks[0].ip != b.networks[0].ip and a.networks[0].mac
    assert load_status(a_dir) == a
    check_networks(pods.paths, a_dir, a_uuid)          # CNI CHECK: all there
    # a changed MAC (deleting eth0 would make bridge 1.1.1's DEL skip its ipMasq rule)
    subprocess.run(["nsenter", f"--net={a.netns}", "ip", "link", "set", "eth0", "address",
                    "02:00:00:00:00:42"], check=True)
    with pytest.raises(NetworkError, match="network 'default'.*CHECK failed"):
        check_networks(pods.paths, a_dir, a_uuid)
    pods.teardown(a_dir, a_uuid)
    a_dir, a_uuid, a = pods.setup("default")
    pods.httpd(a, "from a")
    assert wget(b.netns, f"http://{a.networks[0].ip}/") == "from a"
    assert wget(None, f"http://{a.networks[0].ip}/") == "from a"          # host -> pod
    ping = subprocess.run(["nsenter", f"--net={b.netns}", BUSYBOX, "ping", "-c1", "-W2",
                           a.networks[0].gateway], capture_output=True)
    assert ping.returncode == 0, ping.stdout


def test_vanished_interface_leaves_no_masquerade_rule(pods: Pods):
    """bridge 1.1.1's DEL un-masquerades only addresses it finds on the pod's interface; the
    sweep removes the rules tagged with the pod's ID that it left."""
    warm_up(pods)
    before = host_snapshot(pods)
    pod_dir, uuid, st = pods.setup("t1")
    subprocess.run(["nsenter", f"--net={st.netns}", "ip", "link", "del", "eth0"], check=True)
    pods.teardown(pod_dir, uuid)
    assert host_snapshot(pods) == before


def test_none_has_only_loopback(pods: Pods):
    pod_dir, uuid, st = pods.setup("none")
    assert st.mode == "none" and st.networks == []
    links = in_ns(st.netns, "ip", "-o", "link").splitlines()
    assert len(links) == 1 and ": lo:" in links[0] and "UP" in links[0]
    assert "127.0.0.1" in in_ns(st.netns, "ip", "-o", "addr")
    pods.teardown(pod_dir, uuid)
    assert not Path(st.netns).exists()


def test_host_network_creates_nothing(pods: Pods):
    pod_dir, uuid, st = pods.setup("host")
    assert (st.mode, st.netns, st.networks) == ("host", "", [])
    assert resources.load(pod_dir) == []
    with pytest.raises(NetworkError, match="pod network"):
        pods.setup("host", ports=("80/tcp:8080",))


def test_second_network_with_its_own_subnet_and_cni_args(pods: Pods):
    pods.define("t2")
    pod_dir, uuid, st = pods.setup("t1,t2:IP=10.88.202.77")
    assert [(n.network, n.ifname) for n in st.networks] == [("t1", "eth0"), ("t2", "eth1")]
    assert st.networks[0].ip.startswith("10.88.201.")
    assert st.networks[1].ips == ["10.88.202.77/24"]
    addrs = in_ns(st.netns, "ip", "-o", "-4", "addr")
    assert re.search(r"eth0\s+inet 10\.88\.201\.", addrs)
    assert re.search(r"eth1\s+inet 10\.88\.202\.77/24", addrs)
    other_dir, _, other = pods.setup("t2")
    pods.httpd(st, "two nets")
    assert wget(other.netns, "http://10.88.202.77/") == "two nets"
    pods.teardown(pod_dir, uuid)
    assert ipam_reservations(pods.paths.data) == {f"t2/{other.networks[0].ip}"}


def test_port_forward_from_host_localhost_and_other_pods(pods: Pods):
    port = free_port()
    _, _, web = pods.setup("t1", ports=(f"80/tcp:{port}",))
    _, _, client = pods.setup("t1")
    pods.httpd(web, "forwarded")
    assert wget(None, f"http://127.0.0.1:{port}/") == "forwarded"
    gw = web.networks[0].gateway
    assert wget(None, f"http://{gw}:{port}/") == "forwarded"
    assert wget(client.netns, f"http://{gw}:{port}/") == "forwarded"      # pod -> host port
    assert wget(web.netns, f"http://{gw}:{port}/") == "forwarded"         # hairpin
    # the same host port for a second pod: refused before anything is set up
    with pytest.raises(NetworkError, match=f"{port}/tcp.*already forwarded"):
        pods.setup("t1", ports=(f"80/tcp:{port}",))


def test_fifty_pods_leave_nothing_behind(pods: Pods):
    warm_up(pods)
    before = host_snapshot(pods)
    port = free_port()
    for _ in range(50):
        pod_dir, uuid, st = pods.setup("t1", ports=(f"80/tcp:{port}",))
        assert st.networks[0].ip
        pods.teardown(pod_dir, uuid)
        pods.teardown(pod_dir, uuid)        # idempotent
    assert host_snapshot(pods) == before


HANG_PLUGIN = """#!/bin/sh
# A CNI plugin that hangs on ADD, so a test can kill setup in the middle of a chain.
case "$CNI_COMMAND" in
  ADD) touch "$0.started"; exec sleep 600 ;;
  VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}' ;;
  *) cat >/dev/null ;;
esac
"""

SETUP_CHILD = """
import sys
from pathlib import Path
from rktnetes.config import Paths
from rktnetes.net import parse_net_flag, setup_networks
data, config, pod_dir, uuid, net = sys.argv[1:]
setup_networks(Paths(Path(data), Path(config)), Path(pod_dir), uuid, parse_net_flag(net), [])
"""


def _run_setup_child(pods: Pods, pod_dir: Path, uuid: str, net: str, env: dict | None = None
                     ) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", SETUP_CHILD, str(pods.paths.data), str(pods.paths.config),
         str(pod_dir), uuid, net], env={**os.environ, **(env or {})}, start_new_session=True,
        cwd=Path(__file__).parents[2])


def test_journal_cleanup_hook(pods: Pods):
    """pod/cleanup.py DELs each `cni` entry through net.cleanup.undo, then unmounts the netns."""
    from rktnetes.net import cleanup
    from rktnetes.pod.store import Pod

    pods.define("t2")
    warm_up(pods)
    before = host_snapshot(pods)
    pod_dir, uuid, st = pods.setup("t1,t2", ports=(f"80/tcp:{free_port()}",))
    assert status_entries(st)[1]["name"] == "t2" and status_entries(st)[1]["ip"]
    pod = Pod(pod_dir.parent.parent, uuid, pod_dir.parent.name)     # <root>/<state>/<uuid>
    assert pod.path == pod_dir
    for res in resources.load(pod_dir):
        if res.kind == "cni":
            cleanup.undo(pods.paths, pod, res)
            cleanup.undo(pods.paths, pod, res)              # idempotent
    for res in resources.load(pod_dir):
        if res.kind == "netns":
            netns.remove(Path(res.data["path"]))
    assert host_snapshot(pods) == before


def test_teardown_after_the_process_is_gone_releases_the_address(pods: Pods):
    warm_up(pods)
    before = host_snapshot(pods)
    pod_dir, uuid = pods.new()
    assert _run_setup_child(pods, pod_dir, uuid, "t1").wait() == 0   # exits, pod left set up
    assert len(ipam_reservations(pods.paths.data)) == 1
    moved = pods.root / "exited-garbage" / uuid          # as stage0 moves a pod between states
    moved.parent.mkdir()
    pod_dir.rename(moved)
    pods.teardown(moved, uuid)
    assert host_snapshot(pods) == before


def test_kill_9_in_the_middle_of_add_then_teardown(pods: Pods, tmp_path: Path):
    plugdir = tmp_path / "plugins"
    plugdir.mkdir()
    (plugdir / "hang").write_text(HANG_PLUGIN)
    (plugdir / "hang").chmod(0o755)
    warm_up(pods)
    before = host_snapshot(pods)
    plugins = conflist("t1", pods.paths.data, portmap=False)["plugins"] + [{"type": "hang"}]
    pods.define("hung", plugins=plugins, portmap=False, firewall=False)
    pod_dir, uuid = pods.new()
    child = _run_setup_child(pods, pod_dir, uuid, "hung",
                             env={"RKTNETES_CNI_PATH": str(plugdir)})
    deadline = time.time() + 20
    while not (plugdir / "hang.started").exists():
        assert child.poll() is None and time.time() < deadline, "setup never reached the plugin"
        time.sleep(0.02)
    os.killpg(child.pid, signal.SIGKILL)        # rkt and the plugin it runs, mid-ADD
    child.wait()
    assert len(ipam_reservations(pods.paths.data)) == 1
    assert iptables_rules() != before["iptables"]  # bridge ipMasq + firewall rules are there
    os.environ["RKTNETES_CNI_PATH"] = str(plugdir)
    try:
        pods.teardown(pod_dir, uuid)
    finally:
        del os.environ["RKTNETES_CNI_PATH"]
    assert host_snapshot(pods) == before


# -- bad input: one line naming network and plugin, nothing half set up ----------------------


def _fails_cleanly(pods: Pods, net: str, ports: tuple[str, ...] = ()) -> str:
    before = host_snapshot(pods)
    pod_dir, uuid = pods.new()
    with pytest.raises(NetworkError) as e:
        setup_networks(pods.paths, pod_dir, uuid, parse_net_flag(net),
                       [parse_port_flag(p, ["80/tcp"]) for p in ports])
    msg = str(e.value)
    assert "\n" not in msg and msg
    assert host_snapshot(pods) == before
    assert not netns.netns_path(uuid).exists()
    teardown_networks(pods.paths, pod_dir, uuid)   # and cleanup after it is harmless
    return msg


def test_unknown_network(pods: Pods):
    msg = _fails_cleanly(pods, "nosuchnet")
    assert "unknown network 'nosuchnet'" in msg


def test_malformed_conflist(pods: Pods):
    bad = pods.paths.net_d / "20-broken.conflist"
    bad.write_text('{"name": "broken", "plugins": [')
    msg = _fails_cleanly(pods, "t1")
    assert str(bad) in msg and "invalid network config" in msg


def test_missing_plugin_binary(pods: Pods):
    pods.define("ghost", plugins=[{"type": "bridge", "bridge": "rktnt1",
                                   "ipam": {"type": "no-such-ipam"}}], portmap=False,
                firewall=False)
    msg = _fails_cleanly(pods, "ghost")
    assert "network 'ghost'" in msg and "'no-such-ipam' not found" in msg


def test_port_already_bound(pods: Pods):
    warm_up(pods)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        msg = _fails_cleanly(pods, "t1", ports=(f"80/tcp:{port}",))
    assert f"{port}/tcp" in msg and "already in use" in msg


def test_exhausted_ipam_range(pods: Pods):
    pods.define("tiny")                          # a /30: one address besides the gateway
    warm_up(pods, "tiny")
    _, _, first = pods.setup("tiny")
    assert first.networks[0].ip == "10.88.203.2"
    msg = _fails_cleanly(pods, "tiny")
    assert "network 'tiny'" in msg and "'bridge'" in msg and "no IP addresses" in msg


def test_failed_second_network_undoes_the_first(pods: Pods):
    """An ADD failing on eth1 is followed by DEL of eth1 and eth0, and the netns is removed."""
    pods.define("tiny")
    warm_up(pods, "tiny")
    pods.setup("tiny")                           # the one address is taken
    msg = _fails_cleanly(pods, "t1,tiny")
    assert "network 'tiny'" in msg
