"""stage0's checks of the settings the CRI brings (rktnetes.stage0.spec): pure."""

from __future__ import annotations

import pytest

from rktnetes.pod.manifest import Mount
from rktnetes.stage0.spec import (AppSpec, InvalidSpec, Resources, check_app, check_resources,
                                  check_sysctls)


@pytest.mark.parametrize("res", [Resources(cpu_shares=2, cpu_quota=1000, cpu_period=1000,
                                           cpuset_cpus="0-3,5", cpuset_mems="0"),
                                 Resources(cpu_quota=-1), Resources()])
def test_resources_accepted(res):
    check_resources(res)


@pytest.mark.parametrize("res,match", [
    (Resources(memory_limit=-1), "negative"), (Resources(cpu_quota=-2), "quota"),
    (Resources(cpu_quota=10), "at least 1000"), (Resources(cpu_period=999), "period"),
    (Resources(cpuset_cpus="0-"), "cpuset"), (Resources(cpuset_mems="a"), "cpuset"),
])
def test_resources_refused(res, match):
    with pytest.raises(InvalidSpec, match=match):
        check_resources(res)


def test_sysctls():
    check_sysctls({"net.ipv4.ip_forward": "1", "kernel.shmmax": "1", "fs.mqueue.msg_max": "9"},
                  host_network=False)
    with pytest.raises(InvalidSpec, match="not a namespaced"):
        check_sysctls({"kernel.panic": "1"}, host_network=False)
    with pytest.raises(InvalidSpec, match="host-network"):
        check_sysctls({"net.core.somaxconn": "1"}, host_network=True)
    check_sysctls({"kernel.shmmni": "100"}, host_network=True)     # IPC is still the pod's
    with pytest.raises(InvalidSpec, match="not a valid"):
        check_sysctls({"net.x": "1\n2"}, host_network=False)


@pytest.mark.parametrize("kw,match", [
    ({"seccomp": "localhost/rel.json"}, "seccomp"), ({"seccomp": "weird"}, "seccomp"),
    ({"pid_namespace": "other"}, "pid namespace"), ({"masked_paths": ["rel"]}, "absolute"),
    ({"log_path": "rel.log"}, "log path"),
    ({"mounts": [Mount("v", "/d", propagation="shared")]}, "propagation"),
])
def test_app_checks(kw, match):
    with pytest.raises(InvalidSpec, match=match):
        check_app(AppSpec("img", **kw))


def test_app_checks_accept_the_cri_settings():
    check_app(AppSpec("img", seccomp="localhost//etc/p.json", pid_namespace="host",
                      masked_paths=[], readonly_paths=["/proc/x"], log_path="/var/log/x.log",
                      mounts=[Mount("v", "/d", propagation="rslave")]))
