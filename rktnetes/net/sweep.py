"""A last sweep of iptables rules a pod's plugins left behind after DEL.

Plugins tag their per-pod rules with a comment holding the container ID (`name: "NET" id:
"UUID"`), which makes them unambiguously the pod's. DEL normally removes them, but some
plugin versions only do so when they can still see the pod's interface (bridge 1.1.1 finds the
addresses to un-masquerade on the interface itself). So after DEL, any rule still carrying the
pod's ID is deleted, and so is each per-pod chain it jumped to once nothing else refers to it.
"""

from __future__ import annotations

import re
import shlex

from rktnetes.lazylog import getLogger

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess


log = getLogger(__name__)

TABLES = ("nat", "filter", "mangle")
# Chains the plugins create once per host and share between pods: never ours to delete.
_SHARED = re.compile(r"^CNI-(HOSTPORT-|FORWARD$|ADMIN$|ISOLATION)")
_JUMP = re.compile(r"\s-j\s+(CNI-\S+)")


def _iptables(*args: str) -> subprocess.CompletedProcess:
    import subprocess  # loaded only by pods on CNI networks

    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)


def sweep_rules(network: str, container_id: str) -> list[str]:
    """Delete the rules tagged with this network and container ID, and their private chains;
    return what was removed (empty when DEL already did its job, the usual case)."""
    removed: list[str] = []
    # as iptables-save quotes it inside the comment (bridge: `name: ...`, portmap: `dnat name:`)
    tag = f'name: \\"{network}\\" id: \\"{container_id}\\"'
    import subprocess

    for table in TABLES:
        p = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True)
        if p.returncode != 0:
            continue
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("-A ")]
        ours = [ln for ln in lines if tag in ln]
        if not ours:
            continue
        targets = {m.group(1) for ln in ours if (m := _JUMP.search(ln))}
        chains = {c for c in targets if not _SHARED.match(c)}
        for ln in ours:
            if _iptables("-t", table, "-D", *shlex.split(ln)[1:]).returncode == 0:
                removed.append(f"{table}: {ln}")
        for chain in sorted(chains):
            still_used = any((m := _JUMP.search(ln)) and m.group(1) == chain
                             and tag not in ln and not ln.startswith(f"-A {chain} ")
                             for ln in lines)
            if still_used:
                continue
            _iptables("-t", table, "-F", chain)
            if _iptables("-t", table, "-X", chain).returncode == 0:
                removed.append(f"{table}: chain {chain}")
    for r in removed:
        log.info("removed leftover rule of %s on %s: %s", container_id, network, r)
    return removed
