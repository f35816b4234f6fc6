"""Signal names as users and image configs write them (SIGTERM, TERM, term, 15, SIGRTMIN+3),
checked once here for the CLI's --stop-signal and an image's StopSignal alike."""

from __future__ import annotations

import re
import signal

MAX_SIGNAL = 64              # Linux: 1..SIGRTMAX


def canonical(value: str) -> str:
    """The form the monitor reads: the signal's name (SIGTERM) or, for real-time signals, its
    number. ValueError, saying why, for anything that is not a signal."""
    v = value.strip().upper()
    num: int | None = None
    if v.isdigit():
        num = int(v)
        if not 1 <= num <= MAX_SIGNAL:
            raise ValueError(f"signal numbers are 1..{MAX_SIGNAL}")
    else:
        name = v if v.startswith("SIG") else "SIG" + v
        m = re.match(r"^SIGRTM(IN|AX)([+-][0-9]+)?$", name)
        if m:
            base = signal.SIGRTMIN if m.group(1) == "IN" else signal.SIGRTMAX
            num = int(base) + int(m.group(2) or 0)
            if not int(signal.SIGRTMIN) <= num <= int(signal.SIGRTMAX):
                raise ValueError("not a real-time signal")
        else:
            sig = getattr(signal.Signals, name, None) if re.match(r"^SIG[A-Z0-9]+$", name) \
                else None
            if not isinstance(sig, signal.Signals):
                raise ValueError(f"unknown signal (use a name like SIGTERM or TERM, or a "
                                 f"number 1..{MAX_SIGNAL})")
            return sig.name
    try:
        return signal.Signals(num).name
    except ValueError:
        return str(num)


# Signals whose default action ends the process (terminate or core dump).
FATAL_BY_DEFAULT = frozenset(int(getattr(signal, n)) for n in (
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGUSR1",
    "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGXCPU", "SIGXFSZ",
    "SIGVTALRM", "SIGPROF", "SIGIO", "SIGPWR", "SIGSYS") if hasattr(signal, n))

DIES, DROPPED, HANDLED = "dies", "dropped", "handled"


def fate(pid: int, sig: int) -> str:
    """What `sig` sent to `pid` will do, from its signal dispositions: DIES (it neither catches
    nor ignores a signal that kills by default), DROPPED (the same, but it is the init of its
    own PID namespace, so the kernel drops the signal where any other process would die of
    it), HANDLED (it catches or ignores it: it may exit with any status, or not at all), or ""
    when that cannot be told (gone, SIGKILL's certain death aside)."""
    if sig == signal.SIGKILL:
        return DIES
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        bit = 1 << (sig - 1)
        handled = int(fields["SigCgt"].strip(), 16) | int(fields["SigIgn"].strip(), 16)
    except (OSError, KeyError, ValueError):
        return ""
    if handled & bit:
        return HANDLED
    if not (sig in FATAL_BY_DEFAULT or signal.SIGRTMIN <= sig <= signal.SIGRTMAX):
        return HANDLED   # stops, continues or is ignored by default: no death to expect
    nspid = fields.get("NSpid", "").split()
    return DROPPED if len(nspid) >= 2 and nspid[-1] == "1" else DIES


def number(name: str) -> int:
    """The number of a signal in the canonical form (a name, or a number); SIGTERM if junk."""
    name = (name or "SIGTERM").upper()
    if name.isdigit():
        return int(name)
    try:
        return int(getattr(signal, name if name.startswith("SIG") else "SIG" + name))
    except AttributeError:
        return int(signal.SIGTERM)
