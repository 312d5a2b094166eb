"""What the CLI shows while a run runs, from the ``Status`` the run's ``Watch`` hands it.

On a terminal, two lines redrawn four times a second, never wider than the terminal
(80 columns fit): the run, its phase, the run window's bar and a clock that keeps going
through the drain, the check and the teardown; then the running counts — executions,
lost so far, duplicated so far (in the warning colour once above 0) and the faults fired
with their targets. Not a terminal (CI logs, pipes): one line per phase, and one every
``EVERY`` seconds within a long phase (a start, for ``QUIET_START`` seconds, says nothing:
a start that fails stays one line of error). With
``--json`` nothing is drawn, so machine output is never interleaved with it.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from experiments.live import Status

EVERY = 10.0  # seconds between two lines within one phase, when not on a terminal
# Piped, a start says nothing until the run window opens or this many seconds pass: a
# start that fails (no redis-server, a port in use) stays one line of error.
QUIET_START = 30.0
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def faults_said(status: Status, most: int = 3) -> str:
    if not status.faults:
        return "faults 0"
    shown = ", ".join(status.faults[-most:])
    more = "…, " if len(status.faults) > most else ""
    return f"faults {len(status.faults)} ({more}{shown})"


def counts_said(status: Status) -> str:
    return (f"executions {status.executions} · lost {status.lost} · "
            f"duplicated {status.duplicated} · {faults_said(status)}")


class _Hook:
    """Records the phases shown (tests read them) and the latest status."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.phases: list[str] = []
        self.status: Status | None = None
        self._lock = threading.Lock()

    def _seen(self, status: Status) -> bool:
        """Keep ``status``; True when it starts a new phase."""
        self.status = status
        if not self.phases or self.phases[-1] != status.phase:
            self.phases.append(status.phase)
            return True
        return False

    def __call__(self, status: Status) -> None:
        raise NotImplementedError

    def close(self) -> None:
        return None

    def __enter__(self) -> _Hook:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class RunProgress(_Hook):
    """Two live lines on a terminal; use as a context manager."""

    def __init__(self, console: Console, label: str) -> None:
        super().__init__(label)
        self.console = console
        self.began = time.monotonic()
        self._live = Live(console=console, get_renderable=self.render, refresh_per_second=4,
                          transient=False, redirect_stdout=False, redirect_stderr=False)
        self._started = False

    def __call__(self, status: Status) -> None:
        with self._lock:
            new_phase = self._seen(status)
            if not self._started:
                self._started = True
                self._live.start()
            elif new_phase:  # drawn at once: a phase shorter than a refresh still shows
                self._live.refresh()

    def render(self) -> Group:
        status = self.status or Status("starting instances")
        width = max(40, self.console.width)
        elapsed = time.monotonic() - self.began  # the clock goes on in every phase
        spin = SPINNER[int(elapsed * 8) % len(SPINNER)]
        window = f"{status.elapsed:5.1f}/{status.total:g}s"
        bar_width = 10
        done = int(bar_width * status.elapsed / status.total) if status.total else 0
        bar = "━" * done + "╌" * (bar_width - done)
        tail = f" {status.phase:<18} {bar} {window} {clock(elapsed):>5}"
        label = self.label
        room = width - len(tail) - 3
        if len(label) > room:
            label = label[: max(1, room - 1)] + "…"
        first = Text.assemble((f"{spin} ", "cyan"), (label, "bold"), tail)
        second = Text("  ")
        second.append(f"executions {status.executions} · ")
        second.append(f"lost {status.lost}", "bold red" if status.lost else "")
        second.append(" · ")
        second.append(f"duplicated {status.duplicated}", "bold red" if status.duplicated else "")
        second.append(f" · {faults_said(status)}")
        for line in (first, second):
            line.no_wrap, line.overflow = True, "ellipsis"
            line.truncate(width, overflow="ellipsis")
        return Group(first, second)

    def close(self) -> None:
        if self._started:
            self._live.stop()


class PlainProgress(_Hook):
    """One line per phase, and one every ``EVERY`` seconds within a phase (not a terminal)."""

    def __init__(self, console: Console, label: str) -> None:
        super().__init__(label)
        self.console = console
        self._last = -EVERY
        self._said = False  # a line was printed

    def __call__(self, status: Status) -> None:
        with self._lock:
            new = self._seen(status)
            if not self._said and "running" not in self.phases and status.clock < QUIET_START:
                return
            if new or status.clock - self._last >= EVERY:
                self._last, self._said = status.clock, True
                window = (f" {status.elapsed:.1f}/{status.total:g} s"
                          if status.phase == "running" else "")
                self.console.print(f"[{clock(status.clock):>5}] {self.label}: {status.phase}"
                                   f"{window} · {counts_said(status)}",
                                   highlight=False, markup=False, soft_wrap=True)


class Silent(_Hook):
    """The hook when nothing may be drawn."""

    def __call__(self, status: Status) -> None:
        return None


def live(console: Console, label: str, quiet: bool = False) -> _Hook:
    """Live lines on a terminal, a line per phase when piped, nothing when asked to be quiet."""
    if quiet:
        return Silent(label)
    if console.is_terminal:
        return RunProgress(console, label)
    return PlainProgress(console, label)
