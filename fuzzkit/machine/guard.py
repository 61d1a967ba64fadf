"""The run guard: an op that loops without yielding never reaches the scheduler, so the step
budget (I16) cannot see it. A CPU-time timer (``ITIMER_VIRTUAL``) raises :class:`OpHung` into
whatever Python code is running when a single run has used ``FUZZKIT_RUN_GUARD`` seconds of
CPU (default 10; 0 turns the guard off); the run reports it as a failure of the plugin whose
code was running.

CPU time rather than wall-clock time: libFuzzer owns ``SIGALRM`` (its ``-timeout``) in the
atheris worker, a loaded machine must not trip the guard, and an op that never yields spins.
The timer is armed per run with one ``setitimer`` call and disarmed with another (~1 µs of a
run's hundreds), and only in the main thread, where Python delivers signals.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

from fuzzkit.errors import ConfigError, OpHung


def _seconds() -> float:
    raw = os.environ.get("FUZZKIT_RUN_GUARD", "10")
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"FUZZKIT_RUN_GUARD: '{raw}' is not a number of seconds") from None
    if value < 0:
        raise ConfigError(f"FUZZKIT_RUN_GUARD: {raw} is negative (0 turns the guard off)")
    return value


SECONDS = _seconds()
_installed = False


def _expired(signum: int, frame: FrameType | None) -> None:
    raise OpHung(f"ran {SECONDS:g}s of CPU without yielding (FUZZKIT_RUN_GUARD)")


def arm() -> bool:
    """Start the guard for one run; true when armed (disarm it then)."""
    global _installed
    if SECONDS <= 0 or not hasattr(signal, "setitimer"):
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    if not _installed:
        signal.signal(signal.SIGVTALRM, _expired)
        _installed = True
    signal.setitimer(signal.ITIMER_VIRTUAL, SECONDS)
    return True


def disarm() -> None:
    signal.setitimer(signal.ITIMER_VIRTUAL, 0)
