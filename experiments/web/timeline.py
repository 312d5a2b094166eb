"""A run's timeline as data and as SVG geometry: one lane per instance, a bar per execution.

The same reading of the history as the PNG plot: an execution is a ``start`` paired with
its ``finish`` (or ``refused``) by exec_id, coloured by its unit's verdict; one that never
ended is drawn to the fault that ended its instance (interrupted) or to the end of the
history (in doubt, or still running while the run is in progress). Lost work is marked
where it was accepted (its intent) or due (its fire time). Faults on one instance mark its
lane (a pause is shaded until the resume); faults on a component (scale, broker outage)
cross every lane. Concurrent executions on one instance share its lane in sub-rows.

Geometry is computed here so the template only places shapes; every text on them is
escaped by the template engine. Hover text is each shape's SVG ``<title>``.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from experiments.checker import ENDING_FAULTS, Result
from experiments.lanes import subrows
from services.history import Event, Kind, parse_scheduled

# Execution categories: legend text (colours live in the stylesheet, class ``cat-<key>``).
CATEGORIES: dict[str, str] = {
    "ok": "ran once",
    "duplicated": "duplicated (every copy)",
    "recovered": "recovered elsewhere",
    "interrupted": "interrupted by a fault",
    "refused": "refused by a guard",
    "unexpected": "never acknowledged nor due",
    "in_doubt": "in doubt (run ended)",
    "outside": "warm-up or drain (not judged)",
    "pending": "finished (run in progress, not judged yet)",
    "running": "running",
}
NEVER_RAN = "(never ran)"  # the lane of due units no instance started
MAX_SUBROWS = 6
MAX_BARS = 20_000  # beyond this an SVG grows past ~8 MB; the units table has the rest
LANE_FAULT = re.compile(r"-\d+$")  # an instance name (api-2), not a component (worker)


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

    @property
    def x_low(self) -> float:
        return min([0.0, *(b.start for b in self.bars), *(t for _, t, _ in self.lost)])

    def by_work_id(self) -> dict[str, list[Bar]]:
        out: dict[str, list[Bar]] = defaultdict(list)
        for b in self.bars:
            out[b.work_id].append(b)
        return out


def _natural(name: str) -> tuple[Any, ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name))


def build(events: Sequence[Event], result: Result | None,
          window: tuple[float, float] | None) -> Timeline:
    """The timeline of a history; ``result`` None: the run is in progress, nothing judged."""
    times = [e.t for e in events]
    t0 = window[0] if window else min(times, default=0.0)
    t1 = window[1] if window else max(times, default=t0)
    t_end = max([t1, *times])
    faults = [e for e in events if e.kind == Kind.FAULT]

    def verdict(work_id: str) -> str:
        if result is None:
            return ""
        unit = result.units.get(work_id)
        return unit.verdict if unit is not None else "outside"

    def category(work_id: str, ended: str) -> str:
        if ended == Kind.REFUSED:
            return "refused"
        if result is None:
            return "pending"
        v = verdict(work_id)
        return v if v in CATEGORIES else "ok"

    starts: dict[str, Event] = {}
    ends: dict[str, Event] = {}
    lone: list[Event] = []
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

    lost = _lost(events, result, t0)
    instances = {b.lane for b in bars} | {lane for lane, _, _ in lost}
    instances |= {e.instance for e in events if e.kind == Kind.INTENT}
    on_lane = {f.instance for f in faults
               if LANE_FAULT.search(f.instance) or f.instance in instances}
    instances |= on_lane
    lanes = sorted(instances - {NEVER_RAN}, key=_natural)
    if NEVER_RAN in instances:
        lanes.append(NEVER_RAN)
    return Timeline(lanes, bars, lost, _fault_marks(faults, on_lane, t0, t_end),
                    t1 - t0, t_end - t0)


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


# --- SVG geometry -----------------------------------------------------------------------

WIDTH = 1000.0
LABELS = 130.0  # the lane names' column
RIGHT = 16.0
TOP = 22.0  # room for component-wide fault labels
LANE = 24.0
AXIS = 30.0


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    css: str
    title: str
    data: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    css: str
    title: str


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    css: str = ""
    anchor: str = "start"


@dataclass
class Drawing:
    """Shapes of one timeline in a viewBox ``WIDTH`` wide, ``height`` high."""

    height: float
    lanes: list[Text]
    rules: list[Line]
    shades: list[Rect]
    bars: list[Rect]
    lost: list[Text]
    spans: list[Rect]  # faults with a duration
    lines: list[Line]  # faults at an instant
    labels: list[Text]
    ticks: list[Text]
    categories: list[tuple[str, str, int]]  # key, legend, how many bars
    left_out: int = 0  # executions not drawn (beyond MAX_BARS, the latest ones)


def _step(span: float) -> float:
    raw = span / 8
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def _s(t: float) -> str:
    return f"{t:+.3f} s"


def draw(t: Timeline, x_range: tuple[float, float] | None = None) -> Drawing:
    """Lay ``t`` out; ``x_range`` (seconds) puts several timelines on one time axis."""
    lo, hi = x_range or (t.x_low, t.t_end)
    span = max(hi - lo, 1e-3)
    lo, hi = lo - span * 0.01, hi + span * 0.01
    plot_w = WIDTH - LABELS - RIGHT

    def x(sec: float) -> float:
        return round(LABELS + (sec - lo) / (hi - lo) * plot_w, 2)

    lanes = t.lanes or ["(no executions)"]
    y = {lane: TOP + i * LANE for i, lane in enumerate(lanes)}
    bottom = TOP + len(lanes) * LANE
    d = Drawing(bottom + AXIS, [], [], [], [], [], [], [], [], [], [])
    d.lanes = [Text(LABELS - 6, y[lane] + LANE * 0.65, lane, "lane", "end") for lane in lanes]
    d.rules = [Line(LABELS, y[lane] + LANE, WIDTH - RIGHT, y[lane] + LANE, "rule", "")
               for lane in lanes[:-1]]
    d.shades = [Rect(x(lo), TOP, x(0.0) - x(lo), bottom - TOP, "outside",
                     "before the run window (warm-up)"),
                Rect(x(t.window_end), TOP, x(hi) - x(t.window_end), bottom - TOP, "outside",
                     "after the run window (drain)")]
    drawn = t.bars
    if len(drawn) > MAX_BARS:
        drawn = sorted(drawn, key=lambda b: b.start)[:MAX_BARS]
        d.left_out = len(t.bars) - MAX_BARS
    rows = _subrows(drawn)
    counts: dict[str, int] = defaultdict(int)
    for i, b in enumerate(drawn):
        row, n = rows[i]
        h = (LANE - 4) / n
        x0 = x(b.start)
        counts[b.category] += 1
        verdict = f"{b.verdict.replace('_', ' ')}" if b.verdict else "not judged yet"
        d.bars.append(Rect(
            x0, y[b.lane] + 2 + row * h, max(x(b.end) - x0, 1.5), max(h - 1, 1.0),
            f"bar cat-{b.category}",
            f"{b.work_id}\n{verdict} · {b.lane}\n{_s(b.start)} → {_s(b.end)} ({b.ended_by})",
            {"work-id": b.work_id, "verdict": b.verdict, "ended-by": b.ended_by,
             "lane": b.lane}))
    d.lost = [Text(x(sec), y[lane] + LANE * 0.72,  # drawn as a cross; the text is its title
                   f"{w}\nlost: never finished; accepted or due {_s(sec)}", "lost", "middle")
              for lane, sec, w in t.lost]
    for k, f in enumerate(t.faults):
        title = f"{f.action} {f.target} at {_s(f.start)}" + (
            f" until {_s(f.end)}" if f.end is not None else "") + (f" ({f.note})" if f.note else "")
        label = f.action + (f", {f.note}" if f.note else "")
        y0, y1 = (y[f.lane], y[f.lane] + LANE) if f.lane in y else (TOP, bottom)
        css = f"fault fault-{f.action}"
        if f.end is not None:
            d.spans.append(Rect(x(f.start), y0, max(x(f.end) - x(f.start), 1.5), y1 - y0,
                                css + " span", title))
        else:
            d.lines.append(Line(x(f.start), y0 if f.lane else 4.0, x(f.start), y1, css, title))
        d.labels.append(Text(x(f.start) + 2, (y0 + 9) if f.lane else 4.0 + 9 + (k % 2) * 8,
                             label, "fault-label"))
    step = _step(hi - lo)
    tick = math.ceil(lo / step) * step
    while tick <= hi:
        d.ticks.append(Text(x(tick), bottom + 14, f"{tick:g}", "tick", "middle"))
        tick += step
    d.ticks.append(Text(LABELS + plot_w / 2, bottom + 27,
                        "seconds since the run window opened (ledger clock)", "axis", "middle"))
    d.categories = [(k, label, counts[k]) for k, label in CATEGORIES.items() if counts[k]]
    return d


def _subrows(bars: Sequence[Bar]) -> dict[int, tuple[int, int]]:
    return subrows(bars, MAX_SUBROWS)
