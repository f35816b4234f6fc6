"""ListPods/ListImages filters with rkt's semantics, as pure functions.

Conditions inside one filter are ANDed; a list of filters is ORed; no filters match everything.
Within a condition: pod ids, states and cgroups match if any of the listed values matches; app
names, image ids, network names and annotations must all be present. For images: ids, full
names, name prefixes, base names and keywords match any; labels and annotations must all
match; imported_after/before are strict bounds in seconds, 0 meaning unset.

Filters are rkt's protobuf messages (anything with the same attributes works); the pods and
images are the plain facts below, so the rules can be tested without a server.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence


@dataclass(frozen=True)
class PodFacts:
    id: str
    state: int                                   # v1alpha.PodState
    app_names: frozenset[str] = frozenset()
    image_ids: frozenset[str] = frozenset()
    network_names: frozenset[str] = frozenset()
    annotations: Mapping[str, str] = field(default_factory=dict)
    cgroup: str = ""


@dataclass(frozen=True)
class ImageFacts:
    id: str
    names: tuple[str, ...] = ()                  # repository names, without tag or digest
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    imported_at: int = 0                         # seconds since the epoch


def has_all_key_values(actual: Mapping[str, str], required: Iterable) -> bool:
    """Every required KeyValue (fields `Key`, `value`, as rkt spells them) is present."""
    return all(k.Key in actual and actual[k.Key] == k.value for k in required)


def pod_matches(pod: PodFacts, f) -> bool:
    if f.ids and pod.id not in f.ids:
        return False
    if f.states and pod.state not in f.states:
        return False
    if f.app_names and not set(f.app_names) <= pod.app_names:
        return False
    if f.image_ids and not set(f.image_ids) <= pod.image_ids:
        return False
    if f.network_names and not set(f.network_names) <= pod.network_names:
        return False
    if f.annotations and not has_all_key_values(pod.annotations, f.annotations):
        return False
    if f.cgroups and pod.cgroup not in f.cgroups:
        return False
    if f.pod_sub_cgroups and not (pod.cgroup and any(
            _cgroup_contains(pod.cgroup, sub) for sub in f.pod_sub_cgroups)):
        return False
    return True


def pod_matches_any(pod: PodFacts, filters: Sequence) -> bool:
    return not filters or any(pod_matches(pod, f) for f in filters)


def _cgroup_contains(parent: str, sub: str) -> bool:
    """`sub` is the pod's cgroup or below it (a path prefix, not a string prefix)."""
    parent = parent.rstrip("/")
    return sub == parent or sub.startswith(parent + "/")


def image_matches(img: ImageFacts, f) -> bool:
    if f.ids and img.id not in f.ids:
        return False
    if f.full_names and not any(n in f.full_names for n in img.names):
        return False
    if f.prefixes and not any(n.startswith(p) for n in img.names for p in f.prefixes):
        return False
    if f.base_names and not any(posixpath.basename(n) in f.base_names for n in img.names):
        return False
    if f.keywords and not any(k in n for n in img.names for k in f.keywords):
        return False
    if f.imported_after > 0 and img.imported_at <= f.imported_after:
        return False
    if f.imported_before > 0 and img.imported_at >= f.imported_before:
        return False
    if f.labels and not has_all_key_values(img.labels, f.labels):
        return False
    if f.annotations and not has_all_key_values(img.annotations, f.annotations):
        return False
    return True


def image_matches_any(img: ImageFacts, filters: Sequence) -> bool:
    return not filters or any(image_matches(img, f) for f in filters)


def event_matches(ev, f) -> bool:
    """EventFilter: types, ids, names (the event's `from`) and the time window, ANDed."""
    if f is None:
        return True
    if f.types and ev.type not in f.types:
        return False
    if f.ids and ev.id not in f.ids:
        return False
    if f.names and ev.from_ not in f.names:
        return False
    if f.since_time > 0 and ev.time < f.since_time:
        return False
    if f.until_time > 0 and ev.time > f.until_time:
        return False
    return True
