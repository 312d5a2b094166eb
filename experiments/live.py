"""A run while it runs: its phase, its clock, its running counts, and its history so far.

The runner opens a ``Watch`` once the run's ledger is open. A thread of its own reads
the events appended since its last look (twice a second), appends them to the run
directory's ``events.jsonl`` (the browser draws a run in progress from it; the runner
rewrites the file whole when the run is stored) and counts, so far: executions, units
lost, units duplicated, and the faults fired with their targets. ``progress.json``
beside it holds the latest ``Status``. Every change is handed to the progress hook
(``experiments.progress`` draws it), and the phase it was in is what a run that is
interrupted records.

"Lost so far" is the checker's ``lost`` for units that started and were ended by a
fault, or that were acknowledged (or due) more than ``GRACE`` seconds ago and never
started: work that may still be recovered later, but that nothing is running now.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from chaos.nemesis import LedgerTail
from experiments.checker import Schedule, check
from services.history import Event, Kind, parse_scheduled
from services.ledger import Ledger

PROGRESS_JSON = "progress.json"
INTERRUPTED_JSON = "interrupted.json"  # in a ``.interrupted`` run directory: what stopped it
EVENTS = "events.jsonl"  # the same name the run store uses
GRACE = 2.0  # seconds an acknowledged unit may wait for its first start
PHASES = ("starting instances", "running", "draining", "stopping instances", "tearing down",
          "checking")


@dataclass(frozen=True)
class Status:
    """Where a run stands. ``elapsed``: seconds of its run window (at most ``total``);
    ``clock``: wall seconds since the run began, which keeps going in every phase."""

    phase: str
    elapsed: float = 0.0
    total: float = 0.0
    clock: float = 0.0
    executions: int = 0
    lost: int = 0
    duplicated: int = 0
    faults: tuple[str, ...] = ()  # "kill api-2", in the order fired
    events: int = 0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "faults": list(self.faults)}


Hook = Callable[[Status], None]


@dataclass
class _Counts:
    executions: int = 0
    lost: int = 0
    duplicated: int = 0
    faults: list[str] = field(default_factory=list)


class Watch:
    """Follows one run; ``phase`` moves it on, ``stop`` ends its thread."""

    def __init__(self, hook: Hook, total: float, directory: Path | None = None) -> None:
        self.hook, self.total, self.directory = hook, total, directory
        self.began = time.monotonic()
        self.window_opened: float | None = None  # monotonic, when the run window opened
        self.status = Status("starting instances", total=total)
        self.halted_in: Status | None = None  # where it stood when an exception stopped it
        self._tail: LedgerTail | None = None
        self._window_start = 0.0
        self._schedules: Sequence[Schedule] = ()
        self._late_after = 0.5
        self._first_due: dict[str, float] = {}
        self._counts = _Counts()
        self._checked = -1  # events counted at the last check
        self._lock = threading.RLock()  # the status, its file and the hook: one at a time
        self._reading = True
        self._stop = threading.Event()
        self._publish()
        # A thread of its own keeps the clock going (and, once the window opens, reads the
        # ledger) while the runner waits on a deploy, a drain or a teardown.
        self._thread = threading.Thread(target=self._loop, name="live-status", daemon=True)
        self._thread.start()

    # --- what the runner calls -------------------------------------------------------

    def follow(self, ledger: Ledger, run_id: str, window_start: float,
               schedules: Sequence[Schedule], late_after: float) -> None:
        """The run window opened: read the ledger from now on."""
        self._tail = LedgerTail(ledger, run_id)
        self._window_start, self._schedules, self._late_after = (window_start, schedules,
                                                                 late_after)
        self.window_opened = time.monotonic()
        if self.directory is not None:
            (self.directory / EVENTS).write_bytes(b"")
        self.phase("running")

    def phase(self, name: str) -> None:
        with self._lock:
            self.status = replace(self.status, phase=name)
        self._publish()

    def halted(self) -> None:
        """The run stops here (a signal, a failure): keep where it stood."""
        with self._lock:
            if self.halted_in is None:
                self.halted_in = self.status

    def stop_reading(self) -> None:
        """The ledger is about to go: what was counted stays (faults fired included)."""
        self._reading = False

    def stop(self) -> None:
        """End the thread: the run is over."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    # --- the thread ------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            if self._reading and self._tail is not None:
                try:
                    with self._lock:
                        self._read()
                except Exception:  # the ledger going away at teardown ends the counting only
                    self._reading = False
            self._publish()

    def _read(self) -> None:
        assert self._tail is not None
        new = self._tail.poll()
        if new and self.directory is not None:
            with open(self.directory / EVENTS, "ab") as f:  # whole lines, one write
                f.write("".join(json.dumps(e.to_json(), separators=(",", ":")) + "\n"
                                for e in new).encode())
        for e in new:
            if e.kind == Kind.FAULT:
                self._counts.faults.append(f"{e.mechanism} {e.instance}")
            elif e.kind == Kind.INTENT:
                self._first_due.setdefault(e.work_id, e.t)
        events = self._tail.events
        if len(events) != self._checked:
            self._checked = len(events)
            self._count(events)

    def _count(self, events: Sequence[Event]) -> None:
        now = max((e.t for e in events[-50:]), default=self._window_start)
        window = (self._window_start, max(self._window_start, now - self._late_after))
        r = check(events, window, self._schedules, self._late_after)
        lost = 0
        for u in r.units.values():
            if u.verdict != "lost":
                continue
            parsed = parse_scheduled(u.work_id)
            since = self._first_due.get(u.work_id, parsed[1] if parsed else now)
            if u.starts or now - since > GRACE:
                lost += 1
        self._counts.executions, self._counts.lost = r.executions, lost
        self._counts.duplicated = r.counts["duplicated"]

    def _publish(self) -> None:
        with self._lock:
            now = time.monotonic()
            opened = self.window_opened
            elapsed = min(self.total, now - opened) if opened is not None else 0.0
            c = self._counts
            self.status = replace(self.status, elapsed=elapsed, clock=now - self.began,
                                  executions=c.executions, lost=c.lost,
                                  duplicated=c.duplicated, faults=tuple(c.faults),
                                  events=len(self._tail.events) if self._tail else 0)
            if self.directory is not None:
                try:
                    partial = self.directory / (PROGRESS_JSON + ".new")
                    partial.write_text(json.dumps(self.status.to_json()), encoding="utf-8")
                    partial.replace(self.directory / PROGRESS_JSON)
                except OSError:
                    pass  # the directory is being renamed as the run ends
            self.hook(self.status)


def read_progress(directory: Path) -> dict[str, Any] | None:
    """A run in progress's latest ``Status`` as JSON, or None."""
    try:
        data = json.loads((directory / PROGRESS_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_events_so_far(path: Path) -> list[Event]:
    """The events of a run in progress: whole lines only (the last may be half written)."""
    from experiments.store import parse_event

    try:
        data = path.read_bytes()
    except OSError:
        return []
    lines = data.split(b"\n")[:-1]  # what follows the last newline is still being written
    return [parse_event(line.decode("utf-8"), f"{path}:{i}")
            for i, line in enumerate(lines, start=1) if line.strip()]
