"""The one place engine errors become gRPC status codes: each error's kind names its code,
the message stays one line. Every RPC goes through `guarded`, so no exception reaches gRPC
as a traceback."""

from __future__ import annotations

import functools
import logging

import grpc

from rktnetes import errors

log = logging.getLogger("rktnetes.cri")

CODES = {
    errors.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    errors.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    errors.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    errors.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    errors.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    errors.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    errors.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.INTERNAL: grpc.StatusCode.INTERNAL,
    errors.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
}


def one_line(s: str, limit: int = 1000) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= limit else s[:limit] + "…"


def status_of(e: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(e, errors.RktError):
        return CODES.get(e.kind, grpc.StatusCode.INTERNAL), one_line(str(e))
    if isinstance(e, OSError):
        where = f": {e.filename}" if e.filename else ""
        return grpc.StatusCode.INTERNAL, one_line(f"{e.strerror or e}{where}")
    return grpc.StatusCode.INTERNAL, one_line(f"internal error: {type(e).__name__}: {e}")


def guarded(fn):
    """An RPC handler whose failures are status codes with one-line messages."""

    @functools.wraps(fn)
    def call(self, request, context):
        try:
            return fn(self, request, context)
        except Exception as e:  # noqa: BLE001 - turned into a status, never a crashed call
            if type(e) is Exception and not e.args:
                raise                      # what context.abort raises: already a status
            code, msg = status_of(e)
            if code == grpc.StatusCode.INTERNAL:
                log.warning("%s: %s", fn.__name__, msg, exc_info=not isinstance(
                    e, (errors.RktError, OSError)))
        context.abort(code, msg)

    return call


def guarded_stream(fn):
    """The same for a server-streaming handler (a generator)."""

    @functools.wraps(fn)
    def call(self, request, context):
        try:
            yield from fn(self, request, context)
            return
        except Exception as e:  # noqa: BLE001
            if type(e) is Exception and not e.args:
                raise
            code, msg = status_of(e)
        context.abort(code, msg)

    return call
