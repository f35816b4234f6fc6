"""Isolation flavors, each one module here with a `Stage1` subclass as `STAGE1`, and what each
can do (`Capabilities`), declared here so that stage0 and the front ends can ask without
loading a flavor's machinery (an OCI spec, seccomp profiles) on every command.

A new flavor is one module, one entry in FLAVORS and one branch in get_stage1.
"""

from __future__ import annotations

from dataclasses import dataclass

from rktnetes.errors import INVALID_ARGUMENT, Stage1Error


@dataclass(frozen=True)
class Capabilities:
    """What a flavor can do; stage0 asks these, never a flavor's name."""

    summary: str
    own_network: bool = True        # False: always the host's network (--net=host only)
    own_hostname: bool = True       # a UTS namespace the pod names
    max_apps: int = 0               # 0: any number
    sandbox: bool = True            # mutable pods (`rkt app sandbox`, a CRI pod sandbox)
    resource_limits: bool = True    # memory and CPU limits (cgroups)
    network_attach: str = "netns"   # how a pod network reaches it: "netns" (a veth in a
    #                                 network namespace), "tap" (a VM's), "" (the host's)
    max_id: int = 0                 # the largest uid/gid it can run as (0: any) ...
    max_id_by: str = ""             # ... as what sets it (for messages)


RUNC_MAX_ID = 2**31 - 1   # runc (libcontainer) refuses larger uids and gids

FLAVORS: dict[str, Capabilities] = {
    "default": Capabilities("namespaces and cgroups through an OCI runtime (runc, crun)",
                            max_id=RUNC_MAX_ID, max_id_by="runc"),
    "fly": Capabilities("a chroot in the host's namespaces, one app, no cgroups",
                        own_network=False, own_hostname=False, max_apps=1, sandbox=False,
                        resource_limits=False, network_attach=""),
}


def capabilities(name: str) -> Capabilities:
    """What the flavor called `name` can do; Stage1Error (invalid argument) if unknown."""
    caps = FLAVORS.get(name or "default")
    if caps is None:
        raise Stage1Error(f"unknown stage1 {name!r} (available: {', '.join(FLAVORS)})",
                          kind=INVALID_ARGUMENT)
    return caps


def get_stage1(name: str):
    """The flavor called `name`, imported on demand: the monitor loads only its own."""
    capabilities(name)
    if name == "fly":
        from . import fly

        return fly.STAGE1
    from . import default

    return default.STAGE1
