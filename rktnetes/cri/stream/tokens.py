"""Single-use tokens for the streaming URLs: Exec/Attach/PortForward put a request here and
hand out /<kind>/<token>; the first connection takes it. As kubelet's streaming library does:
a token lives a minute, a taken, unknown or expired one is a 404."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

TTL = 60.0
MAX_PENDING = 1000     # a caller minting URLs no one uses cannot grow us without bound


@dataclass
class Pending:
    kind: str          # "exec" | "attach" | "portforward"
    request: object    # the typed request the session runs (stream.sessions.*Request)
    expires: float = field(default=0.0)


class TokenCache:
    def __init__(self, ttl: float = TTL, clock=time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, Pending] = {}

    def put(self, kind: str, request: object) -> str:
        token = secrets.token_urlsafe(12)
        now = self.clock()
        with self._lock:
            self._expire(now)
            if len(self._pending) >= MAX_PENDING:
                oldest = min(self._pending, key=lambda t: self._pending[t].expires)
                del self._pending[oldest]
            self._pending[token] = Pending(kind, request, now + self.ttl)
        return token

    def take(self, kind: str, token: str) -> object | None:
        """The request behind `token` if it is live and of `kind`; it is gone afterwards."""
        with self._lock:
            p = self._pending.get(token)
            if p is None or p.kind != kind:
                return None
            del self._pending[token]
            return p.request if p.expires > self.clock() else None

    def _expire(self, now: float) -> None:
        for t in [t for t, p in self._pending.items() if p.expires <= now]:
            del self._pending[t]
