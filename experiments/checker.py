"""The checker: a pure function from a ledger history to a verdict per unit of work.

Verdicts follow Jepsen's total-queue checker:

- ok          acknowledged (or due) and finished exactly once
- lost        acknowledged (or due) and never finished
- duplicated  finished more than once (the extra executions are counted)
- recovered   interrupted by a fault, then finished once elsewhere
- unexpected  finished but never acknowledged or due
- in_doubt    started, never finished, and neither finished elsewhere nor ended by a
              fault: the run ended while it might still have finished (``:info``)

A unit is *due* when it is a scheduled tick whose fire time lies in the run window;
scheduled ticks fired outside the window belong to warm-up or drain and are ignored.
An execution is *interrupted* when its instance was killed, terminated or restarted
after the execution started and before it ended. This module imports no platform.
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from chaos.faults import ENDING
from services.history import Event, parse_scheduled, scheduled_work_id

VERDICTS = ("ok", "lost", "duplicated", "recovered", "unexpected", "in_doubt")
# Fault marks after which nothing running on the target instance can finish.
ENDING_FAULTS = ENDING


@dataclass(frozen=True)
class Schedule:
    """A periodic job whose fire times make units of work due: ``job@<fire time>``."""

    job: str
    interval: float
    epoch: float = 0.0  # the Unix epoch: the grid every scheduler of the lab fires on
    aligned: bool = True  # False: each replica fires at its own phase; any fire time counts

    def fire_times(self, start: float, end: float) -> list[float]:
        """Fire times in ``[start, end)``."""
        k = math.ceil(round((start - self.epoch) / self.interval, 9))
        times = []
        while (t := self.epoch + k * self.interval) < end:
            times.append(t)
            k += 1
        return times


@dataclass(slots=True)
class Unit:
    """What the history says about one unit of work."""

    work_id: str
    verdict: str
    finishes: int
    starts: int
    acknowledged: bool
    due: bool
    instances: tuple[str, ...] = ()  # where it finished
    lateness: float | None = None  # scheduled units: first start minus fire time


@dataclass
class Result:
    """The checker's output: per-unit verdicts and the totals the summary reports."""

    units: dict[str, Unit]
    counts: dict[str, int]
    expected: int
    executions: int
    extra_executions: int
    refused: int
    faults: int
    ignored: int
    late: int
    marks: tuple[Event, ...] = ()  # the history's fault marks, in order (what judges read)

    def to_json(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "executions": self.executions,
            "counts": dict(self.counts),
            "extra_executions": self.extra_executions,
            "refused": self.refused,
            "ignored": self.ignored,
            "late": self.late,
        }


class _Acc:
    """What the history says of one work_id, gathered in one pass (a hot path)."""

    __slots__ = ("acknowledged", "ended", "finishes", "starts")

    def __init__(self) -> None:
        self.acknowledged = False
        self.starts: dict[str, Event] = {}  # exec_id -> start
        self.ended: set[str] = set()  # exec_ids with finish or refused
        self.finishes: list[Event] = []


class _Endings:
    """When each instance was last ended by a fault, indexed once per check."""

    def __init__(self, faults: Sequence[Event]) -> None:
        self.last: dict[str, float] = {}
        for f in faults:
            if f.mechanism in ENDING_FAULTS:
                # A rolling restart is recorded when it begins; the instance ends later,
                # so whatever it left unfinished was ended by it whenever it started.
                t = math.inf if f.mechanism == "restart" else f.t
                self.last[f.instance] = max(t, self.last.get(f.instance, -math.inf))

    def interrupted(self, start: Event) -> bool:
        """Was the instance running this execution ended after it started?"""
        return self.last.get(start.instance, -math.inf) >= start.t


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic GC while a history is built or checked: it allocates millions of
    acyclic objects, and each full collection walks them all (quadratic in effect)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def check(
    history: Iterable[Event],
    window: tuple[float, float] = (-math.inf, math.inf),
    schedules: Sequence[Schedule] = (),
    late_after: float = 0.5,
) -> Result:
    """Judge a history. ``window`` is the run's ``[start, end)`` on the ledger clock."""
    with paused_gc():
        return _check(history, window, schedules, late_after)


def _check(
    history: Iterable[Event],
    window: tuple[float, float],
    schedules: Sequence[Schedule],
    late_after: float,
) -> Result:
    acc: dict[str, _Acc] = {}
    faults: list[Event] = []
    refused = 0
    start_t, end_t = window
    get = acc.get
    for e in history:
        kind = e.kind
        if kind == "fault":
            faults.append(e)
            continue
        a = get(e.work_id)
        if a is None:
            a = acc[e.work_id] = _Acc()
        if kind == "intent":
            a.acknowledged = True
        elif kind == "start":
            a.starts[e.exec_id or f"{e.instance}:{e.pid}:{len(a.starts)}"] = e
        elif kind == "finish":
            a.finishes.append(e)
            a.ended.add(e.exec_id)
        elif kind == "refused":
            refused += 1
            a.ended.add(e.exec_id)

    scheduled_jobs = {s.job: s for s in schedules}
    due: set[str] = set()
    for s in schedules:
        if s.aligned:
            due.update(scheduled_work_id(s.job, t) for t in s.fire_times(start_t, end_t))
    for work_id in acc:  # unaligned schedules: whatever fired inside the window was due
        parsed = parse_scheduled(work_id)
        if (parsed and parsed[0] in scheduled_jobs and not scheduled_jobs[parsed[0]].aligned
                and start_t <= parsed[1] < end_t):
            due.add(work_id)

    endings = _Endings(faults)
    units: dict[str, Unit] = {}
    ignored = 0
    empty = _Acc()
    for work_id in [*acc, *(due - acc.keys())]:
        a = acc.get(work_id, empty)
        parsed = parse_scheduled(work_id)
        is_due = work_id in due
        if (parsed is not None and parsed[0] in scheduled_jobs and not is_due
                and not a.acknowledged):
            ignored += 1  # a tick of warm-up or drain, not part of the run
            continue
        lateness = None
        if parsed is not None and a.starts:
            lateness = min(s.t for s in a.starts.values()) - parsed[1]
        verdict = _verdict(a, is_due, endings)
        if verdict is None:
            ignored += 1  # neither expected nor effective: e.g. only refused executions
            continue
        units[work_id] = Unit(
            work_id=work_id,
            verdict=verdict,
            finishes=len(a.finishes),
            starts=len(a.starts),
            acknowledged=a.acknowledged,
            due=is_due,
            instances=tuple(f.instance for f in a.finishes),
            lateness=lateness,
        )

    counts = dict.fromkeys(VERDICTS, 0)
    for u in units.values():
        counts[u.verdict] += 1
    return Result(
        units=units,
        counts=counts,
        expected=sum(1 for u in units.values() if u.acknowledged or u.due),
        executions=sum(u.finishes for u in units.values()),
        extra_executions=sum(max(0, u.finishes - 1) for u in units.values()),
        refused=refused,
        faults=len(faults),
        ignored=ignored,
        late=sum(1 for u in units.values()
                 if u.due and u.lateness is not None and u.lateness > late_after),
        marks=tuple(faults),
    )


def _verdict(a: _Acc, due: bool, endings: _Endings) -> str | None:
    finishes = len(a.finishes)
    if finishes >= 2:
        return "duplicated"
    open_starts = [a.starts[x] for x in a.starts.keys() - a.ended] if a.starts else []
    interrupted = [s for s in open_starts if endings.interrupted(s)]
    unresolved = len(open_starts) - len(interrupted)
    if not (a.acknowledged or due):
        if finishes:
            return "unexpected"
        return "in_doubt" if unresolved else None
    if finishes == 1:
        if unresolved:
            return "in_doubt"  # another execution was still running: it may finish twice
        return "recovered" if interrupted else "ok"
    if unresolved:
        return "in_doubt"
    return "lost"


def executions_by_component(events: Sequence[Event], result: Result) -> dict[str, int]:
    """Finished executions per component, from instance names (``api-3``, ``worker-1-abc``),
    of the units the checker judged (warm-up and drain ticks it ignored are left out)."""
    counts: dict[str, int] = {}
    for e in events:
        if e.kind == "finish" and e.work_id in result.units:
            component = e.instance.split("-", 1)[0]
            counts[component] = counts.get(component, 0) + 1
    return counts


# Events the harness writes itself: an intent names the replica that acknowledged the
# work, a fault mark its target, but neither was written by that instance.
WRITTEN_BY_HARNESS = frozenset({"intent", "fault"})


def ledger_integrity(events: list[Event], reported: dict[str, int]) -> dict[str, Any]:
    """Compare what each instance says it recorded with what the ledger holds from it.

    Instances report under their name (API) or ``<instance>:<pid>`` (a worker's pool
    process); each event counts against the writer that wrote it, so the harness's own
    events (intents, fault marks) count against no instance. An instance that was
    killed never reports and is not compared.
    """
    held: dict[str, int] = {}
    for e in events:
        if e.kind in WRITTEN_BY_HARNESS:
            continue
        for key in (e.instance, f"{e.instance}:{e.pid}"):
            if key in reported:
                held[key] = held.get(key, 0) + 1
    missing = {k: n - held.get(k, 0) for k, n in reported.items() if n != held.get(k, 0)}
    return {"reporting": len(reported), "reported_events": sum(reported.values()),
            "found_in_ledger": sum(held.values()), "mismatched": missing,
            "intact": not missing}
