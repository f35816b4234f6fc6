"""Executing CNI plugins, per the CNI spec: the one place a plugin binary is run.

A plugin is an executable named by the `type` of its configuration, found in the plugin
directories, run with CNI_COMMAND/CNI_CONTAINERID/CNI_NETNS/CNI_IFNAME/CNI_ARGS/CNI_PATH in its
environment and its configuration JSON on stdin; it answers a result (ADD) or nothing
(DEL/CHECK) on stdout, or an error object {code, msg, details} with a non-zero exit.

A network is a configuration *list*: ADD runs its plugins in order, each one getting the
previous one's result as `prevResult`; DEL runs them in reverse, each getting the cached ADD
result. Nothing here knows about pods; `attach.py` records what it does before calling in.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from rktnetes.errors import NetworkError

from .status import DNS

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds on every pod's start
    from typing import Any, Callable

DEFAULT_PLUGIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
# An override (colon-separated) searched before the defaults, as CNI_PATH is for other runtimes.
PLUGIN_DIRS_ENV = "RKTNETES_CNI_PATH"
PLUGIN_TIMEOUT = 60.0

ADD, DEL, CHECK, VERSION = "ADD", "DEL", "CHECK", "VERSION"

# CNI well-known error codes a DEL may answer when the thing is already gone.
_CODE_UNKNOWN_CONTAINER = 3
_GONE_WORDS = ("not found", "no such", "does not exist", "doesn't exist", "not exist")


# -- results --------------------------------------------------------------------------------


@dataclass
class Interface:
    """An interface a plugin reports (CNI result `interfaces`)."""
    name: str
    mac: str = ""
    sandbox: str = ""              # netns path for interfaces inside the pod, "" on the host


@dataclass
class IPConfig:
    """An address a plugin assigned (CNI result `ips`)."""
    address: str                   # CIDR, e.g. "10.88.0.2/24"
    gateway: str = ""
    interface: int | None = None   # index into CNIResult.interfaces

    @property
    def ip(self) -> str:
        return self.address.split("/", 1)[0]

    @property
    def version(self) -> int:
        return 6 if ":" in self.address else 4


@dataclass
class Route:
    """A route a plugin set up (CNI result `routes`)."""
    dst: str
    gw: str = ""


@dataclass
class CNIResult:
    """A plugin's result, as the CNI spec defines it."""
    cni_version: str = ""
    interfaces: list[Interface] = field(default_factory=list)
    ips: list[IPConfig] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dns: DNS = field(default_factory=DNS)
    raw: dict[str, Any] = field(default_factory=dict)   # as the last plugin answered it

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "CNIResult":
        """Parse a 0.3.x/0.4.0/1.0.0 result; 0.1/0.2 results (ip4/ip6 keys) are mapped too."""
        ifaces = [Interface(i.get("name", ""), i.get("mac", ""), i.get("sandbox", ""))
                  for i in d.get("interfaces") or []]
        ips: list[IPConfig] = []
        routes = [Route(r.get("dst", ""), r.get("gw", "")) for r in d.get("routes") or []]
        for ip in d.get("ips") or []:
            ips.append(IPConfig(ip.get("address", ""), ip.get("gateway", ""), ip.get("interface")))
        for legacy in ("ip4", "ip6"):          # spec 0.1.0/0.2.0
            if isinstance(d.get(legacy), dict):
                ips.append(IPConfig(d[legacy].get("ip", ""), d[legacy].get("gateway", "")))
                routes += [Route(r.get("dst", ""), r.get("gw", ""))
                           for r in d[legacy].get("routes") or []]
        return cls(d.get("cniVersion", ""), ifaces, ips, routes, DNS.from_json(d.get("dns")), d)

    def container_interface(self, ifname: str) -> Interface | None:
        return next((i for i in self.interfaces if i.name == ifname and i.sandbox), None)


# -- invocation -----------------------------------------------------------------------------


@dataclass
class RuntimeConf:
    """What the runtime tells the plugins about one attachment."""

    container_id: str
    netns: str                                 # path of the network namespace ("" if gone)
    ifname: str
    args: dict[str, str] = field(default_factory=dict)          # CNI_ARGS
    capability_args: dict[str, Any] = field(default_factory=dict)  # e.g. {"portMappings": [...]}


def plugin_dirs(extra: str | None = None) -> list[str]:
    env = extra if extra is not None else os.environ.get(PLUGIN_DIRS_ENV, "")
    dirs = [d for d in env.split(":") if d]
    return dirs + [d for d in DEFAULT_PLUGIN_DIRS if d not in dirs]


def find_plugin(plugin_type: str, dirs: list[str], network: str = "") -> Path:
    if not plugin_type or "/" in plugin_type:
        raise NetworkError(f"network {network!r}: invalid CNI plugin type {plugin_type!r}")
    for d in dirs:
        p = Path(d) / plugin_type
        if p.is_file() and os.access(p, os.X_OK):
            return p
    raise NetworkError(f"network {network!r}: CNI plugin {plugin_type!r} not found in "
                       f"{':'.join(dirs)}")


def required_plugins(plugins: list[dict[str, Any]]) -> list[str]:
    """Every binary a list needs, delegated IPAM plugins included, in order."""
    out: list[str] = []
    for p in plugins:
        for t in (p.get("type"), (p.get("ipam") or {}).get("type")):
            if t and t not in out:
                out.append(t)
    return out


def plugin_config(plugin: dict[str, Any], name: str, cni_version: str,
                  prev_result: dict | None, capability_args: dict[str, Any]) -> dict[str, Any]:
    """The JSON one plugin of a list gets on stdin (libcni's buildOneConfig + runtimeConfig)."""
    conf = dict(plugin)
    conf["name"] = name
    conf["cniVersion"] = cni_version
    if prev_result is not None:
        conf["prevResult"] = prev_result
    else:
        conf.pop("prevResult", None)
    caps = plugin.get("capabilities") or {}
    rc = {k: v for k, v in capability_args.items() if caps.get(k)}
    if rc:
        conf["runtimeConfig"] = {**(conf.get("runtimeConfig") or {}), **rc}
    return conf


def _cni_args(args: dict[str, str]) -> str:
    # Plugins refuse args they do not know unless told otherwise, and every plugin of a list
    # sees the same CNI_ARGS (as kubelet does, IgnoreUnknown=1 comes first).
    if not any(k.lower() == "ignoreunknown" for k in args):
        args = {"IgnoreUnknown": "1", **args}
    return ";".join(f"{k}={v}" for k, v in args.items())


def exec_plugin(command: str, conf: dict[str, Any], rt: RuntimeConf, dirs: list[str],
                network: str) -> dict[str, Any] | None:
    """Run one plugin; its parsed stdout (ADD/VERSION) or None; NetworkError on failure."""
    ptype = conf.get("type", "")
    binary = find_plugin(ptype, dirs, network)
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": rt.container_id,
        "CNI_NETNS": rt.netns,
        "CNI_IFNAME": rt.ifname,
        "CNI_PATH": ":".join(dirs),
    }
    if rt.args:
        env["CNI_ARGS"] = _cni_args(rt.args)
    import subprocess  # here: pods without CNI networks never load it

    try:
        p = subprocess.run([str(binary)], input=json.dumps(conf).encode(), env=env,
                           capture_output=True, timeout=PLUGIN_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise NetworkError(f"network {network!r}: CNI plugin {ptype!r} {command} timed out "
                           f"after {PLUGIN_TIMEOUT:.0f}s") from None
    except OSError as e:
        raise NetworkError(f"network {network!r}: cannot run CNI plugin {ptype!r}: "
                           f"{e.strerror}") from None
    out = p.stdout.strip()
    if p.returncode != 0:
        raise PluginError(network, ptype, command, *_error_of(out, p.stderr, p.returncode))
    if not out:
        return None
    try:
        return json.loads(out)
    except ValueError:
        text = _one_line(out.decode(errors="replace"))[:200]
        raise NetworkError(f"network {network!r}: CNI plugin {ptype!r} {command} printed "
                           f"invalid JSON: {text}") from None


class PluginError(NetworkError):
    """A plugin answered an error object (or died without one)."""

    def __init__(self, network: str, plugin: str, command: str, code: int, msg: str):
        self.network, self.plugin, self.command, self.code, self.msg = (
            network, plugin, command, code, msg)
        super().__init__(f"network {network!r}: CNI plugin {plugin!r} {command} failed: {msg}")

    @property
    def gone(self) -> bool:
        """The plugin complained that what it should delete is not there: nothing to undo."""
        low = self.msg.lower()
        return self.code == _CODE_UNKNOWN_CONTAINER or any(w in low for w in _GONE_WORDS)


def _error_of(stdout: bytes, stderr: bytes, rc: int) -> tuple[int, str]:
    try:
        err = json.loads(stdout)
        msg = err.get("msg") or "unknown error"
        if err.get("details"):
            msg += f": {err['details']}"
        return int(err.get("code") or 0), _one_line(msg)
    except (ValueError, AttributeError, TypeError):
        text = (stderr or stdout).decode(errors="replace").strip()
        return 0, _one_line(text or f"exit status {rc}")


def _one_line(s: str) -> str:
    return " ".join(s.split())


# -- lists ----------------------------------------------------------------------------------


def add_list(name: str, cni_version: str, plugins: list[dict[str, Any]], rt: RuntimeConf,
             dirs: list[str], on_result: Callable[[dict], None] | None = None) -> CNIResult:
    """ADD every plugin in order, chaining results. `on_result` sees each intermediate result
    (so the caller can persist it: a DEL after a crash then still knows what was added)."""
    prev: dict | None = None
    for plugin in plugins:
        conf = plugin_config(plugin, name, cni_version, prev, rt.capability_args)
        res = exec_plugin(ADD, conf, rt, dirs, name)
        if res is None:
            raise NetworkError(f"network {name!r}: CNI plugin {plugin.get('type')!r} ADD "
                               f"returned no result")
        prev = res
        if on_result:
            on_result(res)
    return CNIResult.from_json(prev or {})


def del_list(name: str, cni_version: str, plugins: list[dict[str, Any]], rt: RuntimeConf,
             dirs: list[str], prev_result: dict | None) -> list[NetworkError]:
    """DEL every plugin in reverse; keep going past failures (cleanup must do all it can).
    Returns the real failures; "already gone" answers are not failures."""
    errors: list[NetworkError] = []
    for plugin in reversed(plugins):
        conf = plugin_config(plugin, name, cni_version, prev_result, rt.capability_args)
        try:
            exec_plugin(DEL, conf, rt, dirs, name)
        except PluginError as e:
            if not e.gone:
                errors.append(e)
        except NetworkError as e:
            errors.append(e)
    return errors


def check_list(name: str, cni_version: str, plugins: list[dict[str, Any]], rt: RuntimeConf,
               dirs: list[str], prev_result: dict) -> None:
    """CHECK (spec >= 0.4.0): each plugin verifies its part of the attachment is still there."""
    for plugin in plugins:
        conf = plugin_config(plugin, name, cni_version, prev_result, rt.capability_args)
        exec_plugin(CHECK, conf, rt, dirs, name)


def plugin_versions(plugin_type: str, dirs: list[str], cni_version: str = "1.0.0") -> list[str]:
    """The spec versions a plugin supports (VERSION command)."""
    rt = RuntimeConf("", "", "")
    res = exec_plugin(VERSION, {"type": plugin_type, "cniVersion": cni_version}, rt, dirs, "")
    return list((res or {}).get("supportedVersions") or [])
