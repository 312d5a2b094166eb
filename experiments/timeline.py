"""The timeline of a run as data: one lane per instance, one bar per execution, faults on top.

Both pictures of a run draw this one model: the PNG (``experiments.plot``, matplotlib)
and the browser's SVG (``experiments.web.timeline``). An execution is a ``start``
paired with its ``finish`` (or ``refused``) by exec_id, coloured by what happened to
its unit of work: ran once, duplicated (every copy), recovered, refused by a guard,
unexpected. One that never ended is drawn to the fault that ended its instance
(interrupted) or to the end of the history (in doubt, or still running while the run is
in progress). Lost work is a cross where it was accepted (its intent) or due (its fire
time). Faults on one instance mark its lane (a pause is shaded until the resume);
faults on a component (scale, broker outage) cross every lane. An instance that came
after one of its component was ended is named as the replacement it is.

Concurrent executions on one instance share its lane in sub-rows (``subrows``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from experiments.checker import ENDING_FAULTS, Result
from services.history import Event, Kind, parse_scheduled

# Execution categories: legend text and colour (distinguishable in colour-blind palettes).
# The stylesheet of the browser carries the same colours (class ``cat-<key>``).
CATEGORIES: dict[str, tuple[str, str]] = {
    "ok": ("ran once", "#4C72B0"),
    "duplicated": ("duplicated (every copy)", "#E08A1E"),
    "recovered": ("recovered elsewhere", "#55A868"),
    "interrupted": ("interrupted by a fault", "#C44E52"),
    "refused": ("refused by a guard", "#8172B3"),
    "unexpected": ("never acknowledged nor due", "#937860"),
    "in_doubt": ("in doubt (run ended)", "#9A9A9A"),
    "outside": ("warm-up or drain (not judged)", "#CFCFCF"),
    "pending": ("finished (run in progress, not judged yet)", "#6F8FBF"),
    "running": ("running", "#B8C7DD"),
}
LOST_COLOUR = "#B2182B"
NEVER_RAN = "(never ran)"  # the lane of due units no instance started
LANE_FAULT = re.compile(r"-\d+$")  # an instance name (api-2), not a component (worker)
_NUMBERED = re.compile(r"^(?P<component>.+?)-(?P<n>\d+)$")


@dataclass(frozen=True)
class Bar:
    """One execution; times in seconds since the run window opened (ledger clock)."""

    lane: str
    work_id: str
    start: float
    end: float
    category: str
    ended_by: str  # finish | refused | fault | open | (a finish or refusal with no start:) lone
    verdict: str  # the unit's verdict, "" when not judged


@dataclass(frozen=True)
class FaultMark:
    lane: str | None  # None: the fault hit a component, drawn across every lane
    action: str
    target: str
    start: float
    end: float | None  # spans: a pause until its resume, a broker outage until it is back
    note: str


@dataclass
class Timeline:
    lanes: list[str]
    bars: list[Bar]
    lost: list[tuple[str, float, str]]  # lane, time, work_id
    faults: list[FaultMark]
    window_end: float  # where the run window closed; after it, the drain
    t_end: float  # the last event, or the window's end if later
    replacing: dict[str, str]  # lane -> the instance it replaced (or "added")

    @property
    def x_low(self) -> float:
        return min([0.0, *(b.start for b in self.bars), *(t for _, t, _ in self.lost)])

    def by_work_id(self) -> dict[str, list[Bar]]:
        out: dict[str, list[Bar]] = defaultdict(list)
        for b in self.bars:
            out[b.work_id].append(b)
        for bars in out.values():
            bars.sort(key=lambda b: b.start)
        return out

    def lane_label(self, lane: str) -> str:
        """``worker-3 (for worker-1)``: a lane as its picture names it."""
        was = self.replacing.get(lane)
        if was is None:
            return lane
        return f"{lane} (added)" if was == "added" else f"{lane} (for {was})"


def natural(name: str) -> tuple[Any, ...]:
    """``api-2`` before ``api-10``."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name))


def build(events: Sequence[Event], result: Result | None,
          window: tuple[float, float] | None,
          topology: Mapping[str, int] | None = None) -> Timeline:
    """The timeline of a history; ``result`` None: the run is in progress, nothing judged.
    ``topology``: the replicas each component started with (to name replacements)."""
    times = [e.t for e in events]
    t0 = window[0] if window else min(times, default=0.0)
    t1 = window[1] if window else max(times, default=t0)
    t_end = max([t1, *times])
    faults = [e for e in events if e.kind == Kind.FAULT]
    bars = _executions(events, result, t0, t_end, faults)
    lost = _lost(events, result, t0)
    # Lanes hold something drawn: an intent alone (the harness's own) is not a lane.
    instances = {b.lane for b in bars} | {lane for lane, _, _ in lost}
    on_lane = {f.instance for f in faults
               if LANE_FAULT.search(f.instance) or f.instance in instances}
    instances |= on_lane
    lanes = sorted(instances - {NEVER_RAN}, key=natural)
    if NEVER_RAN in instances:
        lanes.append(NEVER_RAN)
    return Timeline(lanes, bars, lost, _fault_marks(faults, on_lane, t0, t_end),
                    t1 - t0, t_end - t0, _replacements(events, faults, lanes, topology or {}))


def _executions(events: Sequence[Event], result: Result | None, t0: float, t_end: float,
                faults: Sequence[Event]) -> list[Bar]:
    def verdict(work_id: str) -> str:
        if result is None:
            return ""
        unit = result.units.get(work_id)
        return unit.verdict if unit is not None else "outside"  # warm-up or drain

    def category(work_id: str, ended: str) -> str:
        if ended == Kind.REFUSED:
            return "refused"
        if result is None:
            return "pending"
        v = verdict(work_id)
        return v if v in CATEGORIES else "ok"

    starts: dict[str, Event] = {}
    ends: dict[str, Event] = {}
    lone: list[Event] = []  # finishes whose start predates the history
    for e in events:
        if e.kind == Kind.START:
            starts[e.exec_id or f"{e.instance}:{e.pid}:{e.work_id}:{e.t}"] = e
        elif e.kind in (Kind.FINISH, Kind.REFUSED):
            if e.exec_id and e.exec_id not in ends:
                ends[e.exec_id] = e
            else:
                lone.append(e)
    ending: dict[str, list[float]] = defaultdict(list)
    for f in faults:
        if f.mechanism in ENDING_FAULTS:
            ending[f.instance].append(f.t)

    bars: list[Bar] = []
    for exec_id, s in starts.items():
        end = ends.get(exec_id)
        if end is not None:
            bars.append(Bar(s.instance, s.work_id, s.t - t0, end.t - t0,
                            category(s.work_id, end.kind), str(end.kind), verdict(s.work_id)))
            continue
        struck = [t for t in ending.get(s.instance, ()) if t >= s.t]
        if struck:
            bars.append(Bar(s.instance, s.work_id, s.t - t0, min(struck) - t0, "interrupted",
                            "fault", verdict(s.work_id)))
        else:
            bars.append(Bar(s.instance, s.work_id, s.t - t0, t_end - t0,
                            "running" if result is None else "in_doubt", "open",
                            verdict(s.work_id)))
    for e in (*lone, *(e for x, e in ends.items() if x not in starts)):
        bars.append(Bar(e.instance, e.work_id, e.t - t0, e.t - t0, category(e.work_id, e.kind),
                        str(e.kind), verdict(e.work_id)))
    return bars


def _lost(events: Sequence[Event], result: Result | None,
          t0: float) -> list[tuple[str, float, str]]:
    if result is None:
        return []
    intents: dict[str, Event] = {}
    first_start: dict[str, Event] = {}
    for e in events:
        if e.kind == Kind.INTENT:
            intents.setdefault(e.work_id, e)
        elif e.kind == Kind.START:
            first_start.setdefault(e.work_id, e)
    marks = []
    for work_id, unit in result.units.items():
        if unit.verdict != "lost":
            continue
        intent, started = intents.get(work_id), first_start.get(work_id)
        parsed = parse_scheduled(work_id)
        if intent is not None:
            marks.append((intent.instance, intent.t - t0, work_id))
        elif parsed is not None:
            marks.append((started.instance if started else NEVER_RAN, parsed[1] - t0, work_id))
        elif started is not None:
            marks.append((started.instance, started.t - t0, work_id))
    return marks


def _fault_marks(faults: Sequence[Event], on_lane: set[str], t0: float,
                 t_end: float) -> list[FaultMark]:
    marks: list[FaultMark] = []
    paused: dict[str, Event] = {}
    outage: Event | None = None
    for f in sorted(faults, key=lambda e: e.t):
        action, x = f.mechanism, f.t - t0
        inflight = f.detail.get("inflight")
        note = f"{inflight} running" if inflight is not None else ""
        if f.instance in on_lane:
            if action == "pause":
                paused[f.instance] = f
            elif action == "resume" and f.instance in paused:
                p = paused.pop(f.instance)
                marks.append(FaultMark(f.instance, "pause", f.instance, p.t - t0, x, ""))
            else:
                marks.append(FaultMark(f.instance, action, f.instance, x, None, note))
        elif action == "broker-outage":
            outage = f
        elif action == "broker-back" and outage is not None:
            marks.append(FaultMark(None, "broker-outage", outage.instance, outage.t - t0, x, ""))
            outage = None
        else:
            replicas = f.detail.get("replicas")
            marks.append(FaultMark(None, action, f.instance, x, None,
                                   f"→ {replicas}" if replicas is not None else note))
    for instance, p in paused.items():  # never resumed within the history
        marks.append(FaultMark(instance, "pause", instance, p.t - t0, t_end - t0, "not resumed"))
    if outage is not None:
        marks.append(FaultMark(None, "broker-outage", outage.instance, outage.t - t0,
                               t_end - t0, "not back"))
    return marks


def _replacements(events: Sequence[Event], faults: Sequence[Event], lanes: Sequence[str],
                  topology: Mapping[str, int]) -> dict[str, str]:
    """Instances numbered past their component's starting replicas: each the replacement
    of the earliest instance of its component ended before it first appeared, else added
    (a scale-up). Instances keep their names across a restart in place."""
    first_seen: dict[str, float] = {}
    for e in events:
        first_seen.setdefault(e.instance, e.t)
    ended: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for f in sorted(faults, key=lambda e: e.t):
        m = _NUMBERED.match(f.instance)
        if m and f.mechanism in ENDING_FAULTS:
            ended[m["component"]].append((f.t, f.instance))
    out: dict[str, str] = {}
    for lane in sorted(lanes, key=lambda x: first_seen.get(x, 0.0)):
        m = _NUMBERED.match(lane)
        if m is None or m["component"] not in topology:
            continue
        if int(m["n"]) <= topology[m["component"]]:
            continue
        gone = ended[m["component"]]
        earlier = next((i for i, (t, name) in enumerate(gone)
                        if t <= first_seen.get(lane, t) and name != lane), None)
        out[lane] = gone.pop(earlier)[1] if earlier is not None else "added"
    return out


class Span(Protocol):
    """An execution as a bar: its lane and its extent (read-only)."""

    @property
    def lane(self) -> str: ...

    @property
    def start(self) -> float: ...

    @property
    def end(self) -> float: ...


def subrows(bars: Sequence[Span], most: int) -> dict[int, tuple[int, int]]:
    """Index of each bar -> (sub-row, sub-rows in its lane); at most ``most`` sub-rows."""
    by_lane: dict[str, list[int]] = defaultdict(list)
    for i, b in enumerate(bars):
        by_lane[b.lane].append(i)
    placed: dict[int, tuple[int, int]] = {}
    for indices in by_lane.values():
        indices.sort(key=lambda i: bars[i].start)
        row_ends: list[float] = []
        rows: dict[int, int] = {}
        for i in indices:
            for r, end in enumerate(row_ends):
                if end <= bars[i].start:
                    row_ends[r] = bars[i].end
                    rows[i] = r
                    break
            else:
                rows[i] = len(row_ends)
                row_ends.append(bars[i].end)
        n = min(len(row_ends), most)
        for i, r in rows.items():
            placed[i] = (r % n, n)
    return placed
