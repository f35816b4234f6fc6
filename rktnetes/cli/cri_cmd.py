"""`rkt cri`: run the Kubernetes CRI v1 runtime and image services in the foreground."""

from __future__ import annotations

import os

from rktnetes.config import Paths
from rktnetes.errors import UsageError


def register(sub, common, only: str | None = None) -> None:
    p = sub.add_parser(
        "cri", parents=[common],
        help="run the Kubernetes CRI v1 service (kubelet's and crictl's runtime endpoint)",
        description="Serve runtime.v1.RuntimeService and runtime.v1.ImageService on a unix "
        "socket, so that a kubelet (--container-runtime-endpoint=unix:///run/rktnetes/cri.sock) "
        "and crictl run their pods on rktnetes. A pod sandbox is a sandbox pod (`rkt app "
        "sandbox`), a container one of its apps; `rkt list` shows them like any pod. The "
        "pods never depend on this process: stop or kill it at any time, and a new one finds "
        "every sandbox and container again.")
    p.add_argument("--listen", default="unix:///run/rktnetes/cri.sock", metavar="ADDR",
                   help="unix:///PATH of the socket (default unix:///run/rktnetes/cri.sock; "
                   "mode 0660)")
    p.add_argument("--runtime-handlers", default="default", metavar="LIST",
                   help="the stage1 flavors offered as RuntimeClass handlers, comma-separated "
                   "(default: default); a pod may also name one with the annotation "
                   "rktnetes.io/stage1")
    p.add_argument("--net", default="default", metavar="NAME",
                   help="the CNI network pods join (default: default, rkt's bridge, unless "
                   "net.d defines it)")
    p.add_argument("--stream-address", default="127.0.0.1:0", metavar="HOST:PORT",
                   help="where the streaming server listens (default 127.0.0.1:0, a free port "
                   "on loopback): Exec, Attach and PortForward return one-use URLs on it that "
                   "kubelet proxies, or crictl connects to (SPDY/3.1 or WebSocket)")
    p.set_defaults(func=run)


def run(args, paths: Paths) -> int:
    from rktnetes.stage1 import FLAVORS

    handlers = [h.strip() for h in args.runtime_handlers.split(",") if h.strip()]
    for h in handlers:
        if h not in FLAVORS:
            raise UsageError(f"--runtime-handlers: unknown stage1 {h!r} (available: "
                             f"{', '.join(FLAVORS)})")
    if not handlers:
        raise UsageError("--runtime-handlers: give at least one stage1")
    host, sep, port = args.stream_address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--stream-address={args.stream_address}: give HOST:PORT "
                         f"(e.g. 127.0.0.1:0 for a free port on loopback)")
    if not args.listen.startswith("unix:"):
        raise UsageError(f"--listen={args.listen}: the CRI listens on a unix socket only "
                         f"(unix:///PATH)")
    if not getattr(args, "debug", False):
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    from rktnetes.cri.runtime import Options
    from rktnetes.cri.server import serve

    return serve(paths, args.listen, Options(handlers=handlers, network=args.net,
                                             stream_address=args.stream_address))
