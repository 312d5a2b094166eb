"""Clock skew for one instance: the environment that runs it with its wall clock offset.

libfaketime, preloaded into a process (``LD_PRELOAD``), answers the process's own
``time()``/``clock_gettime(CLOCK_REALTIME)`` with the real time plus ``FAKETIME``'s
offset; every process the instance forks (a Celery worker's pool children) inherits
it. Only the wall clock moves: ``FAKETIME_DONT_FAKE_MONOTONIC`` keeps the monotonic
clock real, so event loops, timeouts and sleeps behave as before — what a host whose
NTP drifted looks like. Nothing else is skewed: the ledger's timestamps come from the
ledger Redis's own ``TIME``, and redis-server is never started with this environment.

The library comes from the ``libfaketime`` wheel (which ships ``libfaketime.so.1``),
else Debian's ``faketime`` package, else ``SCALELAB_FAKETIME_LIB``.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

from chaos.platform import PlatformError

MAX_SKEW = 3600.0  # seconds either way: beyond this it is a wrong clock, not a skew
LIBRARY_ENV = "SCALELAB_FAKETIME_LIB"
_DEBIAN = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
           "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
           "/usr/lib/faketime/libfaketime.so.1")


def check_skew(seconds: float) -> float:
    """The offset if it is one the lab applies; ValueError (one line) otherwise."""
    if not math.isfinite(seconds) or abs(seconds) > MAX_SKEW:
        raise ValueError(f"a clock skew must be within ±{MAX_SKEW:g} s, not {seconds:g}")
    return seconds


def faketime_library() -> str:
    """Path of ``libfaketime.so.1``; PlatformError naming how to get one if none is found."""
    chosen = os.environ.get(LIBRARY_ENV)
    if chosen:
        if not Path(chosen).is_file():
            raise PlatformError(f"{LIBRARY_ENV}={chosen} is not a file")
        return chosen
    spec = importlib.util.find_spec("libfaketime")  # located, not imported
    for root in (spec.submodule_search_locations or []) if spec else []:
        shipped = Path(root) / "vendor" / "libfaketime" / "src" / "libfaketime.so.1"
        if shipped.is_file():
            return str(shipped)
    for path in _DEBIAN:
        if Path(path).is_file():
            return path
    raise PlatformError("no libfaketime for a clock skew: pip install libfaketime "
                        "(or apt install faketime)")


def faketime_offset(seconds: float) -> str:
    """``FAKETIME``'s relative form: ``+2.000`` is two seconds ahead (no unit: seconds)."""
    return f"{check_skew(seconds):+.3f}"


def skew_environment(seconds: float, inherited: str = "") -> dict[str, str]:
    """Environment variables that run one instance ``seconds`` ahead (negative: behind).

    ``inherited``: an ``LD_PRELOAD`` the instance already has, kept after libfaketime.
    """
    offset = faketime_offset(seconds)
    preload = faketime_library() + (f":{inherited}" if inherited else "")
    return {
        "LD_PRELOAD": preload,
        "FAKETIME": offset,
        # Only the wall clock: monotonic time drives timeouts and the event loop.
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "DONT_FAKE_MONOTONIC": "1",  # the name libfaketime < 0.9.10 reads
        # A forked child (a pool process) keeps the parent's offset, never restarts it.
        "FAKETIME_DONT_RESET": "1",
        "NO_FAKE_STAT": "1",  # file times stay real (and start-up's many stat calls fast)
        "SCALELAB_CLOCK_SKEW": f"{seconds:g}",
    }
