"""The streaming server's pure parts: tokens, the resize decoder, the status a session ends
with, subprotocol choice, and the SPDY session against frames written by hand (over a
socketpair; the integration tests drive it with a full client)."""

from __future__ import annotations

import json
import socket
import struct
import threading
import zlib

import pytest

from rktnetes.cri.stream import spdy
from rktnetes.cri.stream.channels import ResizeDecoder, SpdyStreams, Wanted, protocol_version
from rktnetes.cri.stream.remotecommand import status
from rktnetes.cri.stream.tokens import TokenCache
from rktnetes.cri.stream.wschannel import choose


def test_a_token_is_good_once_for_its_kind_and_a_minute():
    now = [100.0]
    cache = TokenCache(ttl=60, clock=lambda: now[0])
    t = cache.put("exec", "req")
    assert cache.take("attach", t) is None          # another endpoint's token: not found
    assert cache.take("exec", t) == "req"           # ... and that look did not spend it
    assert cache.take("exec", t) is None            # used
    t = cache.put("portforward", "pf")
    now[0] += 61
    assert cache.take("portforward", t) is None     # expired
    assert cache.take("exec", "made-up") is None


def test_resize_events_split_and_joined_any_way():
    d = ResizeDecoder()
    assert d.feed(b'{"Width":80,') == []
    assert d.feed(b'"Height":24}{"Width":100,"Height":30}\n{"Wid') == [(80, 24), (100, 30)]
    assert d.feed(b'th":1,"Height":2}') == [(1, 2)]
    assert d.feed(b"[1,2] 7 ") == []                 # not objects: ignored, not fatal


def test_status_v4_json_and_older_text():
    ok = json.loads(status(0, "", True))
    assert ok["status"] == "Success"
    bad = json.loads(status(3, "", True))
    assert (bad["status"], bad["reason"]) == ("Failure", "NonZeroExitCode")
    assert bad["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    err = json.loads(status(None, "container gone", True))
    assert err["reason"] == "InternalError" and "container gone" in err["message"]
    assert status(0, "", False) == b""
    assert b"exit status 2" in status(2, "", False)
    assert status(None, "boom", False) == b"boom"


def test_subprotocols_in_the_clients_order():
    assert choose(["v5.channel.k8s.io", "v4.channel.k8s.io"],
                  ["v4.channel.k8s.io", "v5.channel.k8s.io"]) == "v5.channel.k8s.io"
    assert choose(["nope"], ["v4.channel.k8s.io"]) is None
    assert choose([], ["v4.channel.k8s.io", ""]) == ""
    assert choose([], ["v4.channel.k8s.io"]) is None
    assert protocol_version("v4.channel.k8s.io") == 4
    assert protocol_version("channel.k8s.io") == 1


def test_expected_streams_follow_the_request_and_version():
    w = Wanted(stdin=True, stdout=True, stderr=True, tty=False)
    assert SpdyStreams("v4.channel.k8s.io", w).expected() == {"error", "stdin", "stdout",
                                                             "stderr"}
    tty = Wanted(stdin=True, stdout=True, stderr=False, tty=True)
    assert SpdyStreams("v4.channel.k8s.io", tty).expected() == {"error", "stdin", "stdout",
                                                               "resize"}
    assert "resize" not in SpdyStreams("v2.channel.k8s.io", tty).expected()


def test_the_spdy3_dictionary():
    # 1423 bytes, as the draft gives it; a header block compressed by a peer with it inflates
    assert len(spdy.DICTIONARY) == 1423
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options")
    assert spdy.DICTIONARY.endswith(b"enq=0.")
    c = zlib.compressobj(zdict=spdy.DICTIONARY)
    block = c.compress(spdy.encode_headers({"streamtype": "stdout"})) + c.flush(zlib.Z_SYNC_FLUSH)
    assert spdy.HeaderCodec().unpack(block) == {"streamtype": "stdout"}


# -- a SPDY session against hand-written frames -----------------------------------------------

class Peer:
    """The client's end of a socketpair: writes frames, reads the server's."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.deflate = zlib.compressobj(zdict=spdy.DICTIONARY)
        self.inflate = zlib.decompressobj(zdict=spdy.DICTIONARY)
        self.buf = b""

    def block(self, headers: dict[str, str]) -> bytes:
        return self.deflate.compress(spdy.encode_headers(headers)) + \
            self.deflate.flush(zlib.Z_SYNC_FLUSH)

    def syn(self, sid: int, headers: dict[str, str], flags: int = 0) -> None:
        self.sock.sendall(spdy.control(spdy.SYN_STREAM, flags,
                                       struct.pack(">IIH", sid, 0, 0) + self.block(headers)))

    def data(self, sid: int, payload: bytes, fin: bool = False) -> None:
        self.sock.sendall(spdy.data_frame(sid, spdy.FLAG_FIN if fin else 0, payload))

    def frame(self) -> tuple:
        while len(self.buf) < 8:
            self.buf += self.sock.recv(65536)
        first, second = struct.unpack(">II", self.buf[:8])
        length = second & 0xFFFFFF
        while len(self.buf) < 8 + length:
            self.buf += self.sock.recv(65536)
        payload, self.buf = self.buf[8:8 + length], self.buf[8 + length:]
        if first & 0x80000000:
            kind = first & 0xFFFF
            if kind in (spdy.SYN_REPLY, spdy.HEADERS):
                return ("control", kind, second >> 24, payload[:4],
                        self.inflate.decompress(payload[4:]))
            return ("control", kind, second >> 24, payload)
        return ("data", first, second >> 24, payload)


@pytest.fixture
def session():
    ours, theirs = socket.socketpair()
    ours.settimeout(10)
    theirs.settimeout(10)
    got: list[spdy.Stream] = []
    s = spdy.Session(ours, got.append)
    t = threading.Thread(target=s.serve, daemon=True)
    t.start()
    yield s, Peer(theirs), got
    theirs.close()
    t.join(5)
    ours.close()


def test_spdy_streams_data_fin_reply_and_ping(session):
    s, peer, got = session
    peer.syn(1, {"streamType": "stdin", "X-Other": "a\0b"})
    peer.data(1, b"hello")
    peer.data(1, b"", fin=True)
    peer.sock.sendall(spdy.control(spdy.PING, 0, struct.pack(">I", 7)))
    assert peer.frame() == ("control", spdy.PING, 0, struct.pack(">I", 7))
    st = got[0]
    assert st.headers == {"streamtype": "stdin", "x-other": "a"}
    assert st.read(5) == b"hello" and st.read(5) == b""
    st.reply()
    kind = peer.frame()
    assert kind[1] == spdy.SYN_REPLY and struct.unpack(">I", kind[3])[0] == 1
    st.write(b"x" * 40000)                 # in frames of at most 16 KiB
    sizes = []
    while sum(sizes) < 40000:
        f = peer.frame()
        assert f[0] == "data" and f[1] == 1
        sizes.append(len(f[3]))
    assert max(sizes) <= spdy.MAX_DATA
    st.close()
    assert peer.frame() == ("data", 1, spdy.FLAG_FIN, b"")


def test_spdy_data_on_an_unknown_stream_is_reset_and_a_bad_version_ends_the_session(session):
    s, peer, got = session
    peer.data(9, b"stray")
    f = peer.frame()
    assert f[1] == spdy.RST_STREAM and struct.unpack(">II", f[3]) == (9, spdy.INVALID_STREAM)
    peer.sock.sendall(struct.pack(">HHI", 0x8000 | 2, spdy.PING, 4) + b"\0\0\0\1")
    f = peer.frame()
    assert f[1] == spdy.GOAWAY and struct.unpack(">II", f[3])[1] == 1   # PROTOCOL_ERROR


def test_spdy_sender_keeps_the_windows_of_a_peer_that_keeps_them(session):
    s, peer, got = session
    # the peer says it keeps windows (a setting), then opens a stream
    peer.sock.sendall(spdy.control(spdy.SETTINGS, 0, struct.pack(
        ">III", 1, spdy.SETTINGS_INITIAL_WINDOW_SIZE, 1000)))
    peer.syn(1, {"streamtype": "stdout"})
    while not got:
        threading.Event().wait(0.01)
    out = got[0]
    done = threading.Event()
    threading.Thread(target=lambda: (out.write(b"y" * 3000), done.set()), daemon=True).start()
    f = peer.frame()
    assert f[0] == "data" and len(f[3]) == 1000
    assert not done.wait(0.3)                      # held at the window's end
    peer.sock.sendall(spdy.control(spdy.WINDOW_UPDATE, 0, struct.pack(">II", 1, 5000)))
    assert done.wait(5)
    assert len(peer.frame()[3]) == 2000


def test_spdy_grants_windows_as_data_is_read(session):
    s, peer, got = session
    peer.syn(1, {"streamtype": "stdin"})
    while not got:
        threading.Event().wait(0.01)
    st = got[0]
    for _ in range(3):
        peer.data(1, b"z" * 16384)
    n = 0
    while n < 3 * 16384:
        n += len(st.read(5))
    updates = {}
    while len(updates) < 2:
        f = peer.frame()
        if f[1] == spdy.WINDOW_UPDATE:
            sid, delta = struct.unpack(">II", f[3])
            updates[sid] = delta
    assert updates[1] >= 32768 and updates[0] >= 32768   # the stream's and the session's


def test_spdy_session_window_counts_every_streams_bytes(session):
    """Five streams of 20 KiB each: none is owed a stream WINDOW_UPDATE, but the session's
    window is (else a strict client, kept to 64 KiB in all, would stall for good)."""
    s, peer, got = session
    for sid in (1, 3, 5, 7, 9):
        peer.syn(sid, {"streamtype": "data"})
        peer.data(sid, b"q" * 20000)
    while len(got) < 5:
        threading.Event().wait(0.01)
    for st in got:
        n = 0
        while n < 20000:
            n += len(st.read(5))
    f = peer.frame()
    assert f[1] == spdy.WINDOW_UPDATE
    sid, delta = struct.unpack(">II", f[3])
    assert sid == 0 and delta >= 32768
