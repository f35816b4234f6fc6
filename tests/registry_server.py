"""Test helpers around a real registry: Debian's `docker-registry` on 127.0.0.1.

- RegistryServer: starts `docker-registry serve` with a private config and storage directory,
  optionally with token auth pointing at a TokenServer.
- TokenServer: a small token endpoint (http.server) that checks basic credentials and issues
  RS256 JWTs the registry verifies against a throwaway certificate (made with the openssl CLI,
  so the tests need no extra Python dependency).
- push(): `skopeo copy` of an OCI layout into the registry.
- small HTTP servers that misbehave on purpose (a truncating/redirecting proxy, a fixed-answer
  fake registry) for failures a real registry never produces.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import httpx

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _ThreadedServer:
    """An http.server in a daemon thread, on a free port of 127.0.0.1."""

    def __init__(self, handler_cls):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # handlers reach their server's settings through this
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def send_body(self, code: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


# -- token auth -------------------------------------------------------------------------------

class TokenServer(_ThreadedServer):
    """Issues registry tokens to `username:password` (and, if `anonymous_pull`, pull tokens to
    anyone). The registry trusts the certificate at `cert_path` (its rootcertbundle)."""

    SERVICE = "rktnetes-test-registry"
    ISSUER = "rktnetes-test-token-issuer"

    def __init__(self, workdir: Path, username: str = "alice", password: str = "s3cret",
                 token_field: str = "token"):
        self.username, self.password, self.token_field = username, password, token_field
        self.key_path, self.cert_path = workdir / "token.key", workdir / "token.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=rktnetes-test-token", "-keyout", str(self.key_path),
                        "-out", str(self.cert_path)], check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert_path), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.requests: list[dict] = []
        super().__init__(_TokenHandler)

    @property
    def realm(self) -> str:
        return f"http://{self.address}/token"

    def sign(self, claims: dict) -> str:
        header = {"alg": "RS256", "typ": "JWT", "x5c": [self.x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key_path)],
                             input=signing_input.encode(), check=True, capture_output=True).stdout
        return f"{signing_input}.{_b64url(sig)}"

    def issue(self, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) >= 3:
                access.append({"type": parts[0], "name": ":".join(parts[1:-1]),
                               "actions": parts[-1].split(",")})
        now = int(time.time())
        return self.sign({"iss": self.ISSUER, "sub": self.username, "aud": self.SERVICE,
                          "exp": now + 600, "nbf": now - 60, "iat": now, "jti": uuid.uuid4().hex,
                          "access": access})


class _TokenHandler(_QuietHandler):
    def do_GET(self):
        srv: TokenServer = self.server.owner
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        authz = self.headers.get("Authorization", "")
        user = None
        if authz.startswith("Basic "):
            user, _, pw = base64.b64decode(authz[6:]).decode().partition(":")
            if (user, pw) != (srv.username, srv.password):
                user = "<bad>"
        srv.requests.append({"path": url.path, "query": query, "user": user})
        if url.path != "/token":
            return self.send_body(404, b"not found")
        if user != srv.username:
            return self.send_body(401, b'{"details":"bad credentials"}',
                                  {"Content-Type": "application/json",
                                   "WWW-Authenticate": 'Basic realm="token"'})
        token = srv.issue(query.get("scope", []))
        self.send_body(200, json.dumps({srv.token_field: token, "expires_in": 600}).encode(),
                       {"Content-Type": "application/json"})


# -- the registry ------------------------------------------------------------------------------

class RegistryServer:
    def __init__(self, workdir: Path, token: TokenServer | None = None):
        self.workdir = workdir
        self.storage = workdir / "storage"
        self.storage.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: error",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: {self.address}",
            "  secret: rktnetes-test-secret",
        ]
        if self.token:
            lines += [
                "auth:",
                "  token:",
                f"    realm: {self.token.realm}",
                f"    service: {TokenServer.SERVICE}",
                f"    issuer: {TokenServer.ISSUER}",
                f"    rootcertbundle: {self.token.cert_path}",
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> "RegistryServer":
        cfg = self.workdir / "config.yml"
        cfg.write_text(self._config())
        log = open(self.workdir / "registry.log", "wb")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(cfg)], stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://{self.address}/v2/", timeout=1)
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not start: {self.log()}")

    def log(self) -> str:
        p = self.workdir / "registry.log"
        return p.read_text(errors="replace")[-2000:] if p.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def blob_data_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes (to corrupt it on purpose)."""
        hexd = digest.split(":", 1)[1]
        return (self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data")

    def push(self, layout: Path, ref: str, name: str, *, all_images: bool = False,
             creds: str | None = None) -> str:
        """`skopeo copy oci:LAYOUT:REF docker://ADDR/NAME[:TAG]`; returns `ADDR/NAME[:TAG]`."""
        dest = f"{self.address}/{name}"
        argv = ["skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false",
                "--preserve-digests"]
        if all_images:
            argv.append("--all")
        if creds:
            argv += ["--dest-creds", creds]
        argv += [f"oci:{layout}:{ref}", f"docker://{dest}"]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "REGISTRY_AUTH_FILE": str(self.workdir / "none.json")})
        if p.returncode != 0:
            raise RuntimeError(f"skopeo copy failed: {p.stderr}")
        return dest


# -- misbehaving servers ------------------------------------------------------------------------

class Proxy(_ThreadedServer):
    """Forwards to an upstream registry; `mode` decides what happens to blob downloads:
    'pass' forwards them, 'truncate' sends the full Content-Length but half the body and hangs up,
    'redirect' answers 307 with the upstream's URL (as registries backed by S3 do)."""

    def __init__(self, upstream: str, mode: str = "pass"):
        self.upstream, self.mode = upstream, mode
        self.blob_requests = 0
        super().__init__(_ProxyHandler)


class _ProxyHandler(_QuietHandler):
    def do_GET(self):
        self._forward()

    def do_HEAD(self):
        self._forward()

    def _forward(self):
        srv: Proxy = self.server.owner
        is_blob = "/blobs/sha256:" in self.path
        if is_blob:
            srv.blob_requests += 1
        if is_blob and srv.mode == "redirect":
            return self.send_body(307, b"", {"Location": f"http://{srv.upstream}{self.path}"})
        conn = http.client.HTTPConnection(srv.upstream, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(self.command, self.path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if is_blob and srv.mode == "truncate" and resp.status == 200:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


class FakeRegistry(_ThreadedServer):
    """Answers fixed bodies by path; everything else is 404 the registry way."""

    def __init__(self, routes: dict[str, tuple[int, dict, bytes]]):
        self.routes = routes
        super().__init__(_FakeHandler)


class _FakeHandler(_QuietHandler):
    def do_GET(self):
        srv: FakeRegistry = self.server.owner
        path = self.path.split("?", 1)[0]
        if path == "/v2/":
            return self.send_body(200, b"{}", {"Content-Type": "application/json"})
        if path in srv.routes:
            code, headers, body = srv.routes[path]
            return self.send_body(code, body, headers)
        self.send_body(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}',
                       {"Content-Type": "application/json"})

    do_HEAD = do_GET
