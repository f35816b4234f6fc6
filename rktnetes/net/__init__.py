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

from .dns import default_hostname, pod_dns_files
from .flags import check_port_forwards, parse_net_flag, parse_net_flags, parse_port_flag
from .setup import check_networks, setup_networks, teardown_networks
from .status import Attachment, NetworkStatus, load_status, status_entries

__all__ = ["setup_networks", "teardown_networks", "check_networks", "pod_dns_files",
           "default_hostname", "load_status", "status_entries", "NetworkStatus", "Attachment",
           "parse_net_flag", "parse_net_flags", "parse_port_flag", "check_port_forwards"]
