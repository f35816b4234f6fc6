"""auth.json lookups: docker config shape, username/password keys, per-namespace entries."""

import base64
import json

import pytest

from rktnetes.errors import AuthError
from rktnetes.image import auth


def write(tmp_path, doc):
    p = tmp_path / "auth.json"
    p.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return p


def test_lookup(tmp_path):
    p = write(tmp_path, {"auths": {
        "127.0.0.1:5000": {"auth": base64.b64encode(b"alice:pa:ss").decode()},
        "127.0.0.1:5000/team": {"username": "bob", "password": "pw"},
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:x").decode()},
        "helper.example.com": {},
    }})
    a = auth.load(p)
    assert a.lookup("127.0.0.1:5000", "other/x") == auth.Credentials("alice", "pa:ss")
    assert a.lookup("127.0.0.1:5000", "team/app") == auth.Credentials("bob", "pw")
    assert a.lookup("docker.io", "library/busybox") == auth.Credentials("hub", "x")
    assert a.lookup("helper.example.com", "x") is None
    assert "pw" not in repr(a.lookup("127.0.0.1:5000", "team/app"))


def test_missing_file(tmp_path):
    assert auth.load(tmp_path / "auth.json").lookup("x") is None


@pytest.mark.parametrize("doc", ["{not json", {"auths": []}, {"auths": {"h": {"auth": "!!"}}}])
def test_bad_files(tmp_path, doc):
    with pytest.raises(AuthError) as e:
        auth.load(write(tmp_path, doc))
    assert "auth.json" in str(e.value) and "\n" not in str(e.value)
