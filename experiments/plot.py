"""The timeline of a run: one lane per instance, one bar per execution, faults on top.

An execution is a ``start`` paired with its ``finish`` (or ``refused``) by exec_id and
drawn from one to the other, coloured by what happened to its unit of work: ran once,
duplicated (every copy), recovered, refused by a guard, unexpected. An execution that
never ended is drawn to the fault that ended its instance (interrupted) or to the end of
the history (in doubt). Lost work is a cross at the time it was accepted (its intent)
or due (its fire time), on the lane of the instance that accepted it. Faults on one
instance are marks on its lane (a pause is shaded until the resume); faults on a whole
component (scale, broker outage) are vertical lines or spans across every lane.

Concurrent executions on one instance share its lane in sub-rows, and bars of one
colour are one collection, so thousands of executions and 20 lanes stay legible and
quick to draw. The figure is built without pyplot (no global state); Agg renders it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from chaos.faults import MARKS
from experiments.checker import ENDING_FAULTS, Result
from experiments.lanes import subrows
from experiments.summary import Summary
from services.history import Event, Kind

# Categories of executions: legend text and colour (distinguishable in colour-blind palettes).
CATEGORIES: dict[str, tuple[str, str]] = {
    "ok": ("ran once", "#4C72B0"),
    "duplicated": ("duplicated (every copy)", "#E08A1E"),
    "recovered": ("recovered elsewhere", "#55A868"),
    "interrupted": ("interrupted by a fault", "#C44E52"),
    "refused": ("refused by a guard", "#8172B3"),
    "unexpected": ("never acknowledged nor due", "#937860"),
    "in_doubt": ("in doubt (run ended)", "#9A9A9A"),
    "outside": ("warm-up or drain (not judged)", "#CFCFCF"),
}
LOST_COLOUR = "#B2182B"
FAULT_COLOURS = {name: mark.colour for name, mark in MARKS.items()}
NEVER_RAN = "(never ran)"  # the lane of due units that no instance started
MAX_SUBROWS = 6


@dataclass(frozen=True)
class Bar:
    lane: str
    start: float
    end: float
    category: str


@dataclass
class Timeline:
    """The figure and what is on it, for tests and callers that add to it."""

    figure: Figure
    lanes: list[str]
    bars: list[Bar]
    lost: list[tuple[str, float]]  # lane, time
    faults: list[tuple[str, str, float]]  # action, target, time


def _natural(name: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def _executions(events: Sequence[Event], result: Result, t0: float, t_end: float,
                faults: Sequence[Event]) -> list[Bar]:
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
    ending = defaultdict(list)
    for f in faults:
        if f.mechanism in ENDING_FAULTS:
            ending[f.instance].append(f.t)

    def category(work_id: str) -> str:
        unit = result.units.get(work_id)
        if unit is None:
            return "outside"  # the checker ignored it: a tick of warm-up or drain
        return unit.verdict if unit.verdict in CATEGORIES else "ok"

    bars = []
    for exec_id, s in starts.items():
        end = ends.get(exec_id)
        if end is not None:
            cat = "refused" if end.kind == Kind.REFUSED else category(s.work_id)
            bars.append(Bar(s.instance, s.t - t0, end.t - t0, cat))
            continue
        struck = [t for t in ending.get(s.instance, ()) if t >= s.t]
        if struck:
            bars.append(Bar(s.instance, s.t - t0, min(struck) - t0, "interrupted"))
        else:
            bars.append(Bar(s.instance, s.t - t0, t_end - t0, "in_doubt"))
    for e in (*lone, *(e for x, e in ends.items() if x not in starts)):
        cat = "refused" if e.kind == Kind.REFUSED else category(e.work_id)
        bars.append(Bar(e.instance, e.t - t0, e.t - t0, cat))
    return bars


def _lost(events: Sequence[Event], result: Result, t0: float) -> list[tuple[str, float]]:
    from services.history import parse_scheduled

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
        intent = intents.get(work_id)
        parsed = parse_scheduled(work_id)
        started = first_start.get(work_id)
        if intent is not None:
            marks.append((intent.instance, intent.t - t0))
        elif parsed is not None:
            marks.append((started.instance if started else NEVER_RAN, parsed[1] - t0))
        elif started is not None:
            marks.append((started.instance, started.t - t0))
    return marks


def _subrows(bars: Sequence[Bar]) -> dict[int, tuple[int, int]]:
    return subrows(bars, MAX_SUBROWS)


def timeline(summary: Summary, events: Sequence[Event], result: Result) -> Timeline:
    """Build the run's timeline figure (not yet saved)."""
    window = summary.get("window", {})
    times = [e.t for e in events]
    t0 = float(window.get("start", min(times, default=0.0)))
    t1 = float(window.get("end", max(times, default=t0)))
    t_end = max([t1, *times])
    faults = [e for e in events if e.kind == Kind.FAULT]
    bars = _executions(events, result, t0, t_end, faults)
    lost = _lost(events, result, t0)

    instances = {b.lane for b in bars} | {lane for lane, _ in lost}
    instances |= {e.instance for e in events if e.kind == Kind.INTENT}
    on_instance = [f for f in faults if re.search(r"-\d+$", f.instance) or f.instance in instances]
    instances |= {f.instance for f in on_instance}
    lanes = sorted(instances - {NEVER_RAN}, key=_natural)
    if NEVER_RAN in instances:
        lanes.append(NEVER_RAN)
    y = {lane: i for i, lane in enumerate(lanes)}

    height = min(16.0, max(3.5, 1.6 + 0.34 * len(lanes)))
    fig = Figure(figsize=(13, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    span = max(t_end - t0, 1e-3)
    x_low = min([0.0, *(b.start for b in bars), *(t for _, t in lost)])
    min_width = (span - x_low) / 1500  # every execution at least about a pixel wide

    # Outside the run window: warm-up before, drain after.
    ax.axvspan(x_low - span * 0.02, 0, color="#EEEEEE", zorder=0)
    ax.axvspan(t1 - t0, t_end - t0 + span * 0.02, color="#EEEEEE", zorder=0)

    placed = _subrows(bars)
    verts: dict[str, list[list[tuple[float, float]]]] = defaultdict(list)
    for i, b in enumerate(bars):
        row, rows = placed[i]
        h = 0.8 / rows
        low = y[b.lane] - 0.4 + row * h
        x0, x1 = b.start, max(b.end, b.start + min_width)
        verts[b.category].append([(x0, low), (x1, low), (x1, low + h * 0.9),
                                  (x0, low + h * 0.9)])
    handles: list[Any] = []
    for cat, (label, colour) in CATEGORIES.items():
        if verts[cat]:
            coll = PolyCollection(verts[cat], facecolors=colour, edgecolors="none",
                                  label=cat, zorder=2,
                                  hatch="///" if cat in ("interrupted", "in_doubt") else None)
            ax.add_collection(coll)
            handles.append(Patch(facecolor=colour, label=f"{label} ({len(verts[cat])})"))

    if lost:
        ax.scatter([t for _, t in lost], [y[lane] for lane, _ in lost], marker="x", s=36,
                   color=LOST_COLOUR, linewidths=1.6, zorder=6, label="lost")
        handles.append(Line2D([], [], marker="x", color=LOST_COLOUR, linestyle="none",
                              label=f"lost: accepted or due, never finished ({len(lost)})"))

    fault_marks = _draw_faults(ax, faults, on_instance, y, t0, t_end, span)
    if fault_marks:
        handles.append(Line2D([], [], color=FAULT_COLOURS["kill"], label="fault (labelled)"))
    handles.append(Patch(facecolor="#EEEEEE", label="outside the run window"))

    ax.set_yticks(range(len(lanes)), lanes, fontsize=8 if len(lanes) > 12 else 9)
    ax.set_ylim(len(lanes) - 0.5, -0.5 - (0.4 + 0.05 * len(lanes) if fault_marks else 0.3))
    ax.set_xlim(x_low - span * 0.02, t_end - t0 + span * 0.02)
    ax.set_xlabel("seconds since the run started (ledger clock)")
    ax.grid(axis="x", color="#DDDDDD", linewidth=0.6, zorder=0)
    for i in range(len(lanes) - 1):
        ax.axhline(i + 0.5, color="#E4E4E4", linewidth=0.6, zorder=1)
    held = "held" if summary.get("valid") else "did NOT hold"
    ax.set_title(f"{summary.get('experiment', 'run')}: {summary.get('expectation', '')} "
                 f"(expectation {held})", fontsize=10, loc="left")
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)),
               fontsize=8, frameon=False)
    return Timeline(fig, lanes, bars, lost, fault_marks)


def _draw_faults(ax: Any, faults: Sequence[Event], on_instance: Sequence[Event],
                 y: dict[str, int], t0: float, t_end: float,
                 span: float) -> list[tuple[str, str, float]]:
    marks: list[tuple[str, str, float]] = []
    top = ax.get_xaxis_transform()  # x in data, y in axes fraction
    lane_faults = {id(f) for f in on_instance}
    paused: dict[str, float] = {}
    outage: float | None = None
    backing = {"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 0.6}
    stagger = [0]

    def top_y() -> float:
        stagger[0] += 1
        return 0.995 - 0.045 * ((stagger[0] - 1) % 3)
    for f in sorted(faults, key=lambda e: e.t):
        x = f.t - t0
        action = f.mechanism
        colour = FAULT_COLOURS.get(action, "#333333")
        if id(f) in lane_faults and f.instance in y:
            lane = y[f.instance]
            if action == "pause":
                paused[f.instance] = x
            elif action == "resume" and f.instance in paused:
                start = paused.pop(f.instance)
                ax.add_patch(Rectangle((start, lane - 0.5), x - start, 1.0,
                                       color=FAULT_COLOURS["pause"], alpha=0.45, zorder=3))
                ax.text(start, lane - 0.42, " paused", fontsize=7, va="top", zorder=5,
                        bbox=backing)
                marks.append(("pause", f.instance, start))
                continue
            if action != "pause":
                ax.vlines(x, lane - 0.5, lane + 0.5, colors=colour, linewidth=2.2, zorder=5)
                inflight = f.detail.get("inflight")
                label = action + (f", {inflight} running" if inflight is not None else "")
                ax.text(x, lane - 0.42, f" {label}", color=colour, fontsize=7, va="top",
                        fontweight="bold", zorder=5, bbox=backing)
                marks.append((action, f.instance, x))
        elif action == "broker-outage":
            outage = x
        elif action == "broker-back" and outage is not None:
            ax.axvspan(outage, x, color=FAULT_COLOURS["broker-outage"], alpha=0.15, zorder=1)
            ax.text(outage, top_y(), " broker outage", transform=top, fontsize=7, va="top",
                    bbox=backing, zorder=5)
            marks.append(("broker-outage", f.instance, outage))
            outage = None
        else:
            replicas = f.detail.get("replicas")
            label = f"{action} {f.instance}" + (f" → {replicas}" if replicas is not None else "")
            ax.axvline(x, color=colour, linestyle="--", linewidth=1.4, zorder=3)
            ax.text(x, top_y(), f" {label}", transform=top, color=colour, fontsize=8,
                    va="top", fontweight="bold", bbox=backing, zorder=5)
            marks.append((action, f.instance, x))
    end = t_end - t0 + span * 0.02
    for instance, start in paused.items():  # never resumed within the history
        ax.add_patch(Rectangle((start, y[instance] - 0.5), end - start, 1.0,
                               color=FAULT_COLOURS["pause"], alpha=0.45, zorder=3))
        ax.text(start, y[instance] - 0.42, " paused", fontsize=7, va="top", zorder=5,
                bbox=backing)
        marks.append(("pause", instance, start))
    if outage is not None:
        ax.axvspan(outage, end, color=FAULT_COLOURS["broker-outage"], alpha=0.15, zorder=1)
        marks.append(("broker-outage", "broker", outage))
    return marks


def save_timeline(t: Timeline, path: Path) -> None:
    t.figure.savefig(path, format="png")
