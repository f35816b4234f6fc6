"""Pod networking: CNI plugins, network definitions, network namespaces, ports and DNS.

The API the rest of rktnetes uses:
  setup_networks(paths, pod_dir, uuid, requests, ports) -> NetworkStatus   (status.netns: join it)
  teardown_networks(paths, pod_dir, uuid, force=False)                      (journal-driven)
  check_networks(paths, pod_dir, uuid)                                      (CNI CHECK)
  pod_dns_files(pod_dir, manifest, status) -> (resolv.conf, hosts, hostname) paths
  load_status(pod_dir) -> NetworkStatus | None                              (for status/list)
  status_entries(status) -> [{"name", "ifname", "ip", "ips", "gateway", "mac"}, ...]
  rktnetes.net.cleanup.undo(paths, pod, res)     the per-`cni`-entry hook of pod/cleanup.py
  parse_net_flag(s) / parse_net_flags(values), parse_port_flag(value, exposed_ports),
  check_port_forwards(ports)                     (flag parsers raise UsageError)
"""

# Loaded on first use (PEP 562), not here: `rkt run` needs only the flag parsers (.flags)
# before it execs the monitor, and importing .setup/.cni/.dns/.status eagerly cost ~20 ms of
# every CLI start. `from rktnetes.net import X` and `rktnetes.net.X` work as before.
_LAZY = {"default_hostname": "dns", "pod_dns_files": "dns",
         "check_port_forwards": "flags", "parse_net_flag": "flags", "parse_net_flags": "flags",
         "parse_port_flag": "flags",
         "check_networks": "attach", "setup_networks": "setup", "teardown_networks": "setup",
         "Attachment": "status", "NetworkStatus": "status", "load_status": "status",
         "status_entries": "status"}


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["setup_networks", "teardown_networks", "check_networks", "pod_dns_files",
           "default_hostname", "load_status", "status_entries", "NetworkStatus", "Attachment",
           "parse_net_flag", "parse_net_flags", "parse_port_flag", "check_port_forwards"]
