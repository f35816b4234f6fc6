"""Pure parts of networking: --net/--port parsing, network config files, CNI plugin configs,
result parsing and the pod's resolv.conf/hosts."""

from __future__ import annotations

from pathlib import Path

import pytest

from rktnetes.errors import NetworkError, UsageError
from rktnetes.net import cni
from rktnetes.net.config import DEFAULT_BRIDGE, DEFAULT_SUBNET, get_networks, load_networks, \
    parse_network
from rktnetes.net.dns import parse_resolv_conf, pod_hosts, pod_resolv_conf
from rktnetes.net.flags import check_port_forwards, parse_net_flag, parse_net_flags, \
    parse_port_flag
from rktnetes.net.ports import port_mappings
from rktnetes.net.status import Attachment, NetworkStatus
from rktnetes.pod.manifest import NetworkRequest, PodManifest, PortForward

# -- --net ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value,expected", [
    ("default", [NetworkRequest("default")]),
    ("host", [NetworkRequest("host")]),
    ("none", [NetworkRequest("none")]),
    ("mynet", [NetworkRequest("mynet")]),
    ("mynet:IP=10.1.2.3", [NetworkRequest("mynet", {"IP": "10.1.2.3"})]),
    ("a:K=V;K2=V2,b", [NetworkRequest("a", {"K": "V", "K2": "V2"}), NetworkRequest("b")]),
    ("default,other:X=1", [NetworkRequest("default"), NetworkRequest("other", {"X": "1"})]),
    ("n:K=a=b", [NetworkRequest("n", {"K": "a=b"})]),
])
def test_parse_net_flag(value, expected):
    assert parse_net_flag(value) == expected


@pytest.mark.parametrize("value", [
    "", ",", "a,,b", "bad name", "-x", "a:K", "a:=v", "host,default", "none,a", "a,a",
    "host:K=V",
])
def test_parse_net_flag_rejects(value):
    with pytest.raises(UsageError) as e:
        parse_net_flag(value)
    assert "\n" not in str(e.value)


def test_parse_net_flags_defaults_and_joins():
    assert parse_net_flags([]) == [NetworkRequest("default")]
    assert [r.name for r in parse_net_flags(["a", "b:K=V"])] == ["a", "b"]
    with pytest.raises(UsageError):
        parse_net_flags(["a", "a"])


# -- --port ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value,exposed,expected", [
    ("80/tcp:8080", ["80/tcp"], PortForward("80/tcp", 80, "tcp", 8080, "")),
    ("53/udp:127.0.0.1:5353", [], PortForward("53/udp", 53, "udp", 5353, "127.0.0.1")),
    ("80:8080", [], PortForward("80", 80, "tcp", 8080, "")),
    ("http:8080", {"http": "80/tcp"}, PortForward("http", 80, "tcp", 8080, "")),
    ("80/TCP:[::1]:9000", [], PortForward("80/TCP", 80, "tcp", 9000, "::1")),
])
def test_parse_port_flag(value, exposed, expected):
    assert parse_port_flag(value, exposed) == expected


@pytest.mark.parametrize("value", [
    "8080", "http:8080", "80/tcp:", "80/tcp:0", "80/tcp:70000", "80/tcp:x", "80/icmp:1",
    "80/tcp:300.1.1.1:80", "80/tcp:[::1]80", "0/tcp:80", ":80",
])
def test_parse_port_flag_rejects(value):
    with pytest.raises(UsageError) as e:
        parse_port_flag(value, ["80/tcp"])
    assert "\n" not in str(e.value)


def test_port_forwards_must_not_collide():
    a = PortForward("80/tcp", 80, "tcp", 8080)
    b = PortForward("81/tcp", 81, "tcp", 8080, "127.0.0.1")
    c = PortForward("81/udp", 81, "udp", 8080)
    assert check_port_forwards([a, c]) == [a, c]
    with pytest.raises(UsageError):
        check_port_forwards([a, b])
    with pytest.raises(UsageError):
        check_port_forwards([b, a])


def test_port_mappings_capability_args():
    assert port_mappings([PortForward("80/tcp", 80, "tcp", 8080, "127.0.0.1")]) == [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}]


# -- network configs ------------------------------------------------------------------------


def test_builtin_default_network(tmp_path: Path):
    nets = load_networks(tmp_path / "missing")
    d = nets["default"]
    assert d.plugins[0]["bridge"] == DEFAULT_BRIDGE
    assert d.plugins[0]["ipam"]["ranges"] == [[{"subnet": DEFAULT_SUBNET}]]
    assert d.has_capability("portMappings")


def test_conf_and_conflist_files(tmp_path: Path):
    (tmp_path / "10-a.conflist").write_text(
        '{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"},{"type":"portmap"}]}')
    (tmp_path / "20-b.conf").write_text('{"cniVersion":"0.4.0","name":"b","type":"ptp",'
                                        '"ipam":{"type":"host-local"}}')
    (tmp_path / "30-default.conflist").write_text(
        '{"cniVersion":"1.0.0","name":"default","plugins":[{"type":"macvlan"}]}')
    (tmp_path / "README").write_text("not a config")
    nets = load_networks(tmp_path)
    assert [p["type"] for p in nets["a"].plugins] == ["bridge", "portmap"]
    assert nets["b"].plugins == [{"type": "ptp", "ipam": {"type": "host-local"}}]
    assert nets["b"].cni_version == "0.4.0"
    assert nets["default"].plugins == [{"type": "macvlan"}]   # a defined default wins
    assert [n.name for n in get_networks(tmp_path, ["b", "a"])] == ["b", "a"]


@pytest.mark.parametrize("name,text,why", [
    ("x.conflist", "{not json", "not JSON"),
    ("x.conflist", "[]", "not a JSON object"),
    ("x.conflist", '{"name":"x","plugins":[]}', "plugins"),
    ("x.conflist", '{"name":"x","plugins":[{"ipam":{}}]}', "no 'type'"),
    ("x.conflist", '{"plugins":[{"type":"bridge"}]}', "name"),
    ("x.conflist", '{"name":"host","plugins":[{"type":"bridge"}]}', "reserved"),
    ("x.conf", '{"name":"x","type":"bridge","cniVersion":"one"}', "cniVersion"),
    ("x.conf", '{"name":"x","type":"bridge","ipam":{}}', "ipam"),
])
def test_malformed_configs_name_the_file(name, text, why):
    with pytest.raises(NetworkError) as e:
        parse_network(text, f"/etc/net.d/{name}")
    msg = str(e.value)
    assert f"/etc/net.d/{name}" in msg and why in msg and "\n" not in msg


def test_unknown_and_duplicate_networks(tmp_path: Path):
    with pytest.raises(NetworkError, match="unknown network 'nope'"):
        get_networks(tmp_path, ["nope"])
    for f in ("a.conf", "b.conf"):
        (tmp_path / f).write_text('{"name":"dup","type":"bridge"}')
    with pytest.raises(NetworkError, match="defined twice"):
        load_networks(tmp_path)


# -- CNI mechanics --------------------------------------------------------------------------


def test_plugin_config_chains_and_injects_capabilities():
    plugin = {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
    conf = cni.plugin_config(plugin, "net", "1.0.0", {"cniVersion": "1.0.0", "ips": []},
                             {"portMappings": [{"hostPort": 1}], "bandwidth": {}})
    assert conf["name"] == "net" and conf["cniVersion"] == "1.0.0"
    assert conf["prevResult"] == {"cniVersion": "1.0.0", "ips": []}
    assert conf["runtimeConfig"] == {"portMappings": [{"hostPort": 1}]}
    plain = cni.plugin_config({"type": "bridge"}, "net", "1.0.0", None,
                              {"portMappings": [{"hostPort": 1}]})
    assert "runtimeConfig" not in plain and "prevResult" not in plain


def test_required_plugins_include_ipam():
    assert cni.required_plugins([{"type": "bridge", "ipam": {"type": "host-local"}},
                                 {"type": "portmap"}, {"type": "bridge"}]) == [
        "bridge", "host-local", "portmap"]


def test_parse_result_and_attachment():
    raw = {"cniVersion": "1.0.0",
           "interfaces": [{"name": "rkt0", "mac": "aa"}, {"name": "veth1", "mac": "bb"},
                          {"name": "eth0", "mac": "cc", "sandbox": "/run/x"}],
           "ips": [{"address": "10.0.0.5/24", "gateway": "10.0.0.1", "interface": 2}],
           "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.0.0.1"]}}
    res = cni.CNIResult.from_json(raw)
    assert res.ips[0].ip == "10.0.0.5" and res.routes[0].dst == "0.0.0.0/0"
    att = Attachment.from_result("n", "eth0", res)
    assert (att.ips, att.gateway, att.mac, att.ip) == (["10.0.0.5/24"], "10.0.0.1", "cc",
                                                       "10.0.0.5")
    legacy = cni.CNIResult.from_json({"cniVersion": "0.2.0", "ip4": {"ip": "10.1.0.2/16"}})
    assert legacy.ips[0].address == "10.1.0.2/16"
    st = NetworkStatus("cni", "/run/x", [att])
    assert NetworkStatus.from_json(st.to_json()) == st


def test_plugin_error_one_line_and_gone():
    e = cni.PluginError("n", "bridge", "DEL", 11, "link not found")
    assert e.gone and str(e) == "network 'n': CNI plugin 'bridge' DEL failed: link not found"
    assert not cni.PluginError("n", "bridge", "DEL", 11, "permission denied").gone
    code, msg = cni._error_of(b'{"code":7,"msg":"bad\\nthing","details":"d"}', b"", 1)
    assert (code, msg) == (7, "bad thing: d")
    assert cni._error_of(b"", b"panic:\n  trace", 2) == (0, "panic: trace")


def test_missing_plugin_is_clear(tmp_path: Path):
    with pytest.raises(NetworkError) as e:
        cni.find_plugin("nosuch", [str(tmp_path)], "mynet")
    assert str(e.value) == f"network 'mynet': CNI plugin 'nosuch' not found in {tmp_path}"


# -- resolv.conf and hosts ------------------------------------------------------------------

HOST_RESOLV = """# generated
nameserver 127.0.0.53
nameserver 192.0.2.53
nameserver ::1
search corp.example
options edns0 trust-ad
"""


def _manifest(**kw) -> PodManifest:
    return PodManifest(uuid="1234", apps=[], **kw)


def test_resolv_conf_drops_loopback_resolvers():
    st = NetworkStatus("cni", "/x", [Attachment("n", "eth0", ["10.0.0.2/24"])])
    rc = pod_resolv_conf(_manifest(), st, parse_resolv_conf(HOST_RESOLV))
    assert rc.render() == ("nameserver 192.0.2.53\nsearch corp.example\n"
                           "options edns0 trust-ad\n")
    host = pod_resolv_conf(_manifest(), NetworkStatus("host"), parse_resolv_conf(HOST_RESOLV))
    assert host.nameservers == ["127.0.0.53", "192.0.2.53", "::1"]


def test_resolv_conf_flags_and_cni_dns_win():
    att = Attachment("n", "eth0", ["10.0.0.2/24"])
    att.dns.nameservers, att.dns.search = ["10.0.0.1"], ["cluster.local"]
    st = NetworkStatus("cni", "/x", [att])
    host = parse_resolv_conf(HOST_RESOLV)
    rc = pod_resolv_conf(_manifest(), st, host)
    assert (rc.nameservers, rc.search) == (["10.0.0.1"], ["cluster.local"])
    rc = pod_resolv_conf(_manifest(dns=["8.8.8.8"], dns_search=["a.b"], dns_options=["ndots:2"]),
                         st, host)
    assert rc.render() == "nameserver 8.8.8.8\nsearch a.b\noptions ndots:2\n"
    only_loopback = parse_resolv_conf("nameserver 127.0.0.53\n")
    upstream = parse_resolv_conf("nameserver 192.0.2.1\n")
    rc = pod_resolv_conf(_manifest(), NetworkStatus("none", "/x"), only_loopback, upstream)
    assert rc.nameservers == ["192.0.2.1"]


def test_hosts_file():
    st = NetworkStatus("cni", "/x", [Attachment("n", "eth0", ["10.0.0.2/24"])])
    text = pod_hosts(_manifest(hostname="web.example", hosts_entries={"10.9.9.9": ["db", "db2"]}),
                     st)
    assert text.splitlines() == [
        "127.0.0.1\tlocalhost localhost.localdomain",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "10.0.0.2\tweb.example web",
        "10.9.9.9\tdb db2"]
    none = pod_hosts(_manifest(), NetworkStatus("none", "/x"))
    assert "127.0.1.1\trkt-1234" in none
    host = pod_hosts(_manifest(), NetworkStatus("host"), "127.0.0.1 localhost\n10.1.1.1 me\n")
    assert host.startswith("127.0.0.1 localhost\n10.1.1.1 me\n") and "rkt-1234" not in host
