"""The per-pod monitor: starts a pod's apps through its stage1, reaps them, writes their logs.

    python -S -m rktnetes.supervise.monitor --data-dir D --config-dir C --uuid UUID --lock-fd N

Spawned by stage0 for a detached pod (see `control.monitor_argv`) once the pod is in `run`, with
the pod's locked directory fd inherited: the monitor holds the pod's lock for its whole life.
A foreground `rkt run` runs it in its own process instead (`run_foreground`), as rkt's stage0
execs its stage1: its stdio are the user's, and the stage1 calls run in children forked from
that process, whose modules are already loaded (helper.LocalHelper). The monitor is the child
subreaper of everything it starts, so containers' inits (orphaned by `runc run --detach`)
become its children and their exit status comes to it.

Stop protocol: write `stop-request.json` ({"timeout": seconds, "force": bool}) in the pod dir,
then SIGTERM the monitor. Mutable pods (`rkt app ...`, see rktnetes.stage0.apps): under the pod's
apps lock (an flock on `apps.lock`), change pod.json and/or create `apps/<name>/start-request` or
`apps/<name>/stop-request` ({"timeout": s}), then SIGHUP the monitor. It re-reads pod.json and acts
on the requests under the same lock (shared), deleting each request once acted on: a request
file gone means "done" (started, or stop signal sent). Apps no longer in pod.json are forgotten.

Lean on purpose (hundreds run on a node): stage1 work that needs heavy imports (bundles, specs,
rootfs) runs in workers of a helper child that loads them once per burst of calls and exits when
idle (rktnetes.supervise.helper), so those modules never load in the monitor itself.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import sys
import time

from rktnetes.host import procs, signals
from rktnetes.logs.cri import FULL, format_line
# the pod directory's files, states and state fields: the one spelling stage0 uses too
from rktnetes.pod.protocol import APP_STATE as APP_STATE_FILE
from rktnetes.pod.protocol import APP_STATE_FIELDS as APP_STATE
from rktnetes.pod.protocol import (APPS_LOCK, CREATED,
                                   EXITED, EXITED_GARBAGE, MANIFEST, REOPEN_LOG_REQUEST, RUN,
                                   RUNNING, START_ERROR, STATE, app_dir, app_log_path,
                                   state_path,
                                   write_json)
from rktnetes.pod.protocol import read_json as _read_json

from . import exits, requests
from .exits import START_ERROR_CODE
from .helper import IDLE as HELPER_IDLE
from .helper import Helper, HelperAborted, HelperError, HelperGone, LocalHelper
from .logpump import LogPump
from .logpump import echo as _echo
from .requests import DEFAULT_STOP_TIMEOUT

RECONCILE_RETRY = 0.01          # the apps lock is busy (a `rkt app` command): try again then
ABORTABLE = ("setup", "start")  # the stage1 calls a stop does not wait for (see action)

ActionError = HelperError   # a stage1 call failed; the message is one line for the user


class AppRun:
    """The monitor's view of one app: its pod.json entry and its state.json document."""

    def __init__(self, app: dict, st: dict, log_fd: int):
        self.app = app
        self.st = st
        self.log_fd = log_fd
        self.pid = 0
        self.restart_at = 0.0       # >0: a restart is due then (monotonic)
        self.kill_at = 0.0          # >0: SIGKILL then (end of the stop grace period)
        self.no_restart = False     # stopped on request: stays down
        self.stop_sig = 0           # >0: killed in place of this ignored-by-init stop signal

    @property
    def name(self) -> str:
        return self.app["name"]

    @property
    def running(self) -> bool:
        return self.pid > 0


def uses_cni(manifest: dict) -> bool:
    """Whether the pod (its manifest as JSON) is on a CNI network: neither `none` nor `host`."""
    return any(n.get("name") not in ("none", "host") for n in manifest.get("networks") or ())


class Monitor:
    def __init__(self, data_dir: str, config_dir: str, uuid: str, lock_fd: int,
                 foreground: bool):
        self.data_dir, self.config_dir, self.uuid = data_dir, config_dir, uuid
        self.pods = os.path.join(data_dir, "pods")
        self.dir = state_path(self.pods, RUN, uuid)
        self.lock_fd = lock_fd
        self.foreground = foreground
        self.manifest = _read_json(os.path.join(self.dir, MANIFEST))
        self.runs: dict[str, AppRun] = {}
        self.poll = select.poll()
        self.pump = LogPump(self.poll)       # the apps' output pipes into their logs
        self.attach = None                   # attach.AttachHub, once the pod runs
        self.stopping = False
        self.interrupts = 0         # SIGINTs (^C) received
        self.setup_error = ""
        self.stage1_state: dict = {}
        try:  # keep what stage0 wrote before us (e.g. `netns_path` from the networking code)
            self.pod_state: dict = _read_json(os.path.join(self.dir, STATE))
        except (OSError, ValueError):
            self.pod_state = {}
        self.wake_r = -1
        self.boot_id = procs.boot_id()
        self.pending_sigs: list[int] = []     # seen while a stage1 call was in flight (their
        #                                       ^Cs counted already in self.interrupts)
        self.stop_due = 0.0         # >0: a stop was asked for; by then it must take effect
        self.reconcile_at = 0.0     # >0: a SIGHUP is pending, the apps lock was busy
        # In the foreground (we are `rkt run` itself), or forked by a launcher that loaded the
        # stage1 modules (supervise.launcher), calls fork from us directly; otherwise they go
        # through a helper forked on demand and let go when idle.
        self.local = foreground or "rktnetes.supervise.actions" in sys.modules
        self.helper: Helper | LocalHelper | None = LocalHelper(
            data_dir, config_dir, uuid, lock_fd, self.manifest.get("stage1") or "default",
            cni=uses_cni(self.manifest)) if self.local else None
        self.helper_idle_at = time.monotonic() + HELPER_IDLE  # let it go then, if no call came

    # -- files ---------------------------------------------------------------------------------

    def app_dir(self, name: str) -> str:
        return app_dir(self.dir, name)

    def save_app_state(self, run: AppRun) -> None:
        os.makedirs(self.app_dir(run.name), exist_ok=True)
        write_json(os.path.join(self.app_dir(run.name), APP_STATE_FILE), run.st,
                   durable=run.st["state"] == EXITED)

    def save_pod_state(self, durable: bool = False, **kw) -> None:
        self.pod_state.update(kw)
        self.pod_state["stage1_state"] = self.stage1_state
        write_json(os.path.join(self.dir, STATE), self.pod_state, durable)

    # -- stage1 calls, through the helper ---------------------------------------------------------

    def action(self, name: str, *args, fds: tuple[int, ...] = ()):
        """Run rktnetes.supervise.actions.<name>(...) in a worker and return its JSON result: a
        worker of the stage1 helper (the heavy modules never load into a detached monitor), or
        in the foreground a child forked from us. Raises ActionError."""
        for _ in range(2):
            if self.helper is None:
                self.helper = Helper.start(self.data_dir, self.config_dir, self.uuid,
                                           self.lock_fd)
            try:
                # The calls that start things can hang (a hostile image, a CNI plugin, the
                # runtime): a stop must never wait for them. Those that stop things are the
                # stop's own work, and are waited for.
                wait = self.await_answer if name in ABORTABLE else None
                return self.helper.call(name, self.stage1_state, list(args), fds, wait=wait)
            except HelperGone:  # it exited (killed?) before the call: a fresh one runs it
                self.close_helper()
            except HelperAborted:
                if not self.local:
                    self.helper = None   # killed, and reaped, by the call
                raise
            finally:
                self.helper_idle_at = time.monotonic() + HELPER_IDLE
        raise ActionError(f"stage1 {name}: cannot start the stage1 helper")

    def await_answer(self, fd: int) -> bool:
        """Wait for the answer of a call that starts something, on `fd`. No step of a pod's
        start may keep it from being stopped: signals that come meanwhile are noted for the
        loop, and once a stop is due (at once for a forced one, after the grace period
        otherwise) the call is abandoned: False."""
        p = select.poll()
        p.register(fd, select.POLLIN)
        if self.wake_r >= 0:
            p.register(self.wake_r, select.POLLIN)
        while True:
            timeout = None
            if self.stop_due:
                timeout = max(0, int((self.stop_due - time.monotonic()) * 1000) + 1)
            ready = [r for r, _ in p.poll(timeout)]
            if fd in ready:
                return True
            if self.wake_r in ready:
                self.note_signals()
            if self.stop_due and time.monotonic() >= self.stop_due:
                return False

    def note_signals(self) -> None:
        """During a stage1 call: keep the signals for the loop (which acts on them once the
        call returns) and work out when a stop they ask for makes the call not worth
        waiting for."""
        sigs = self.read_wakeups()
        self.pending_sigs += sigs
        now = time.monotonic()
        due = 0.0
        if signal.SIGTERM in sigs:
            force, timeout = self.stop_request()
            due = now + (0 if force else timeout)
        if signal.SIGINT in sigs:
            self.interrupts += sigs.count(signal.SIGINT)
            due = now + (0 if self.interrupts > 1 else DEFAULT_STOP_TIMEOUT)
        if due:
            self.stop_due = min(self.stop_due or due, due)

    def stop_request(self) -> tuple[bool, float]:
        """(force, grace period) of the pending stop request, the defaults if none."""
        return requests.pod_stop(self.dir)

    def close_helper(self) -> None:
        if self.helper is not None:
            self.helper.close()
            self.helper = None

    # -- apps ----------------------------------------------------------------------------------

    def add_app(self, app: dict) -> AppRun:
        try:
            st = {**APP_STATE, **_read_json(os.path.join(self.app_dir(app["name"]), APP_STATE_FILE))}
        except (OSError, ValueError):
            st = {**APP_STATE, "name": app["name"]}
        log_fd = -1
        if not app.get("interactive"):
            os.makedirs(self.app_dir(app["name"]), exist_ok=True)
            log_fd = self.open_log(app)
        run = AppRun(app, st, log_fd)
        if not st["created_at"]:
            st["created_at"] = time.time()
            self.save_app_state(run)
        self.runs[app["name"]] = run
        return run

    def open_log(self, app: dict) -> int:
        """The app's log, opened for appending; a log_path's directory is made if missing
        (kubelet's), and a log that cannot be opened is no log rather than no pod."""
        path = app_log_path(self.app_dir(app["name"]), app)
        try:
            if app.get("log_path"):
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as e:
            _echo(2, f"rkt: app {app['name']}: cannot open its log {path}: {e}\n".encode())
            return -1

    def reopen_log(self, run: AppRun) -> None:
        """kubelet rotated the log away: write a new one where it was."""
        fd = self.open_log(run.app)
        if fd < 0:
            return
        self.pump.relog(run.name, fd)
        if run.log_fd >= 0:
            os.close(run.log_fd)
        run.log_fd = fd

    def start(self, run: AppRun) -> bool:
        interactive = bool(run.app.get("interactive"))
        pipes = []
        if interactive:
            stdio = (0, 1, 2)
        else:
            stdin_w = -1
            if run.app.get("stdin") and self.attach is not None:   # for attached clients
                null, stdin_w = os.pipe2(os.O_CLOEXEC)
            else:
                null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            pipes = [(out_r, "stdout", 1), (err_r, "stderr", 2)]
            stdio = (null, out_w, err_w)
        try:
            pid = _process_of(self.action("start", run.name,
                                          fds=(stdio[1], stdio[2], stdio[0])))
            err = ""
        except ActionError as e:
            pid, err = 0, str(e)
        finally:
            if not interactive:
                for fd in stdio:
                    os.close(fd)
        for fd, stream, echo in pipes:
            self.pump.add(run.name, fd, run.log_fd, stream, echo if self.foreground else -1)
        if not interactive and stdin_w >= 0:
            if pid:
                self.attach.app_started(run.name, stdin_w, bool(run.app.get("stdin_once")))
            else:
                os.close(stdin_w)
        st = run.st
        if not pid:
            st.update(state=EXITED, pid=0, exit_code=START_ERROR_CODE, reason=START_ERROR,
                      message=err, finished_at=time.time())
            self.save_app_state(run)
            if run.log_fd >= 0:
                os.write(run.log_fd, format_line(time.time_ns(), "stderr", FULL,
                                                 f"rkt: {err}".encode()))
            if self.foreground:
                _echo(2, f"rkt: app {run.name}: {err}\n".encode())
            return False
        run.pid = pid
        st.update(state=RUNNING, pid=pid, starttime=procs.starttime(pid),
                  boot_id=self.boot_id, exit_code=None,
                  signal=0, reason="", message="", started_at=time.time(), finished_at=0.0,
                  stop_signal=0, stop_fatal=False)
        self.save_app_state(run)
        return True

    def on_exit(self, run: AppRun, status: int) -> None:
        run.pid = 0
        run.kill_at = 0.0
        self.pump.drain(run.name)     # what it wrote last, before its exit is told
        try:
            oom = bool(self.action("exited", run.name))
        except ActionError as e:  # the journal cleanup at the end retries
            oom = False
            _echo(2, f"rkt: cleanup of app {run.name}: {e}\n".encode())
        st = run.st
        code, sig = exits.exit_status(status, run.stop_sig, oom)
        run.stop_sig = 0
        st.update(state=EXITED, finished_at=time.time(), exit_code=code, signal=sig,
                  reason=exits.reason(code, oom))
        if self.attach is not None:
            self.attach.app_exited(run.name, code)
        policy = run.app.get("restart") or self.manifest.get("restart") or "never"
        delay = None if self.stopping or run.no_restart else \
            exits.restart_delay(policy, code, st["restarts"])
        if delay is not None:
            run.restart_at = time.monotonic() + delay
            how = f"was killed by signal {sig}" if sig else f"exited with {code}"
            _echo(2, f"rkt: app {run.name} {how}; restarting it in {delay:g}s "
                     f"(--restart={policy}, restart #{st['restarts'] + 1})\n".encode())
        self.save_app_state(run)

    # -- stopping ------------------------------------------------------------------------------

    def signal(self, run: AppRun, sig: int) -> None:
        if not run.running:
            return
        try:
            self.action("signal", run.name, sig)
        except ActionError:
            try:  # the runtime could not; the process is ours to signal anyway
                os.kill(run.pid, sig)
            except ProcessLookupError:
                pass

    def stop_app(self, run: AppRun, timeout: float, force: bool) -> None:
        run.no_restart = True
        run.restart_at = 0.0
        if not run.running:
            return
        sig = signal.SIGKILL if force or timeout <= 0 else \
            signals.number(run.app.get("stop_signal", ""))
        fate = signals.fate(run.pid, sig)
        # Recorded before it is sent: if we die before we reap the app, whoever cleans up
        # (`rkt stop`, `rkt gc`) knows the signal it died of, when that is certain.
        run.st.update(stop_signal=sig, stop_fatal=fate in (signals.DIES, signals.DROPPED))
        self.save_app_state(run)
        self.signal(run, sig)
        if sig != signal.SIGKILL:
            run.kill_at = time.monotonic() + timeout
            if fate == signals.DROPPED:
                # The app is its PID namespace's init (runc) and neither catches nor ignores
                # the signal: the kernel drops it, where any other process would die of it.
                # Do what it stands for now rather than wait out the grace period.
                run.stop_sig = sig
                self.signal(run, signal.SIGKILL)

    def begin_stop(self, default_force: bool = False) -> None:
        force, timeout = self.stop_request()
        force = force or default_force
        self.stopping = True
        due = time.monotonic() + (0 if force else timeout)
        self.stop_due = min(self.stop_due or due, due)
        for run in self.runs.values():
            if run.running and run.kill_at and not force:
                run.no_restart = True
                continue  # already stopping: a second request keeps the first grace period
            self.stop_app(run, timeout, force)

    def reconcile(self) -> None:
        """SIGHUP: pod.json changed (apps added or removed) or per-app requests appeared. Runs
        under the apps lock (shared); if a `rkt app` command holds it, retried a moment later."""
        fd = requests.apps_lock_shared(self.dir)
        if fd is None:
            self.reconcile_at = time.monotonic() + RECONCILE_RETRY
            return
        self.reconcile_at = 0.0
        try:
            self._reconcile()
        finally:
            requests.apps_lock_release(fd)

    def _reconcile(self) -> None:
        try:
            self.manifest = _read_json(os.path.join(self.dir, MANIFEST))
        except (OSError, ValueError) as e:
            _echo(2, f"rkt: cannot re-read the pod manifest: {e}\n".encode())
            return
        names = set()
        for app in self.manifest.get("apps", []):
            names.add(app["name"])
            run = self.runs.get(app["name"]) or self.add_app(app)
            run.app = app
            adir = self.app_dir(run.name)
            timeout = requests.app_stop(adir)
            stopped = timeout is not None
            if stopped:
                self.stop_app(run, timeout, False)
                requests.done(adir, "stop")
            if requests.pending(adir, REOPEN_LOG_REQUEST):
                if not run.app.get("interactive"):
                    self.reopen_log(run)
                requests.done(adir, "reopen-log")
            if requests.app_start(adir):
                if not run.running and run.st["state"] == CREATED and not stopped:
                    if self.stopping:
                        run.st.update(state=EXITED, exit_code=START_ERROR_CODE,
                                      reason=START_ERROR, message="the pod is stopping",
                                      finished_at=time.time())
                        self.save_app_state(run)
                    else:
                        run.no_restart = False
                        self.start(run)
                requests.done(adir, "start")   # after the start: it tells `rkt app start`
        for name in [n for n in self.runs if n not in names]:
            run = self.runs[name]
            if run.running:  # `rkt app rm` removes exited apps only; never leave one behind
                self.stop_app(run, 0, True)
                continue
            del self.runs[name]
            self.pump.close_app(name)
            if run.log_fd >= 0:
                os.close(run.log_fd)
                run.log_fd = -1

    # -- the loop ------------------------------------------------------------------------------

    def done(self) -> bool:
        if any(r.running or r.restart_at for r in self.runs.values()):
            return False
        return self.stopping or not self.manifest.get("sandbox")

    def reap(self) -> None:
        by_pid = {r.pid: r for r in self.runs.values() if r.running}
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            run = by_pid.pop(pid, None)
            if run is not None:
                self.on_exit(run, status)
            elif self.helper is not None and pid == self.helper.pid:
                self.helper.reaped = True  # it died: the next call starts another

    def loop(self) -> None:
        while not self.done():
            if self.pending_sigs:   # noted during a stage1 call that then answered
                self.on_signals()
                continue
            now = time.monotonic()
            due = [t for r in self.runs.values() for t in (r.restart_at, r.kill_at) if t > 0]
            if self.reconcile_at:
                due.append(self.reconcile_at)
            if self.helper is not None and not self.local:
                due.append(self.helper_idle_at)
            timeout = max(0, int((min(due) - now) * 1000) + 1) if due else None
            ready = [fd for fd, _ in self.poll.poll(timeout)]
            if self.wake_r in ready:
                self.on_signals()
            if self.attach is not None:
                for fd in ready:
                    if self.attach.owns(fd):
                        self.attach.handle(fd)
            self.pump.read([fd for fd in ready if fd != self.wake_r])
            now = time.monotonic()
            if self.helper is not None and not self.local and now >= self.helper_idle_at:
                self.close_helper()
            if self.reconcile_at and now >= self.reconcile_at:
                self.reconcile()
            for run in list(self.runs.values()):
                if run.kill_at and now >= run.kill_at and run.running:
                    run.kill_at = 0.0
                    self.signal(run, signal.SIGKILL)
                if run.restart_at and now >= run.restart_at:
                    run.restart_at = 0.0
                    if not self.stopping and not run.no_restart:
                        run.st["restarts"] += 1
                        self.start(run)

    def read_wakeups(self) -> list[int]:
        """The signals delivered since the last read, one entry each (two ^C are two)."""
        sigs: list[int] = []
        while True:
            try:
                data = os.read(self.wake_r, 512)
            except BlockingIOError:
                break
            if not data:
                break
            sigs += data
        return sigs

    def on_signals(self) -> None:
        new = self.read_wakeups()
        sigs = set(new) | set(self.pending_sigs)
        self.pending_sigs = []
        self.interrupts += new.count(signal.SIGINT)
        self.reap()  # SIGCHLD, or a SIGCHLD byte lost to a full pipe: reaping is cheap
        if signal.SIGTERM in sigs:
            self.begin_stop()
        if signal.SIGINT in sigs:  # ^C at a foreground `rkt run`: stop; twice: kill
            if self.foreground:
                msg = (f"stopping pod {self.uuid} (Ctrl-C again to kill)" if self.interrupts == 1
                       else f"killing pod {self.uuid}")
                # on a terminal, after its echoed ^C
                _echo(2, f"{chr(10) if os.isatty(2) else ''}rkt: {msg}\n".encode())
            self.begin_stop(default_force=self.interrupts > 1)
        if signal.SIGHUP in sigs:
            self.reconcile()

    def setup_signals(self) -> None:
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wake_r = r
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, _noop)
            signal.siginterrupt(sig, False)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        self.poll.register(r, select.POLLIN)

    def run(self) -> int:
        procs.set_child_subreaper()
        self.setup_signals()
        self.open_attach()
        self.save_pod_state(monitor_pid=os.getpid(), monitor_starttime=procs.starttime(os.getpid()),
                            started_at=time.time(), stage1=self.manifest.get("stage1", "default"),
                            ready=False)
        try:
            self.start_pod()
            self.loop()
        finally:
            self.finish()
        return self.exit_code()

    def open_attach(self) -> None:
        from .attach import AttachHub

        try:
            self.attach = AttachHub(self.poll, self.uuid,
                                    lambda name: name in self.runs and self.runs[name].running)
        except OSError as e:     # the pod runs; only attaching to it is not possible
            _echo(2, f"rkt: pod {self.uuid}: attach is not available: {e}\n".encode())
            return
        self.pump.tap = self.attach.output

    def start_pod(self) -> None:
        setup_error = ""
        try:
            res = self.action("setup")
            # top-level facts of the pod (netns_path, networks) vs. the stage1's own state
            self.pod_state.update(res.pop("_pod_state", None) or {})
            self.stage1_state.update(res)
        except ActionError as e:
            setup_error = str(e)
        self.save_pod_state(infra_pid=self.stage1_state.get("infra_pid", 0),
                            **({"setup_error": setup_error} if setup_error else {}))
        for app in self.manifest.get("apps", []):
            if self.pending_sigs:
                self.on_signals()   # a stop asked for while an app was starting: no more
            run = self.add_app(app)
            if setup_error:
                run.st.update(state=EXITED, reason=START_ERROR, message=setup_error,
                              exit_code=START_ERROR_CODE, finished_at=time.time())
                self.save_app_state(run)
                continue
            if run.st["state"] == EXITED or self.stopping:
                continue  # a mutable pod's app that already ran
            if self.manifest.get("sandbox") and not requests.app_start(self.app_dir(run.name)):
                continue
            ok = self.start(run)
            requests.done(self.app_dir(run.name), "start")
            if not ok and not self.manifest.get("sandbox"):
                self.begin_stop()  # one app failed to start: end the pod cleanly
        if setup_error:
            self.stopping = True
            self.setup_error = setup_error
            if self.foreground:
                _echo(2, f"rkt: pod {self.uuid}: {setup_error}\n".encode())
        self.save_pod_state(ready=not setup_error)

    def exit_code(self) -> int:
        return exits.pod_exit_code(bool(self.setup_error),
                                   [(r.st["finished_at"], r.st["exit_code"])
                                    for r in self.runs.values()])

    def finish(self) -> None:
        """Kill what is left, undo everything, move the pod to exited-garbage."""
        for run in self.runs.values():
            if run.running:
                self.signal(run, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(r.running for r in self.runs.values()) and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.01)
        self.pump.close_all()
        if self.attach is not None:
            self.attach.close()
            self.attach = None
            self.pump.tap = None
        for run in self.runs.values():
            if run.log_fd >= 0:
                os.close(run.log_fd)
                run.log_fd = -1
        try:
            for problem in self.action("teardown"):
                _echo(2, f"rkt: cleanup: {problem}\n".encode())
        except ActionError as e:
            _echo(2, f"rkt: cleanup: {e}\n".encode())
        self.close_helper()  # it holds the pod's lock too: gone before the pod leaves `run`
        self.reap()  # the infra process (and any orphan) was ours as subreaper: no zombies
        self.save_pod_state(durable=True, finished_at=time.time(), exit_code=self.exit_code())
        # the move is one rename under the lock we hold (Pod.move without its imports), and
        # under the apps lock: a `rkt app` command that saw the pod running finishes first
        try:
            apps_fd = os.open(os.path.join(self.dir, APPS_LOCK),
                              os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fcntl.flock(apps_fd, fcntl.LOCK_EX)
        except OSError:
            apps_fd = -1
        os.makedirs(os.path.join(self.pods, EXITED_GARBAGE), exist_ok=True)
        os.rename(self.dir, state_path(self.pods, EXITED_GARBAGE, self.uuid))  # as Pod.move
        if apps_fd >= 0:
            os.close(apps_fd)


def _noop(signum, frame) -> None:
    pass  # the wakeup fd carries the signal number to the loop


def _process_of(handle) -> int:
    """The pid to reap for an app handle (stage1.base.AppHandle as JSON). Host processes are
    the only kind this monitor watches; another kind (a VM guest agent's) is refused here
    until the monitor learns to wait on it."""
    if isinstance(handle, dict) and handle.get("kind") == "process":
        return int(handle.get("pid") or 0)
    raise ActionError(f"stage1 start: cannot watch an app of kind "
                      f"{handle.get('kind') if isinstance(handle, dict) else handle!r}")


def parse_args(argv: list[str]) -> dict:
    """A hand-rolled parser: argparse alone would add a megabyte to every pod."""
    opts = {"data_dir": None, "config_dir": None, "uuid": None, "lock_fd": None}
    it = iter(argv)
    for a in it:
        key, eq, val = a.partition("=")
        name = key.lstrip("-").replace("-", "_")
        if name in opts:
            opts[name] = val if eq else next(it, None)
        else:
            raise SystemExit(f"rkt monitor: unknown argument {a!r}")
    missing = [k for k in ("data_dir", "config_dir", "uuid", "lock_fd") if opts[k] is None]
    if missing:
        raise SystemExit(f"rkt monitor: missing --{missing[0].replace('_', '-')}")
    return opts


def main(argv: list[str] | None = None) -> int:
    o = parse_args(sys.argv[1:] if argv is None else argv)
    lock_fd = int(o["lock_fd"])
    os.set_inheritable(lock_fd, False)  # apps must never hold the pod's lock
    try:
        mon = Monitor(os.path.abspath(o["data_dir"]), os.path.abspath(o["config_dir"]),
                      o["uuid"], lock_fd, False)
    except (OSError, ValueError) as e:
        print(f"rkt monitor: pod {o['uuid']}: {e}", file=sys.stderr)
        return 1
    return mon.run()


def run_foreground(data_dir: str, config_dir: str, uuid: str, lock_fd: int) -> int:
    """Be the monitor of a pod in `run` whose lock `lock_fd` holds, in this process, with the
    user's stdio; returns the pod's exit code once it has exited and been cleaned up."""
    os.set_inheritable(lock_fd, False)
    try:
        mon = Monitor(os.path.abspath(data_dir), os.path.abspath(config_dir), uuid, lock_fd, True)
    except (OSError, ValueError) as e:
        print(f"rkt: pod {uuid}: {e}", file=sys.stderr)
        return 1
    return mon.run()


if __name__ == "__main__":
    sys.exit(main())
