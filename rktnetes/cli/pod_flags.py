"""A pod's flags (`rkt run`, `rkt prepare`, `rkt app sandbox`) turned into the typed request
stage0 takes (rktnetes.stage0.spec.PodSpec), every syntax check made here with the flag's name.
What a flavor cannot do is asked of its declared capabilities (rktnetes.stage1), never of its
name."""

from __future__ import annotations

import ipaddress
import re

from rktnetes.errors import UsageError
from rktnetes.pod.manifest import NetworkRequest
from rktnetes.stage0.spec import AppSpec, PodSpec, PullOptions

from .app_flags import AppFlags, parse_kv_list, read_env_files, to_spec

# compiled (and cached by `re`) at first use: only --hostname and --hosts-entry need it
_HOSTNAME = (r"^(?=.{1,253}$)[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
             r"(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$")


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


def network_fields(net: list[str], ports: list[str], *, stage1: str = "default",
                   exposed_ports: list[str] | dict[str, str] | None = None, dns: list[str] = (),
                   dns_search: list[str] = (), dns_opt: list[str] = (),
                   hosts_entries: list[str] = (), hostname: str = "") -> dict:
    """The pod-level network flags as PodSpec fields: {networks, ports, dns, dns_search,
    dns_options, hosts_entries, hostname}. Ports are PortSpecs; with `exposed_ports` (the
    images' "80/tcp", ...) they are resolved to PortForwards, which checks them further."""
    from rktnetes.net import check_port_forwards, parse_net_flags
    from rktnetes.net.flags import parse_port_spec, resolve_port
    from rktnetes.stage1 import capabilities

    caps = capabilities(stage1)
    if hostname and not re.match(_HOSTNAME, hostname):
        raise UsageError(f"--hostname {hostname!r}: not a valid host name")
    if not caps.own_hostname and hostname:
        raise UsageError(f"--hostname: a {stage1} pod runs in the host's namespaces and has "
                         f"the host's name; use --stage1=default")
    requests = parse_net_flags(net)
    if not caps.own_network:
        if any(r.name != "host" for r in requests) and net:
            raise UsageError(f"the {stage1} stage1 always uses the host network (--net=host)")
        requests = [NetworkRequest("host")]
    specs = [parse_port_spec(p) for p in ports]
    # resolved as if every name were exposed: what can be checked before the images are known
    forwards = check_port_forwards([resolve_port(s, exposed_ports if exposed_ports is not None
                                                 else {s.port: "1/tcp"}) for s in specs])
    if forwards and [r.name for r in requests] in (["host"], ["none"]):
        raise UsageError(f"--port needs a pod network; --net={requests[0].name} has none")
    return {"networks": requests, "ports": forwards if exposed_ports is not None else specs,
            "dns": parse_dns(list(dns)), "dns_search": _split_list(list(dns_search)),
            "dns_options": _split_list(list(dns_opt)),
            "hosts_entries": parse_hosts_entries(list(hosts_entries)), "hostname": hostname}


def pod_spec(args, apps: list[AppFlags], sandbox: bool = False) -> PodSpec:
    """The PodSpec of `rkt run|prepare`'s (or `app sandbox`'s) argparse namespace and apps."""
    from rktnetes.stage1 import capabilities

    from .volume_flags import parse_volume

    stage1 = args.stage1
    from rktnetes.stage1 import FLAVORS

    if stage1 not in FLAVORS:
        raise UsageError(f"unknown stage1 {stage1!r} (available: {', '.join(FLAVORS)})")
    caps = capabilities(stage1)
    volumes = [parse_volume(v) for v in args.volume]
    annotations = parse_kv_list(args.annotation, "--annotation")
    labels = parse_kv_list(args.label, "--label")
    net = network_fields(args.net, args.port, stage1=stage1, dns=args.dns,
                         dns_search=args.dns_search, dns_opt=args.dns_opt,
                         hosts_entries=args.hosts_entry, hostname=args.hostname)
    interactive = bool(getattr(args, "interactive", False))
    if interactive and len(apps) != 1:
        raise UsageError("--interactive needs exactly one app")
    if caps.max_apps and len(apps) > caps.max_apps and not sandbox:
        raise UsageError(f"the {stage1} stage1 runs exactly one app")
    if not caps.resource_limits:
        for f in apps:
            for flag, v in (("--memory", f.memory), ("--cpu", f.cpu)):
                if v:
                    raise UsageError(f"{flag}: {stage1} applies no resource limits (it runs "
                                     f"apps in the host's cgroups); use --stage1=default")
    specs: list[AppSpec] = []
    env_files = [read_env_files(f.env_files) for f in apps]
    for f, files in zip(apps, env_files):
        spec, _ = to_spec(f, files)
        specs.append(spec)
    names = {v.name for v in volumes}
    for s in specs:
        for m in s.mounts:
            if m.volume not in names:
                raise UsageError(f"app {s.name or s.image}: --mount names unknown volume "
                                 f"{m.volume!r} (define it with --volume {m.volume},kind=...)")
    return PodSpec(apps=specs, stage1=stage1, hostname=net["hostname"], volumes=volumes,
                   annotations=annotations, labels=labels, restart=args.restart,
                   networks=net["networks"], ports=net["ports"], dns=net["dns"],
                   dns_search=net["dns_search"], dns_options=net["dns_options"],
                   hosts_entries=net["hosts_entries"], interactive=interactive,
                   sandbox=sandbox)


def pull_options(policy: str, insecure_options: list[str], quiet: bool) -> PullOptions:
    from rktnetes.stage0.options import parse_insecure_options

    insecure = parse_insecure_options(insecure_options)
    return PullOptions(policy, "http" in insecure, "tls" in insecure, quiet)
