"""The CRI streaming server as kubectl, crictl and kubelet's proxy use it: Exec, Attach and
PortForward URLs from a real `rkt cri` process, upgraded to SPDY/3.1 by a client written
from the protocol definition (tests/spdyclient.py) and to a WebSocket by a third-party client
(the `websockets` package). The containers are real (runc, the CNI bridge); nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct
import threading
import time
import urllib.request
from concurrent import futures

import pytest

from rktnetes.proto.runtime.v1 import api_pb2 as pb
from tests.integration.cri_client import code_of, cri_environment
from tests.integration.pod_helpers import wait_for
from tests.spdyclient import HandshakeError, SpdyClient

websockets_client = pytest.importorskip("websockets.sync.client")
from websockets.exceptions import ConnectionClosed  # noqa: E402

V4, V5 = "v4.channel.k8s.io", "v5.channel.k8s.io"


@pytest.fixture(scope="module")
def cri(tmp_path_factory):
    with cri_environment(tmp_path_factory.mktemp("cristream")) as env:
        yield env


@pytest.fixture(scope="module")
def pod(cri):
    """One sandbox for the module: an idle app, an echo server on :9000 and an HTTP server
    on :8080 in its network namespace, and an app whose stdin is open for attach."""
    c = cri.client
    cfg = c.sandbox_config("streams", cri.logs / "streams")
    sid = c.run_sandbox(cfg)
    idle = c.run(sid, c.container_config("idle", cri.image_id, ["sleep", "3600"]), cfg)
    c.run(sid, c.container_config("echo", cri.image_id, ["nc", "-ll", "-p", "9000", "-e", "cat"]),
          cfg)
    yield {"sid": sid, "cfg": cfg, "idle": idle}
    c.teardown(sid)


def exec_url(cri, cid, cmd, **kw) -> str:
    kw.setdefault("stdout", True)
    return cri.client.runtime.Exec(pb.ExecRequest(container_id=cid, cmd=cmd, **kw)).url


def ws_url(url: str) -> str:
    return "ws" + url[len("http"):]


def open_streams(client: SpdyClient, *types: str) -> dict:
    """The remotecommand streams, by type, opened as kubectl opens them (error first)."""
    return {t: client.open_stream({"streamType": t}) for t in types}


def spdy_exec(url: str, types: list[str], stdin: bytes | None = None, protocol: str = V4,
              before=None) -> dict[str, bytes]:
    """Run an exec over SPDY as kubectl does: the error stream first, then the others; stdin
    written and half-closed; every stream read to its end."""
    client = SpdyClient(url, [protocol])
    try:
        assert client.protocol == protocol
        streams = open_streams(client, "error", *types)
        for s in streams.values():
            s.wait_reply()
        if before:
            before(streams)
        if "stdin" in streams:
            if stdin:
                streams["stdin"].write(stdin)
            streams["stdin"].close_write()
        out = {t: streams[t].read_all() for t in types if t in ("stdout", "stderr")}
        out["error"] = streams["error"].read_all()
        assert not client.violations, client.violations   # the server kept to the draft
        return out
    finally:
        client.close()


def exit_status(error: bytes) -> tuple[str, int]:
    """(status, exit code) from a v4 error stream."""
    doc = json.loads(error)
    if doc["status"] == "Success":
        return "Success", 0
    causes = {c.get("reason"): c.get("message") for c in doc["details"]["causes"]}
    return doc["reason"], int(causes["ExitCode"])


def ws_collect(ws) -> dict[int, bytes]:
    """Every channel's bytes until the server closes the WebSocket."""
    out: dict[int, bytes] = {}
    try:
        while True:
            m = ws.recv(timeout=30)
            out[m[0]] = out.get(m[0], b"") + m[1:]
    except ConnectionClosed:
        pass
    return out


# -- exec ------------------------------------------------------------------------------------

def test_exec_over_spdy_stdout_stderr_and_exit_code(cri, pod):
    url = exec_url(cri, pod["idle"], ["sh", "-c", "echo out; echo err >&2; exit 7"],
                   stderr=True)
    r = spdy_exec(url, ["stdout", "stderr"])
    assert (r["stdout"], r["stderr"]) == (b"out\n", b"err\n")
    assert exit_status(r["error"]) == ("NonZeroExitCode", 7)
    ok = spdy_exec(exec_url(cri, pod["idle"], ["true"]), ["stdout"])
    assert exit_status(ok["error"]) == ("Success", 0) and ok["stdout"] == b""


def test_exec_over_spdy_v2_reports_the_error_as_text(cri, pod):
    r = spdy_exec(exec_url(cri, pod["idle"], ["sh", "-c", "exit 3"]), ["stdout"],
                  protocol="v2.channel.k8s.io")
    assert b"non-zero exit code" in r["error"] and b"3" in r["error"]
    assert spdy_exec(exec_url(cri, pod["idle"], ["true"]), ["stdout"],
                     protocol="v2.channel.k8s.io")["error"] == b""


def test_exec_with_stdin_over_spdy_and_websocket(cri, pod):
    data = bytes(random.Random(1).randrange(256) for _ in range(300_000))
    url = exec_url(cri, pod["idle"], ["sha256sum"], stdin=True)
    r = spdy_exec(url, ["stdin", "stdout"], stdin=data)
    assert r["stdout"].split()[0].decode() == hashlib.sha256(data).hexdigest()
    assert exit_status(r["error"])[0] == "Success"

    url = exec_url(cri, pod["idle"], ["sh", "-c", "cat; echo done >&2"], stdin=True,
                   stderr=True)
    with websockets_client.connect(ws_url(url), subprotocols=[V5]) as ws:
        assert ws.subprotocol == V5
        ws.send(b"\x00hello ")
        ws.send(b"\x00world")
        ws.send(b"\xff\x00")          # v5: stdin is closed
        got = ws_collect(ws)
    assert got[1] == b"hello world" and got[2] == b"done\n"
    assert json.loads(got[3])["status"] == "Success"


def test_exec_over_websocket_base64_and_exit_code(cri, pod):
    url = exec_url(cri, pod["idle"], ["sh", "-c", "printf '\\001\\002'; exit 4"])
    with websockets_client.connect(ws_url(url), subprotocols=["v4.base64.channel.k8s.io"]) as ws:
        msgs = []
        try:
            while True:
                msgs.append(ws.recv(timeout=30))
        except ConnectionClosed:
            pass
    import base64

    assert all(isinstance(m, str) for m in msgs)
    out = b"".join(base64.b64decode(m[1:]) for m in msgs if m[0] == "1")
    err = [base64.b64decode(m[1:]) for m in msgs if m[0] == "3"]
    assert out == b"\x01\x02"
    assert exit_status(err[0]) == ("NonZeroExitCode", 4)


def test_exec_with_a_tty_and_a_resize(cri, pod):
    url = exec_url(cri, pod["idle"], ["sh", "-c", "read a; stty size; read b; stty size"],
                   stdin=True, tty=True)
    client = SpdyClient(url, [V4])
    try:
        s = open_streams(client, "error", "stdin", "stdout", "resize")
        for st in s.values():
            st.wait_reply()
        s["resize"].write(json.dumps({"Width": 100, "Height": 30}).encode())
        out = b""

        def until(text: bytes):
            nonlocal out
            deadline = time.monotonic() + 20
            while text not in out and time.monotonic() < deadline:
                out += s["stdout"].read(timeout=20)
            return text in out

        time.sleep(0.2)              # the size reaches the terminal before the line
        s["stdin"].write(b"x\n")
        assert until(b"30 100"), out
        s["resize"].write(json.dumps({"Width": 120, "Height": 40}).encode())
        time.sleep(0.2)
        s["stdin"].write(b"y\n")
        assert until(b"40 120"), out
        assert b"\r\n" in out               # a terminal's line discipline, not a pipe
        rest = s["error"].read_all()
        assert exit_status(rest)[0] == "Success"
    finally:
        client.close()


def test_a_slow_reader_gets_all_of_the_output(cri, pod):
    """The command ends (its output fits in the pipe, our buffer and the client's window)
    long before the client reads: all of it still comes, the pipe is carried to its end."""
    url = exec_url(cri, pod["idle"], ["sh", "-c", "head -c 150000 /dev/zero"])
    client = SpdyClient(url, [V4])
    try:
        err = client.open_stream({"streamType": "error"})
        out = client.open_stream({"streamType": "stdout"})
        time.sleep(4)              # the command is long done; its last bytes wait for us
        assert len(out.read_all(timeout=60)) == 150_000
        assert exit_status(err.read_all())[0] == "Success"
    finally:
        client.close()


def test_a_malformed_frame_ends_the_session_and_its_command(cri, pod):
    url = exec_url(cri, pod["idle"], ["sh", "-c", "echo started; exec sleep 4545"])
    client = SpdyClient(url, [V4])
    s = open_streams(client, "error", "stdout")
    assert s["stdout"].read(timeout=20) == b"started\n"
    # a WINDOW_UPDATE two bytes long (the draft's is eight)
    client._sock.sendall(struct.pack(">HHI", 0x8003, 9, 2) + b"\0\1")
    assert client.wait_closed(20)
    wait_for(lambda: not _sleepers(cri, pod["idle"], "sleep 4545"), 20, "the exec to end")


def test_tty_with_stderr_and_no_stream_are_refused(cri, pod):
    code, msg = code_of(cri.client.runtime.Exec, pb.ExecRequest(
        container_id=pod["idle"], cmd=["true"], tty=True, stdout=True, stderr=True))
    assert code.name == "INVALID_ARGUMENT" and "tty" in msg
    code, _ = code_of(cri.client.runtime.Exec, pb.ExecRequest(container_id=pod["idle"],
                                                              cmd=["true"]))
    assert code.name == "INVALID_ARGUMENT"
    code, _ = code_of(cri.client.runtime.Exec, pb.ExecRequest(container_id="nosuch",
                                                              cmd=["true"], stdout=True))
    assert code.name == "NOT_FOUND"


def test_bad_used_and_unknown_tokens_are_404(cri, pod):
    url = exec_url(cri, pod["idle"], ["true"])
    spdy_exec(url, ["stdout"])
    with pytest.raises(HandshakeError) as e:      # a token is good once
        SpdyClient(url, [V4])
    assert e.value.status == 404
    base = url.rsplit("/", 2)[0]
    with pytest.raises(HandshakeError) as e:
        SpdyClient(base + "/exec/not-a-token", [V4])
    assert e.value.status == 404
    with pytest.raises(urllib.error.HTTPError) as h:
        urllib.request.urlopen(base + "/portforward/nope", timeout=10)
    assert h.value.code == 404
    url = exec_url(cri, pod["idle"], ["true"])
    with pytest.raises(HandshakeError) as e:      # a protocol we do not speak
        SpdyClient(url, ["v9.channel.k8s.io"])
    assert e.value.status == 403


def _sleepers(cri, cid: str, mark: str) -> list[str]:
    r = cri.client.exec_sync(cid, ["ps", "-o", "args"])
    return [line for line in r.stdout.decode().splitlines() if mark in line]


def test_a_client_that_vanishes_mid_stream_ends_its_command(cri, pod):
    url = exec_url(cri, pod["idle"], ["sh", "-c", "echo started; exec sleep 4242"])
    client = SpdyClient(url, [V4])
    s = open_streams(client, "error", "stdout")
    assert s["stdout"].read(timeout=20) == b"started\n"
    assert _sleepers(cri, pod["idle"], "sleep 4242")
    client.abort()                   # no GOAWAY, no FIN: the socket is just gone
    wait_for(lambda: not _sleepers(cri, pod["idle"], "sleep 4242"), 20, "the exec to end")
    # and over a WebSocket
    url = exec_url(cri, pod["idle"], ["sh", "-c", "echo started; exec sleep 4343"])
    with websockets_client.connect(ws_url(url), subprotocols=[V4]) as ws:
        assert ws.recv(timeout=20)[1:] in (b"", b"started\n")
        wait_for(lambda: _sleepers(cri, pod["idle"], "sleep 4343"), 20, "the exec to start")
        ws.socket.shutdown(2)         # gone without a close frame
        ws.socket.close()
    wait_for(lambda: not _sleepers(cri, pod["idle"], "sleep 4343"), 20, "the exec to end")
    spdy_exec(exec_url(cri, pod["idle"], ["true"]), ["stdout"])   # the server goes on


def test_twenty_concurrent_exec_sessions(cri, pod):
    def one(i: int) -> tuple[int, bytes, tuple]:
        url = exec_url(cri, pod["idle"], ["sh", "-c", f"echo session {i}; exit {i % 3}"])
        if i % 2:
            r = spdy_exec(url, ["stdout"])
            return i, r["stdout"], exit_status(r["error"])
        with websockets_client.connect(ws_url(url), subprotocols=[V4]) as ws:
            got = ws_collect(ws)
        return i, got.get(1, b""), exit_status(got[3])

    with futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    for i, out, status in results:
        assert out == f"session {i}\n".encode()
        assert status == (("Success", 0) if i % 3 == 0 else ("NonZeroExitCode", i % 3))


# -- attach ----------------------------------------------------------------------------------

def test_attach_to_a_running_app_output_and_stdin(cri, pod):
    c = cri.client
    cid = c.run(pod["sid"], c.container_config(
        "reader", cri.image_id,
        ["sh", "-c", "echo ready; while read l; do echo got $l; echo err $l >&2; done; "
                     "echo bye; sleep 1"], stdin=True, stdin_once=True), pod["cfg"])
    # over SPDY: stdout and stderr of the app, and a line of input
    url = c.runtime.Attach(pb.AttachRequest(container_id=cid, stdin=True, stdout=True,
                                            stderr=True)).url
    client = SpdyClient(url, [V4])
    try:
        s = open_streams(client, "error", "stdin", "stdout", "stderr")
        s["stdin"].write(b"one\n")
        assert s["stdout"].read_exactly(len(b"got one\n")) == b"got one\n"
        assert s["stderr"].read_exactly(len(b"err one\n")) == b"err one\n"
        s["stdin"].close_write()        # stdin_once: the app's input ends with it
        assert s["stdout"].read_all() == b"bye\n"
        assert exit_status(s["error"].read_all())[0] == "Success"
    finally:
        client.close()
    wait_for(lambda: c.status(cid).state == pb.CONTAINER_EXITED, 20, "the app to end")
    assert c.status(cid).exit_code == 0
    log = (cri.logs / "streams" / "reader" / "0.log").read_text()
    assert "got one" in log and "bye" in log     # what attach saw, the log has too


def test_attach_with_a_terminal_to_an_app_without_one(cri, pod):
    """kubelet asks for a terminal when the container has tty: true; the app runs without one
    here, and its output (stderr with stdout, as on a terminal) comes on stdout."""
    c = cri.client
    cid = c.run(pod["sid"], c.container_config(
        "ttyapp", cri.image_id, ["sh", "-c", "while read l; do echo o$l; echo e$l >&2; done"],
        tty=True, stdin=True), pod["cfg"])
    url = c.runtime.Attach(pb.AttachRequest(container_id=cid, stdin=True, stdout=True,
                                            tty=True)).url
    client = SpdyClient(url, [V4])
    try:
        st = open_streams(client, "error", "stdin", "stdout", "resize")
        st["resize"].write(b'{"Width":80,"Height":25}')
        st["stdin"].write(b"x\n")
        got = b""
        while b"ox\n" not in got or b"ex\n" not in got:
            got += st["stdout"].read(timeout=20)
        st["stdin"].close_write()       # not stdin_once: our input's end ends the attach
        assert exit_status(st["error"].read_all())[0] == "Success"
        assert not client.violations, client.violations
    finally:
        client.close()
    assert c.status(cid).state == pb.CONTAINER_RUNNING     # the app goes on


def test_attach_over_websocket_and_a_slow_client_never_blocks_the_app(cri, pod):
    c = cri.client
    cid = c.run(pod["sid"], c.container_config(
        "talker", cri.image_id,
        ["sh", "-c", "i=0; while true; do i=$((i+1)); echo line $i; "
                     "[ $i = 40000 ] && echo done-writing >&2; done"]), pod["cfg"])
    url = c.runtime.Attach(pb.AttachRequest(container_id=cid, stdout=True)).url
    with websockets_client.connect(ws_url(url), subprotocols=[V5]) as ws:
        assert ws.recv(timeout=20)[0] == 1
        assert b"line" in ws.recv(timeout=20)
        # now read nothing: the app must go on writing (its log grows) all the same
        log = cri.logs / "streams" / "talker" / "0.log"
        wait_for(lambda: "done-writing" in log.read_text(), 60, "the app to write on")
    c.stop_container(cid)
    code, msg = code_of(c.runtime.Attach, pb.AttachRequest(container_id=cid, stdout=True))
    assert code.name == "FAILED_PRECONDITION", msg


# -- port forward ----------------------------------------------------------------------------

def test_port_forward_parallel_connections_and_16_mib_byte_for_byte(cri, pod):
    url = cri.client.runtime.PortForward(pb.PortForwardRequest(pod_sandbox_id=pod["sid"],
                                                               port=[9000])).url
    client = SpdyClient(url, ["portforward.k8s.io"])
    assert client.protocol == "portforward.k8s.io"
    try:
        def connection(i: int, size: int) -> bool:
            err = client.open_stream({"streamType": "error", "port": "9000",
                                      "requestID": str(i)})
            err.close_write()
            data_s = client.open_stream({"streamType": "data", "port": "9000",
                                         "requestID": str(i)})
            payload = random.Random(i).randbytes(size)
            sent = threading.Thread(target=lambda: (data_s.write(payload),))
            sent.start()
            back = data_s.read_exactly(size, timeout=120)
            sent.join()
            data_s.close_write()
            return back == payload

        sizes = [16 << 20, 100_000, 50_000, 10_000, 1]
        with futures.ThreadPoolExecutor(len(sizes)) as pool:
            assert all(pool.map(connection, range(len(sizes)), sizes))
        # a port nothing listens on: the error stream says so
        err = client.open_stream({"streamType": "error", "port": "9999", "requestID": "x"})
        client.open_stream({"streamType": "data", "port": "9999", "requestID": "x"})
        msg = err.read_all(timeout=20)
        assert b"9999" in msg and b"refused" in msg.lower(), msg
        assert not client.violations, client.violations
    finally:
        client.close()


def test_port_forward_over_websocket(cri, pod):
    url = cri.client.runtime.PortForward(pb.PortForwardRequest(pod_sandbox_id=pod["sid"])).url
    with websockets_client.connect(ws_url(url) + "?port=9000",
                                   subprotocols=["v4.channel.k8s.io"]) as ws:
        assert ws.recv(timeout=10) == b"\x00" + (9000).to_bytes(2, "little")
        assert ws.recv(timeout=10) == b"\x01" + (9000).to_bytes(2, "little")
        payload = os.urandom(200_000)
        ws.send(b"\x00" + payload)
        back = b""
        while len(back) < len(payload):
            m = ws.recv(timeout=30)
            assert m[0] == 0
            back += m[1:]
        assert back == payload


def test_port_forward_over_websocket_takes_the_cri_requests_ports(cri, pod):
    """Through kubelet's proxy the URL has no query: the ports are those of the CRI call."""
    url = cri.client.runtime.PortForward(pb.PortForwardRequest(pod_sandbox_id=pod["sid"],
                                                               port=[9000])).url
    with websockets_client.connect(ws_url(url), subprotocols=["v4.channel.k8s.io"]) as ws:
        assert ws.recv(timeout=10) == b"\x00" + (9000).to_bytes(2, "little")
        ws.recv(timeout=10)
        ws.send(b"\x00ping")
        back = b""
        while len(back) < 4:
            m = ws.recv(timeout=10)
            if m[0] == 0:
                back += m[1:]
        assert back == b"ping"


def test_a_stream_address_that_cannot_be_had_is_one_line_and_leaves_no_socket(rkt, tmp_path):
    sock = tmp_path / "cri.sock"
    for address, says in (("nope:xx", "HOST:PORT"), ("8.8.8.8:0", "cannot listen"),
                          ("no-such-host.invalid:0", "cannot listen")):
        res = rkt.fails("cri", f"--listen=unix://{sock}", f"--stream-address={address}",
                        timeout=60)
        assert says in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert not sock.exists()


def test_nothing_is_left_running(cri, pod):
    """Last: no exec, forward or attach of these tests lives on in the pod or the server."""
    assert not _sleepers(cri, pod["idle"], "sleep 4")
    server = cri.server.proc.pid
    children = [p for p in os.listdir("/proc") if p.isdigit()
                and _ppid(p) == server]
    names = [_comm(p) for p in children]
    assert not [n for n in names if n in ("runc", "setsid", "nsenter")], names


def _ppid(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""

