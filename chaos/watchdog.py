"""The orphan watchdog: a tiny process that outlives the harness by a moment.

The local platform starts it first and tells it, over a pipe, every process group
it starts (``+PGID``) and ends (``-PGID``). When the pipe closes — the harness
exited normally, crashed, or was SIGKILLed — the watchdog SIGCONTs and SIGKILLs
every group it still knows, then exits. So no instance outlives the harness,
whatever kills the harness.

Run as ``python -m chaos.watchdog``; it reads its standard input.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys


def _kill_groups(groups: set[int]) -> None:
    for pgid in groups:
        for sig in (signal.SIGKILL, signal.SIGCONT):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)


def main() -> None:
    # Ctrl-C in the terminal reaches the harness's whole foreground group; the
    # watchdog must survive it to clean up after the harness.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin:
        line = line.strip()
        if line[:1] == "+":
            groups.add(int(line[1:]))
        elif line[:1] == "-":
            groups.discard(int(line[1:]))
    _kill_groups(groups)


if __name__ == "__main__":
    main()
