"""`rkt cri`: the CRI v1 runtime and image services on a unix socket (mode 0660).

The server holds nothing the pods need: each pod's monitor keeps it alive, and everything the
server knows it reads from the pod directories. Killed at any moment, a new server picks up
where the old one was. SIGTERM/SIGINT: stop taking calls, let the running ones finish.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_reflection.v1alpha import reflection

from rktnetes.config import Paths
from rktnetes.proto.runtime.v1 import api_pb2 as pb
from rktnetes.proto.runtime.v1 import api_pb2_grpc as pb_grpc
from rktnetes.proto.serving import bind

from .images import ImageService
from .runtime import Options, RuntimeService

DEFAULT_LISTEN = "unix:///run/rktnetes/cri.sock"
SOCKET_MODE = 0o660
MAX_MESSAGE = (16 << 20) + 1024         # ExecSync output (16 MiB) and its envelope
SERVICES = [pb.DESCRIPTOR.services_by_name[n].full_name for n in ("RuntimeService",
                                                                 "ImageService")]
log = logging.getLogger("rktnetes.cri")


@dataclass
class Running:
    server: grpc.Server
    runtime: RuntimeService
    address: str

    def stop(self, grace: float = 5.0) -> None:
        self.runtime.watcher.stop()
        if self.runtime.streaming is not None:
            self.runtime.streaming.stop()
        self.server.stop(grace).wait()
        self.runtime.launcher.close()


def start(paths: Paths, listen: str = DEFAULT_LISTEN, options: Options | None = None,
          workers: int = 256) -> Running:
    from .stream.server import StreamServer

    runtime = RuntimeService(paths, options or Options())
    # the streaming port first: a --stream-address that cannot be had leaves no CRI socket
    runtime.streaming = StreamServer(runtime.opts.stream_address or "127.0.0.1:0")
    # kubelet's workers call at once; event streams, stops (a grace period) and execs hold a
    # worker each: enough that Status and the lists never queue behind them
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cri"),
                         options=[("grpc.so_reuseport", 0),
                                  ("grpc.max_send_message_length", MAX_MESSAGE),
                                  ("grpc.max_receive_message_length", MAX_MESSAGE)])
    pb_grpc.add_RuntimeServiceServicer_to_server(runtime, server)
    pb_grpc.add_ImageServiceServicer_to_server(ImageService(paths), server)
    reflection.enable_server_reflection((*SERVICES, reflection.SERVICE_NAME), server)
    try:
        address = bind(server, listen, mode=SOCKET_MODE)
    except BaseException:
        runtime.streaming.stop()
        raise
    runtime.streaming.start()
    runtime.watcher.start()
    runtime.launcher.start()
    server.start()
    return Running(server, runtime, address)


def serve(paths: Paths, listen: str = DEFAULT_LISTEN, options: Options | None = None) -> int:
    """Run until SIGINT/SIGTERM (the CLI's main thread)."""
    running = start(paths, listen, options)
    import faulthandler
    import gc

    faulthandler.register(signal.SIGUSR1, all_threads=True)   # `kill -USR1`: every stack

    # What is loaded by now (gRPC, protobuf, the engine) lives as long as the server: out of
    # the collector's sight, a full collection no longer walks it (a pause of ~10 ms a call).
    gc.freeze()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(f"CRI service running on {running.address}; streaming (exec, attach, "
          f"port-forward) on {running.runtime.streaming.base_url}", flush=True)
    done.wait()
    running.stop()
    return 0
