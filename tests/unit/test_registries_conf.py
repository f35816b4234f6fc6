"""registries.conf v2: prefixes, mirrors in order, insecure and blocked entries."""

from pathlib import Path

import pytest

from rktnetes.errors import RegistryError, RktError
from rktnetes.image import reference as refs
from rktnetes.image import registries_conf as rc

P = Path("/etc/rktnetes/registries.conf")

CONF = """
unqualified-search-registries = ["docker.io"]

[[registry]]
location = "registry.k8s.io"
[[registry.mirror]]
location = "127.0.0.1:5000"
insecure = true
[[registry.mirror]]
location = "mirror.example.com/k8s"

[[registry]]
prefix = "registry.k8s.io/special"
location = "special.example.com/sp"
insecure = true

[[registry]]
location = "evil.example.com"
blocked = true

[[registry]]
prefix = "*.corp.example"
insecure = true

[[registry]]
prefix = "example.com/foo"
location = "other.example.com/bar"
"""


def sources(conf, text):
    return [(s.ref.normalized(), s.insecure, s.mirror) for s in conf.pull_sources(refs.parse(text))]


def test_mirrors_in_order_then_the_registry():
    conf = rc.parse(CONF, P)
    assert sources(conf, "registry.k8s.io/x/y:t") == [
        ("127.0.0.1:5000/x/y:t", True, True),
        ("mirror.example.com/k8s/x/y:t", False, True),
        ("registry.k8s.io/x/y:t", False, False),
    ]


def test_longest_prefix_wins_and_location_keeps_the_rest():
    conf = rc.parse(CONF, P)
    assert sources(conf, "registry.k8s.io/special/a:1") == [("special.example.com/sp/a:1", True, False)]
    assert sources(conf, "example.com/foo/x@sha256:" + "a" * 64) == [
        ("other.example.com/bar/x@sha256:" + "a" * 64, False, False)]


def test_prefix_matches_only_at_a_boundary():
    conf = rc.parse(CONF, P)
    assert sources(conf, "example.com/foobar:1") == [("example.com/foobar:1", False, False)]


def test_wildcard_prefix_sets_insecure():
    conf = rc.parse(CONF, P)
    assert sources(conf, "reg.corp.example/a:1") == [("reg.corp.example/a:1", True, False)]


def test_unconfigured_registry_is_used_as_is():
    conf = rc.parse(CONF, P)
    assert sources(conf, "busybox") == [("docker.io/library/busybox:latest", False, False)]


def test_blocked():
    conf = rc.parse(CONF, P)
    with pytest.raises(RegistryError, match="blocked"):
        conf.pull_sources(refs.parse("evil.example.com/a:1"))


def test_digest_only_mirrors():
    conf = rc.parse("""
[[registry]]
location = "r.example.com"
[[registry.mirror]]
location = "m.example.com"
pull-from-mirror = "digest-only"
""", P)
    assert [s.mirror for s in conf.pull_sources(refs.parse("r.example.com/a:1"))] == [False]
    assert [s.mirror for s in conf.pull_sources(refs.parse("r.example.com/a@sha256:" + "1" * 64))] \
        == [True, False]


@pytest.mark.parametrize("text, words", [
    ("[[registry]\nlocation = 1", "malformed TOML"),
    ("[[registry]]\nlocation = 1", "location must be a string"),
    ("[[registry]]\nlocation = 'a'\ninsecure = 'yes'", "insecure must be true or false"),
    ("[[registry]]\ninsecure = true", "needs a location or a prefix"),
    ("[registries.search]\nregistries = []", "version 1"),
    ("[[registry]]\nlocation = 'a'\n[[registry.mirror]]\ninsecure = true", "needs a location"),
])
def test_bad_files_name_the_file_in_one_line(text, words):
    with pytest.raises(RktError) as e:
        rc.parse(text, P)
    assert str(P) in str(e.value) and words in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_file_is_empty_config(tmp_path):
    assert rc.load(tmp_path / "registries.conf").registries == []
