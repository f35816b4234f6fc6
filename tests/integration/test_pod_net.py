"""Pods on networks, end to end through the real `rkt` CLI, runc and the real CNI plugins.

Test networks are defined in each test's own --config-dir (net.d) with their own bridges
(rktnp*), 10.88.211-213.x subnets and host-local state in the test's data dir, so nothing here
touches /etc/rktnetes or the built-in rkt0 network, except the one test of `default` itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from rktnetes.net.cni import DEFAULT_PLUGIN_DIRS

from .pod_helpers import (IMAGE, assert_nothing_left, pod_dir, run_detached, status, wait_for,
                          with_image)

pytestmark = [pytest.mark.root, pytest.mark.containers]

NETS = {"np1": ("rktnp1", "10.88.211.0/24"), "np2": ("rktnp2", "10.88.212.0/24"),
        "nptiny": ("rktnp3", "10.88.213.0/30")}
OUR_SUBNETS = "10.88.21"          # every address of the networks above starts so
NETNS_DIR = Path("/run/rktnetes/netns")
DEFAULT_IPAM = Path("/var/lib/cni/networks/default")


@pytest.fixture(scope="module", autouse=True)
def _bridges():
    yield
    for br, _ in NETS.values():    # bridges are host-wide; the bridge plugin never removes them
        subprocess.run(["ip", "link", "del", br], capture_output=True)


@pytest.fixture
def r(rkt):
    if not any(Path(d, "bridge").exists() for d in DEFAULT_PLUGIN_DIRS):
        pytest.skip("CNI plugins are not installed")
    for tool in ("ip", "iptables-save"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    r = with_image(rkt)
    yield r
    # whatever a test left running: stop and remove it, so one failure does not leak
    pods = json.loads(r("list", "--format", "json", check=False).stdout or "[]")
    running = [p["uuid"] for p in pods if p["state"] == "running"]
    if running:
        r("stop", "--force", *running, check=False, timeout=120)
    r("gc", "--grace-period=0", "--expire-prepared=0", check=False, timeout=120)


def define(r, name: str, *, plugins: list[dict] | None = None, raw: str | None = None,
           ext: str = "conflist") -> None:
    net_d = r.paths.net_d
    net_d.mkdir(parents=True, exist_ok=True)
    path = net_d / f"10-{name}.{ext}"
    if raw is not None:
        path.write_text(raw)
        return
    br, subnet = NETS.get(name, NETS["np1"])
    plugins = plugins or [
        {"type": "bridge", "bridge": br, "isGateway": True, "ipMasq": True, "hairpinMode": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                  "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(ipam_dir(r))}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "firewall"}]
    path.write_text(json.dumps({"cniVersion": "1.0.0", "name": name, "plugins": plugins}))


def ipam_dir(r) -> Path:
    return r.paths.data / "ipam"


def reservations(d: Path) -> set[str]:
    """The addresses host-local holds in `d` (one file per address)."""
    if not d.exists():
        return set()
    return {p.name for p in d.iterdir() if re.match(r"^[\d.]+$|^[0-9a-f:]+$", p.name)
            and p.name not in ("lock",)}


def sh(*script: str) -> list[str]:
    return ["--exec", "/bin/sh", "--", "-c", "; ".join(script), "---"]


def run_fg(r, *args: str, check: bool = True):
    return r("run", *args, check=check, timeout=120)


def net_of(r, uuid: str, name: str) -> dict:
    return next(n for n in status(r, uuid)["networks"] if n["name"] == name)


def veths_on(bridge: str) -> list[str]:
    p = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True,
                       text=True)
    return [line for line in p.stdout.splitlines() if line.strip()]


def our_rules(extra: tuple[str, ...] = ()) -> list[str]:
    """iptables-save lines (counters stripped) that mention our subnets or given ids."""
    out = []
    for table in ("filter", "nat", "mangle", "raw"):
        p = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True)
        for line in p.stdout.splitlines():
            if line.startswith("#"):
                continue
            line = re.sub(r"\[\d+:\d+\]", "", line)
            if OUR_SUBNETS in line or any(x in line for x in extra):
                out.append(f"{table}: {line}")
    return sorted(out)


def netns_of(uuid: str) -> bool:
    return (NETNS_DIR / uuid).exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HTTPD = sh("mkdir -p /www", "echo hello-from-$(hostname) > /www/index.html",
           "exec httpd -f -p 80 -h /www")


# -- the built-in default network -------------------------------------------------------------

def test_default_network(r):
    """No --net: the pod is on rkt0 (172.16.28.0/24), reaches the bridge, and its address is
    released when it is removed."""
    uuid = run_detached(r, IMAGE, *sh("sleep 300"))
    n = net_of(r, uuid, "default")
    assert n["ip"].startswith("172.16.28."), n
    assert f"default:ip4={n['ip']}" in r("status", uuid).stdout
    assert f"default:ip4={n['ip']}" in r("list", "--full").stdout
    assert n["ip"] in reservations(DEFAULT_IPAM)
    res = r("enter", uuid, "--", "/bin/sh", "-c",
            "ip -4 -o addr show eth0; ping -c1 -W3 172.16.28.1 >/dev/null && echo PING-OK")
    assert f"inet {n['ip']}/24" in res.stdout and "PING-OK" in res.stdout, res.stdout
    r("stop", uuid)
    r("rm", uuid)
    assert n["ip"] not in reservations(DEFAULT_IPAM)
    assert not netns_of(uuid)
    assert not our_rules((uuid,))
    assert_nothing_left(r, [uuid])


# -- pods on a test network -------------------------------------------------------------------

def test_two_pods_reach_each_other_and_the_host(r):
    define(r, "np1")
    a = run_detached(r, "--net=np1", "--hostname", "srv", IMAGE, *HTTPD)
    ip_a = net_of(r, a, "np1")["ip"]
    assert ip_a.startswith("10.88.211."), ip_a
    wait_for(lambda: r("enter", a, "--", "/bin/sh", "-c", "netstat -ltn | grep -q ':80 '",
                       check=False).returncode == 0, what="httpd listening")
    out = run_fg(r, "--net=np1", IMAGE, *sh(
        f"timeout 10 wget -q -O - http://{ip_a}/",
        "ping -c1 -W3 10.88.211.1 >/dev/null && echo PING-HOST-OK")).stdout
    assert "hello-from-srv" in out and "PING-HOST-OK" in out, out
    # and from the host to the pod
    with urllib.request.urlopen(f"http://{ip_a}/", timeout=10) as resp:
        assert b"hello-from-srv" in resp.read()
    r("stop", a)
    r("gc", "--grace-period=0")
    assert not reservations(ipam_dir(r) / "np1")
    assert not veths_on("rktnp1")
    assert_nothing_left(r, [a])


def test_host_network_sees_host_interfaces(r):
    before = set(os.listdir("/sys/class/net"))
    out = run_fg(r, "--net=host", IMAGE, *sh("cat /proc/net/dev")).stdout
    pod_ifs = {line.split(":")[0].strip() for line in out.splitlines() if ":" in line}
    # interfaces there all along (other tests' pods may add and remove veths meanwhile)
    stable = {i for i in before & set(os.listdir("/sys/class/net")) if not i.startswith("veth")}
    assert stable <= pod_ifs, (stable, pod_ifs)
    assert len(pod_ifs) > 1
    r("gc", "--grace-period=0")
    assert_nothing_left(r)


def test_none_network_has_only_lo(r):
    out = run_fg(r, "--net=none", IMAGE, *sh("cat /proc/net/dev")).stdout
    pod_ifs = {line.split(":")[0].strip() for line in out.splitlines() if ":" in line}
    assert pod_ifs == {"lo"}, out
    r("gc", "--grace-period=0")
    assert_nothing_left(r)


def test_two_networks_at_once(r):
    define(r, "np1")
    define(r, "np2")
    uuid = run_detached(r, "--net=np1,np2", IMAGE, *sh("sleep 300"))
    n1, n2 = net_of(r, uuid, "np1"), net_of(r, uuid, "np2")
    assert (n1["ifname"], n2["ifname"]) == ("eth0", "eth1")
    assert n1["ip"].startswith("10.88.211.") and n2["ip"].startswith("10.88.212.")
    text = r("status", uuid).stdout
    assert f"networks=np1:ip4={n1['ip']},np2:ip4={n2['ip']}" in text, text
    out = r("enter", uuid, "--", "/bin/sh", "-c", "ip -4 -o addr").stdout
    assert re.search(rf"eth0\s+inet {re.escape(n1['ip'])}/24", out), out
    assert re.search(rf"eth1\s+inet {re.escape(n2['ip'])}/24", out), out
    r("stop", uuid)
    r("rm", uuid)
    assert not reservations(ipam_dir(r) / "np1") and not reservations(ipam_dir(r) / "np2")
    assert not veths_on("rktnp1") and not veths_on("rktnp2")
    assert_nothing_left(r, [uuid])


def test_run_prepared_with_net(r):
    define(r, "np2")
    uuid = r("prepare", "--quiet", "--net=none", IMAGE, *sh("ip -4 -o addr")).stdout.split()[-1]
    out = r("run-prepared", "--net=np2", uuid, timeout=120).stdout
    assert "10.88.212." in out, out
    assert [n["name"] for n in status(r, uuid)["networks"]] == ["np2"]
    r("rm", uuid)
    assert not reservations(ipam_dir(r) / "np2")
    assert_nothing_left(r, [uuid])


def test_port_forward_from_localhost(r):
    define(r, "np1")
    port = free_port()
    uuid = run_detached(r, "--net=np1", f"--port=80/tcp:127.0.0.1:{port}", "--hostname", "fwd",
                        IMAGE, *HTTPD)
    body = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and b"hello-from-fwd" not in body:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as resp:
                body = resp.read()
        except OSError:
            time.sleep(0.2)
    assert b"hello-from-fwd" in body
    # the port is taken now: a second pod asking for it fails at once, leaving nothing
    before = set(os.listdir(r.paths.pods / "run"))
    res = r.fails("run", "--net=np1", f"--port=80/tcp:127.0.0.1:{port}", IMAGE, *sh("true"))
    assert len(res.stderr.strip().splitlines()) == 1 and str(port) in res.stderr, res.stderr
    assert set(os.listdir(r.paths.pods / "run")) == before
    r("stop", uuid)
    r("rm", uuid)
    assert not our_rules((uuid,)), our_rules((uuid,))
    assert not any(f"dport {port}" in line or f"dports {port}" in line
                   for line in subprocess.run(["iptables-save"], capture_output=True,
                                              text=True).stdout.splitlines())
    assert_nothing_left(r, [uuid])


def test_dns_hosts_hostname(r):
    out = run_fg(r, "--net=none", "--dns", "10.1.2.3", "--dns", "10.1.2.4", "--dns-search",
                 "ex.test", "--dns-opt", "ndots:3", "--hosts-entry", "10.9.8.7=db.ex.test",
                 "--hostname", "web1", IMAGE,
                 *sh("cat /etc/resolv.conf /etc/hosts", "echo HOST=$(hostname)")).stdout
    assert "nameserver 10.1.2.3\nnameserver 10.1.2.4\n" in out
    assert "search ex.test" in out and "options ndots:3" in out
    assert re.search(r"10\.9\.8\.7\s+db\.ex\.test", out) and "HOST=web1" in out, out
    r("gc", "--grace-period=0")
    assert_nothing_left(r)


def test_dns_defaults_on_a_network(r):
    define(r, "np1")
    out = run_fg(r, "--net=np1", "--hostname", "pod1", IMAGE,
                 *sh("cat /etc/resolv.conf /etc/hosts")).stdout
    assert not re.search(r"nameserver 127\.", out), out       # loopback resolvers dropped
    assert re.search(r"10\.88\.211\.\d+\s+pod1", out), out   # the pod's own address
    r("gc", "--grace-period=0")
    assert_nothing_left(r)


# -- nothing leaked ---------------------------------------------------------------------------

def test_fifty_pods_leave_nothing(r):
    define(r, "np1")
    uuid_file = r.paths.data / "uuid"

    def one() -> str:
        run_fg(r, "--net=np1", "--uuid-file-save", str(uuid_file), IMAGE, "--exec", "/bin/true")
        uuid = uuid_file.read_text().strip()
        r("rm", uuid)
        return uuid

    one()                                    # warm-up: the bridge and host-wide chains
    rules = our_rules()
    uuids = []
    start = time.monotonic()
    for _ in range(50):
        uuids.append(one())
    took = time.monotonic() - start
    assert took < 180, f"50 pods took {took:.0f}s"
    assert our_rules(tuple(uuids)) == rules
    assert not veths_on("rktnp1")
    assert not reservations(ipam_dir(r) / "np1")
    assert not [u for u in uuids if netns_of(u)]
    assert_nothing_left(r, uuids[-3:])


def test_kill_monitor_then_gc_releases_address(r):
    define(r, "np1")
    uuid = run_detached(r, "--net=np1", IMAGE, *sh("sleep 300"))
    ip = net_of(r, uuid, "np1")["ip"]
    assert ip in reservations(ipam_dir(r) / "np1")
    assert veths_on("rktnp1") and netns_of(uuid)
    mon = json.loads((pod_dir(r, uuid) / "state.json").read_text())["monitor_pid"]
    os.kill(mon, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{mon}").exists() or
             "Z" in Path(f"/proc/{mon}/stat").read_text().split(")")[1][:3], what="monitor dead")
    r("gc", "--grace-period=0", timeout=120)
    assert ip not in reservations(ipam_dir(r) / "np1")
    assert not veths_on("rktnp1")
    assert not netns_of(uuid)
    assert not our_rules((uuid,)), our_rules((uuid,))
    assert_nothing_left(r, [uuid])


# -- bad input --------------------------------------------------------------------------------

def _nothing_half_set_up(r) -> None:
    """No pod directory (so no journal, no netns named after a pod of ours), no veth on a
    test bridge, no address held. (Host-wide veth/netns counts are not compared: other
    tests' pods may come and go meanwhile.)"""
    pods = r.paths.pods
    assert not (pods.exists() and [p for p in pods.glob("*/*")]), list(pods.glob("*/*"))
    for br, _ in NETS.values():
        assert not veths_on(br)
    for name in NETS:
        assert not reservations(ipam_dir(r) / name)


def _one_line(res) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_unknown_network(r):
    line = _one_line(r.fails("run", "--net=nosuchnet", IMAGE, *sh("true")))
    assert "nosuchnet" in line
    _nothing_half_set_up(r)


def test_malformed_conflist(r):
    define(r, "broken", raw='{"cniVersion": "1.0.0", "name": "broken", "plugins": [')
    line = _one_line(r.fails("run", "--net=broken", IMAGE, *sh("true")))
    assert "10-broken.conflist" in line
    _nothing_half_set_up(r)


def test_missing_plugin(r):
    define(r, "np1", plugins=[{"type": "bridge", "bridge": "rktnp1", "ipam": {
        "type": "host-local", "subnet": "10.88.211.0/24", "dataDir": str(ipam_dir(r))}},
        {"type": "no-such-cni-plugin"}])
    line = _one_line(r.fails("run", "--net=np1", IMAGE, *sh("true")))
    assert "np1" in line and "no-such-cni-plugin" in line
    _nothing_half_set_up(r)


def test_port_already_bound(r):
    define(r, "np1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        line = _one_line(r.fails("run", "--net=np1", f"--port=80/tcp:127.0.0.1:{port}", IMAGE,
                                 *sh("true")))
    assert str(port) in line and "in use" in line
    _nothing_half_set_up(r)


def test_bad_flags(r):
    for args in (["--net=host", "--port=80/tcp:8080"], ["--net=host,none"], ["--dns=nope"],
                 ["--hosts-entry=nope"], ["--port=80/tcp:notaport"],
                 ["--stage1=fly", "--net=default"]):
        _one_line(r.fails("run", *args, IMAGE, *sh("true")))
    assert not (r.paths.pods.exists() and list(r.paths.pods.glob("*/*")))


def test_ipam_range_exhausted(r):
    """A /30 has room for one pod: the second fails at ADD, with a line naming the network and
    the plugin; its pod is recorded as failed to start and holds nothing."""
    define(r, "nptiny")
    first = run_detached(r, "--net=nptiny", IMAGE, *sh("sleep 300"))
    held = reservations(ipam_dir(r) / "nptiny")
    assert len(held) == 1
    assert len(veths_on("rktnp3")) == 1
    for detach in (["--detach"], []):
        res = r.fails("run", *detach, "--net=nptiny", "--uuid-file-save",
                      str(r.paths.data / "uuid2"), IMAGE, *sh("true"), timeout=120)
        line = _one_line(res)
        assert "nptiny" in line and "bridge" in line and "no IP addresses" in line, line
        second = (r.paths.data / "uuid2").read_text().strip()
        st = status(r, second)
        assert st["state"] == "exited" and st["apps"][0]["reason"] == "StartError", st
        assert not netns_of(second)
        assert reservations(ipam_dir(r) / "nptiny") == held
        assert len(veths_on("rktnp3")) == 1
        r("rm", second)
    r("stop", first)
    r("rm", first)
    assert not reservations(ipam_dir(r) / "nptiny")
    assert_nothing_left(r, [first])
