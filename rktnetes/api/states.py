"""Our on-disk pod and app states, mapped to rkt's v1alpha PodState and AppState enums.

As in rkt, the directory a pod is in says most of its state and its lock says the rest:
a pod in `prepare` whose lock is free was abandoned (ABORTED_PREPARE), a pod in `run` whose
lock is free has no monitor any more (EXITED). `exited-garbage` is an exited pod marked for
collection, which rkt reports as EXITED too; `garbage` is a never-run pod marked for collection.
"""

from __future__ import annotations

from rktnetes.pod import state as app_states
from rktnetes.pod.store import EMBRYO, EXITED_GARBAGE, GARBAGE, PREPARE, PREPARED, RUN
from rktnetes.proto.v1alpha import api_pb2 as pb


def pod_state(dir_state: str, locked: bool) -> int:
    """The PodState of a pod found in pods/<dir_state>/, given whether its lock is held."""
    if dir_state == EMBRYO:
        return pb.POD_STATE_EMBRYO
    if dir_state == PREPARE:
        return pb.POD_STATE_PREPARING if locked else pb.POD_STATE_ABORTED_PREPARE
    if dir_state == PREPARED:
        return pb.POD_STATE_PREPARED
    if dir_state == RUN:
        return pb.POD_STATE_RUNNING if locked else pb.POD_STATE_EXITED
    if dir_state == EXITED_GARBAGE:
        return pb.POD_STATE_EXITED
    if dir_state == GARBAGE:
        return pb.POD_STATE_GARBAGE
    return pb.POD_STATE_UNDEFINED


def needs_lock_probe(dir_state: str) -> bool:
    """Only these states depend on the lock; probing others would cost an flock per pod."""
    return dir_state in (PREPARE, RUN)


def app_state(state: str, exit_code: int | None, pod_running: bool) -> int:
    """An app's AppState. A 'running' app in a pod with no monitor is not known to run
    (rkt says UNDEFINED for an app without an exit status outside a running pod)."""
    if state == app_states.EXITED or exit_code is not None and state != app_states.RUNNING:
        return pb.APP_STATE_EXITED
    if state == app_states.RUNNING and pod_running:
        return pb.APP_STATE_RUNNING
    return pb.APP_STATE_UNDEFINED
