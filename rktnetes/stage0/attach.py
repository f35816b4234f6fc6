"""Attach to a running app's own stdio: its output as the monitor reads it, and (for an app
created with stdin) input to it, through the pod monitor's attach socket
(rktnetes.supervise.attach has the protocol). Ends when the app ends, the monitor goes, or
the caller gives up; the app never waits for us."""

from __future__ import annotations

import json
import os
import select
import socket

from rktnetes.errors import NotRunning
from rktnetes.pod.store import Pod
from rktnetes.supervise.attach import EXIT, IN_DATA, IN_EOF, MAX_MESSAGE, STDERR, STDOUT, address

from .apps import find_app, monitor_alive


def attach(pod: Pod, name: str, stdio: tuple[int, int, int], stdin: bool = False,
           cancel: int = -1) -> int:
    """Carry the app's stdout and stderr to stdio[1] and stdio[2] and, with `stdin`,
    stdio[0] to its stdin, until it ends (its exit code), or the caller's `cancel` fd turns
    readable or its output is gone (-1)."""
    pod.refresh()
    m = pod.manifest()
    app = find_app(m, name)
    if pod.app_state(name).state != "running" or not monitor_alive(pod):
        raise NotRunning(f"app {name} is not running (or its pod has no monitor to attach to)")
    if stdin and not app.stdin:
        raise NotRunning(f"app {name} was not created with stdin")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        try:
            sock.connect(address(pod.uuid))
        except OSError as e:
            raise NotRunning(f"pod {pod.uuid}: cannot reach its monitor to attach: "
                             f"{e.strerror}") from None
        sock.send(json.dumps({"app": name, "stdin": stdin}).encode())
        answer = sock.recv(MAX_MESSAGE + 1)
        if answer != b"ok":
            raise NotRunning(answer.decode(errors="replace").removeprefix("error: ")
                             or f"app {name}: the monitor closed the attach")
        return _carry(sock, stdio, stdin, app.stdin_once, cancel)
    finally:
        sock.close()


def _carry(sock: socket.socket, stdio: tuple[int, int, int], stdin: bool, once: bool,
           cancel: int) -> int:
    """Output to stdio[1]/[2] here, input from stdio[0] in a thread of its own: output is
    always read, however slowly the app takes its input (the monitor lets go of a client
    that does not read). The end of our input ends the attach too, unless the app is
    stdin_once (then the app's input ends, and its output goes on to its end), as containerd
    does."""
    import threading

    stop_r, stop_w = os.pipe2(os.O_CLOEXEC)      # our input ended: stop (not stdin_once)
    if stdin:
        t = threading.Thread(target=_send_input, args=(sock, os.dup(stdio[0]), once, stop_w),
                             daemon=True, name="attach-stdin")
        t.start()
    p = select.poll()
    p.register(sock.fileno(), select.POLLIN)
    p.register(stop_r, select.POLLIN)
    if cancel >= 0:
        p.register(cancel, select.POLLIN)
    try:
        while True:
            for fd, _ in p.poll():
                if fd == cancel:
                    return -1
                if fd == stop_r:
                    if os.read(stop_r, 1):
                        return 0
                    p.unregister(stop_r)       # the input thread ended, asking no stop
                    continue
                msg = sock.recv(MAX_MESSAGE + 1)
                if not msg:
                    return -1
                if msg[0] == EXIT:
                    return int(msg[1:] or b"-1")
                out = stdio[1] if msg[0] == STDOUT else stdio[2] if msg[0] == STDERR else -1
                if out >= 0:
                    view = memoryview(msg)[1:]
                    try:
                        while view:
                            view = view[os.write(out, view):]
                    except BrokenPipeError:
                        return -1
    finally:
        os.close(stop_r)
        # stop_w is the input thread's to close if it runs (it may write to it yet)
        if not stdin:
            os.close(stop_w)


def _send_input(sock: socket.socket, fd: int, once: bool, stop_w: int) -> None:
    """stdin's bytes to the monitor until their end; this thread owns `fd` and `stop_w`."""
    try:
        while True:
            data = os.read(fd, MAX_MESSAGE)
            if not data:
                sock.send(bytes([IN_EOF]))
                if not once:
                    os.write(stop_w, b"x")
                return
            sock.sendall(bytes([IN_DATA]) + data)
    except OSError:
        pass
    finally:
        os.close(fd)
        os.close(stop_w)
