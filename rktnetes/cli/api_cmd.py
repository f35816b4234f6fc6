"""`rkt api-service`: run the read-only gRPC API (rkt's v1alpha PublicAPI) in the foreground."""

from __future__ import annotations

import os

from rktnetes.config import Paths


def register(sub, common, only: str | None = None) -> None:
    p = sub.add_parser(
        "api-service", parents=[common],
        help="run the read-only gRPC API service (rkt's v1alpha PublicAPI)",
        description="Serve rkt's v1alpha PublicAPI (GetInfo, ListPods, InspectPod, ListImages, "
        "InspectImage, ListenEvents, GetLogs) with gRPC reflection. Read-only: it never "
        "changes pods or images, and stopping it does not affect running pods.")
    p.add_argument("--listen", default="127.0.0.1:15441", metavar="ADDR",
                   help="HOST:PORT or unix:///PATH to listen on (default 127.0.0.1:15441; "
                   "port 0 picks a free port, printed at start)")
    p.set_defaults(func=run)


def run(args, paths: Paths) -> int:
    # gRPC's C core logs bind failures and the like to stderr itself; the service reports
    # them as one `rkt:` line instead. Only read when grpc is first imported, hence here.
    # --debug (or a GRPC_VERBOSITY of the user's own) keeps gRPC's log.
    if not getattr(args, "debug", False):
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    from rktnetes.api.server import serve   # grpc is imported only by this command

    return serve(paths, args.listen)
