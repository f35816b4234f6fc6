"""A client for the Docker Registry HTTP API v2 / OCI distribution spec, on httpx.

It speaks HTTPS unless plain HTTP is allowed, answers bearer-token and basic challenges, and
hands blobs to the store as streams so the store verifies digest and size before keeping them.
Every failure becomes one of rktnetes.errors' one-line exceptions.
"""

from __future__ import annotations

import base64
import logging
import re
import ssl
from dataclasses import dataclass
from typing import Callable, Iterator

import httpx

from rktnetes.errors import AuthError, DigestMismatch, NotFoundError, RegistryError
from rktnetes.store import digest as dg

from . import mediatypes as mt
from .auth import Credentials
from .manifest import Descriptor

log = logging.getLogger(__name__)

MAX_MANIFEST = 4 * 1024 * 1024   # the distribution spec lets registries refuse more; so do we
CHUNK = 1024 * 1024
# Docker Hub's API lives on another host than the name users write.
_API_HOST = {"docker.io": "registry-1.docker.io"}
_HINT_HTTP = "if it serves plain HTTP, use --insecure-options=http (or insecure = true in registries.conf)"


@dataclass(frozen=True)
class FetchedManifest:
    raw: bytes
    digest: str          # sha256 of exactly these bytes
    media_type: str      # from the HTTP Content-Type (the document's own field wins later)


def _short(e: BaseException) -> str:
    """One line out of an exception chain (httpx wraps the interesting part)."""
    inner = e
    while inner.__cause__ is not None or inner.__context__ is not None:
        inner = inner.__cause__ or inner.__context__
    msg = str(inner) or str(e) or e.__class__.__name__
    # OpenSSL's source line and errno numbers help no user
    msg = re.sub(r"\s*\(_ssl\.c:\d+\)|^\[Errno -?\d+\]\s*|^\[SSL: [A-Z_]+\]\s*", "", msg)
    return msg.splitlines()[0][:200]


def _is_tls_error(e: BaseException) -> bool:
    seen = e
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(e)
    return "SSL" in text or "TLS" in text or "record layer" in text


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="...",scope="..."` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)\s*=\s*"([^"]*)"', rest)}
    return scheme.lower(), params


def _registry_message(resp: httpx.Response) -> str:
    """The first message of an OCI error body, if the registry sent one."""
    try:
        errors = resp.json().get("errors") or []
        e = errors[0]
        return f"{e.get('code', '')}: {e.get('message', '')}".strip(": ")
    except Exception:  # any body at all: this is only decoration for a message
        return ""


class RegistryClient:
    def __init__(self, registry: str, *, allow_http: bool = False, verify_tls: bool = True,
                 credentials: Credentials | None = None, timeout: float = 60.0):
        self.registry = registry
        self.host = _API_HOST.get(registry, registry)
        self.allow_http = allow_http
        self.credentials = credentials
        # insecure registries get unverified TLS too, as containers/image does
        self.http = httpx.Client(verify=verify_tls and not allow_http, follow_redirects=True,
                                 timeout=httpx.Timeout(timeout, connect=10.0))
        self.base: str | None = None
        self._authz: dict[str, str] = {}     # scope -> Authorization header value

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- connection and scheme -------------------------------------------------------------

    def _ping(self, scheme: str) -> None:
        resp = self.http.get(f"{scheme}://{self.host}/v2/")
        resp.close()
        self.base = f"{scheme}://{self.host}"
        log.debug("registry %s speaks %s (ping: %s)", self.registry, scheme, resp.status_code)

    def _connect(self) -> str:
        """Find the scheme: HTTPS first; plain HTTP only when allowed."""
        if self.base:
            return self.base
        try:
            self._ping("https")
            return self.base
        except httpx.HTTPError as e:
            tls = _is_tls_error(e)
            first = e
        if self.allow_http:
            try:
                self._ping("http")
                return self.base
            except httpx.HTTPError as e:
                raise self._transport_error(e) from None
        if tls:
            raise RegistryError(f"registry {self.registry} does not answer HTTPS "
                                f"({_short(first)}); {_HINT_HTTP}")
        raise self._transport_error(first)

    def _transport_error(self, e: BaseException) -> RegistryError:
        if isinstance(e, httpx.TimeoutException):
            return RegistryError(f"cannot reach registry {self.registry}: timed out")
        if isinstance(e, httpx.ConnectError) and not _is_tls_error(e):
            return RegistryError(f"cannot reach registry {self.registry}: {_short(e)}")
        if _is_tls_error(e):
            return RegistryError(f"TLS with registry {self.registry} failed: {_short(e)}")
        return RegistryError(f"registry {self.registry}: {_short(e)}")

    # -- authentication -------------------------------------------------------------------

    def _authenticate(self, challenge: str, scope: str) -> None:
        scheme, params = _parse_challenge(challenge)
        if scheme == "basic":
            if not self.credentials:
                raise AuthError(f"registry {self.registry} requires authentication "
                                "and auth.json has no credentials for it")
            self._authz["*"] = "Basic " + base64.b64encode(
                f"{self.credentials.username}:{self.credentials.password}".encode()).decode()
            return
        if scheme == "bearer" and self.credentials and self.credentials.token:
            self._authz[scope] = f"Bearer {self.credentials.token}"   # given, not fetched
            return
        if scheme != "bearer" or not params.get("realm"):
            raise AuthError(f"registry {self.registry} asks for unsupported authentication "
                            f"{challenge[:60]!r}")
        query = {"scope": params.get("scope") or scope}
        if params.get("service"):
            query["service"] = params["service"]
        auth = (self.credentials.username, self.credentials.password) if self.credentials else None
        try:
            resp = self.http.get(params["realm"], params=query, auth=auth)
        except httpx.HTTPError as e:
            raise RegistryError(f"cannot get a token from {params['realm']}: {_short(e)}") from None
        if resp.status_code in (401, 403):
            who = "the credentials in auth.json" if auth else "anonymous access (no credentials in auth.json)"
            raise AuthError(f"authentication with registry {self.registry} failed: "
                            f"the token server refused {who}")
        if resp.status_code != 200:
            raise AuthError(f"token server {params['realm']} answered HTTP {resp.status_code}")
        try:
            body = resp.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not token or not isinstance(token, str):
            raise AuthError(f"token server {params['realm']} sent no token")
        self._authz[scope] = f"Bearer {token}"

    def _request(self, method: str, path: str, scope: str, headers: dict | None = None,
                 stream: bool = False) -> httpx.Response:
        base = self._connect()
        for attempt in (1, 2):
            h = dict(headers or {})
            authz = self._authz.get(scope) or self._authz.get("*")
            if authz:
                h["Authorization"] = authz
            try:
                req = self.http.build_request(method, base + path, headers=h)
                resp = self.http.send(req, stream=stream)
            except httpx.HTTPError as e:
                raise self._transport_error(e) from None
            if resp.status_code == 401 and attempt == 1:
                challenge = resp.headers.get("www-authenticate", "")
                resp.close()
                if not challenge:
                    raise AuthError(f"registry {self.registry} refused access (401) without a challenge")
                self._authenticate(challenge, scope)
                continue
            if resp.status_code in (401, 403):
                try:
                    resp.read()
                    detail = _registry_message(resp)
                except httpx.HTTPError:
                    detail = ""
                resp.close()
                raise AuthError(f"registry {self.registry} denied access to {scope.split(':')[1]} "
                                f"(HTTP {resp.status_code}{': ' + detail if detail else ''})")
            return resp
        raise AssertionError("unreachable")

    # -- manifests and blobs --------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        """A manifest or index by tag or digest; verified when asked for by digest."""
        scope = f"repository:{repository}:pull"
        where = f"{self.registry}/{repository}{'@' if ':' in reference else ':'}{reference}"
        resp = self._request("GET", f"/v2/{repository}/manifests/{reference}", scope,
                             headers={"Accept": mt.ACCEPT}, stream=True)
        try:
            if resp.status_code == 404:
                kind = "digest" if ":" in reference else "tag"
                raise NotFoundError(f"{where}: {kind} not found in registry {self.registry}")
            self._check_status(resp, where)
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > MAX_MANIFEST:
                raise RegistryError(f"{where}: manifest too large ({declared} bytes)")
            raw = self._read_all(resp, where, MAX_MANIFEST)
        finally:
            resp.close()
        if ":" in reference:
            dg.verify_bytes(raw, reference, f"manifest {where}")
        digest = dg.of_bytes(raw)
        header_digest = resp.headers.get("docker-content-digest", "")
        if ":" not in reference and header_digest.startswith("sha256:") and header_digest != digest:
            raise DigestMismatch(f"manifest {where}: digest mismatch: registry says "
                                 f"{header_digest}, content is {digest}")
        ctype = resp.headers.get("content-type", "").split(";")[0].strip()
        return FetchedManifest(raw, digest, ctype)

    def _read_all(self, resp: httpx.Response, where: str, limit: int) -> bytes:
        buf = bytearray()
        try:
            for chunk in resp.iter_bytes():
                buf += chunk
                if len(buf) > limit:
                    raise RegistryError(f"{where}: manifest larger than {limit} bytes")
        except httpx.HTTPError as e:
            raise DigestMismatch(f"manifest {where}: truncated download ({_short(e)})") from None
        return bytes(buf)

    def _check_status(self, resp: httpx.Response, where: str) -> None:
        if resp.status_code == 200:
            return
        if not resp.is_stream_consumed:
            try:
                resp.read()
            except httpx.HTTPError:
                pass
        detail = _registry_message(resp)
        if resp.status_code == 429:
            raise RegistryError(f"{where}: registry {self.registry} says too many requests")
        raise RegistryError(f"{where}: registry {self.registry} answered HTTP {resp.status_code}"
                            + (f" ({detail})" if detail else ""))

    def blob_chunks(self, repository: str, desc: Descriptor) -> Iterator[bytes]:
        """The blob's bytes as they arrive; the consumer verifies digest and size.

        A connection that breaks mid-body becomes DigestMismatch (the content is not what was
        announced), so the caller's temporary file is dropped.
        """
        scope = f"repository:{repository}:pull"
        where = f"blob {desc.digest} of {self.registry}/{repository}"
        resp = self._request("GET", f"/v2/{repository}/blobs/{desc.digest}", scope, stream=True)
        try:
            if resp.status_code == 404:
                raise NotFoundError(f"{where}: not found in the registry")
            self._check_status(resp, where)
            try:
                yield from resp.iter_bytes(CHUNK)
            except httpx.HTTPError as e:
                raise DigestMismatch(f"{where}: truncated download ({_short(e)})") from None
        finally:
            resp.close()

    def fetch_blob(self, repository: str, desc: Descriptor, ingest: Callable[..., object],
                   progress: Callable[[int], None] | None = None) -> None:
        """Stream a blob into `ingest(chunks, digest, size, what=, progress=)` (BlobStore.ingest)."""
        ingest(self.blob_chunks(repository, desc), desc.digest, desc.size,
               what=f"blob {desc.digest}", progress=progress)

