"""The timeline of a run as a PNG: the model of ``experiments.timeline``, drawn with matplotlib.

Concurrent executions on one instance share its lane in sub-rows, and bars of one
colour are one collection, so thousands of executions and 20 lanes stay legible and
quick to draw. The figure is built without pyplot (no global state); Agg renders it.
"""

from __future__ import annotations

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
from experiments import timeline as model
from experiments.checker import Result
from experiments.findings import title_line
from experiments.summary import Summary
from services.history import Event

FAULT_COLOURS = {name: mark.colour for name, mark in MARKS.items()}
NEVER_RAN = model.NEVER_RAN
MAX_SUBROWS = 6
# The categories the PNG draws: a judged run has neither pending nor running work.
DRAWN = {k: v for k, v in model.CATEGORIES.items() if k not in ("pending", "running")}


@dataclass
class Plot:
    """The figure and the timeline it draws, for tests and callers that add to it."""

    figure: Figure
    model: model.Timeline
    faults: list[tuple[str, str, float]]  # what was labelled: action, target, time


def timeline(summary: Summary, events: Sequence[Event], result: Result) -> Plot:
    """Build the run's timeline figure (not yet saved)."""
    window = summary.get("window", {})
    times = [e.t for e in events]
    t0 = float(window.get("start", min(times, default=0.0)))
    t1 = float(window.get("end", max(times, default=t0)))
    t = model.build(events, result, (t0, t1), summary.get("topology"))
    lanes = t.lanes
    y = {lane: i for i, lane in enumerate(lanes)}

    height = min(16.0, max(3.5, 1.6 + 0.34 * len(lanes)))
    fig = Figure(figsize=(13, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    span = max(t.t_end, 1e-3)
    x_low = t.x_low
    min_width = (span - x_low) / 1500  # every execution at least about a pixel wide

    # Outside the run window: warm-up before, drain after.
    ax.axvspan(x_low - span * 0.02, 0, color="#EEEEEE", zorder=0)
    ax.axvspan(t.window_end, t.t_end + span * 0.02, color="#EEEEEE", zorder=0)

    placed = model.subrows(t.bars, MAX_SUBROWS)
    verts: dict[str, list[list[tuple[float, float]]]] = defaultdict(list)
    for i, b in enumerate(t.bars):
        row, rows = placed[i]
        h = 0.8 / rows
        low = y[b.lane] - 0.4 + row * h
        x0, x1 = b.start, max(b.end, b.start + min_width)
        verts[b.category].append([(x0, low), (x1, low), (x1, low + h * 0.9),
                                  (x0, low + h * 0.9)])
    handles: list[Any] = []
    for cat, (label, colour) in DRAWN.items():
        if verts[cat]:
            coll = PolyCollection(verts[cat], facecolors=colour, edgecolors="none",
                                  label=cat, zorder=2,
                                  hatch="///" if cat in ("interrupted", "in_doubt") else None)
            ax.add_collection(coll)
            handles.append(Patch(facecolor=colour, label=f"{label} ({len(verts[cat])})"))

    if t.lost:
        ax.scatter([x for _, x, _ in t.lost], [y[lane] for lane, _, _ in t.lost], marker="x",
                   s=36, color=model.LOST_COLOUR, linewidths=1.6, zorder=6, label="lost")
        handles.append(Line2D([], [], marker="x", color=model.LOST_COLOUR, linestyle="none",
                              label=f"lost: accepted or due, never finished ({len(t.lost)})"))

    labelled = _draw_faults(ax, t, y, span)
    if labelled:
        handles.append(Line2D([], [], color=FAULT_COLOURS["kill"], label="fault (labelled)"))
    handles.append(Patch(facecolor="#EEEEEE", label="outside the run window"))

    ax.set_yticks(range(len(lanes)), [t.lane_label(lane) for lane in lanes],
                  fontsize=8 if len(lanes) > 12 else 9)
    ax.set_ylim(len(lanes) - 0.5, -0.5 - (0.4 + 0.05 * len(lanes) if labelled else 0.3))
    ax.set_xlim(x_low - span * 0.02, t.t_end + span * 0.02)
    ax.set_xlabel("seconds since the run started (ledger clock)")
    ax.grid(axis="x", color="#DDDDDD", linewidth=0.6, zorder=0)
    for i in range(len(lanes) - 1):
        ax.axhline(i + 0.5, color="#E4E4E4", linewidth=0.6, zorder=1)
    ax.set_title(title_line(summary), fontsize=10, loc="left")
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)),
               fontsize=8, frameon=False)
    return Plot(fig, t, labelled)


def _draw_faults(ax: Any, t: model.Timeline, y: dict[str, int],
                 span: float) -> list[tuple[str, str, float]]:
    marks: list[tuple[str, str, float]] = []
    top = ax.get_xaxis_transform()  # x in data, y in axes fraction
    backing = {"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 0.6}
    stagger = 0
    for f in sorted(t.faults, key=lambda f: f.start):
        colour = FAULT_COLOURS.get(f.action, "#333333")
        if f.lane is not None and f.lane in y:
            lane = y[f.lane]
            if f.end is not None:  # a pause, shaded until its resume
                ax.add_patch(Rectangle((f.start, lane - 0.5), f.end - f.start, 1.0,
                                       color=FAULT_COLOURS["pause"], alpha=0.45, zorder=3))
                ax.text(f.start, lane - 0.42, " paused", fontsize=7, va="top", zorder=5,
                        bbox=backing)
            else:
                ax.vlines(f.start, lane - 0.5, lane + 0.5, colors=colour, linewidth=2.2,
                          zorder=5)
                label = f.action + (f", {f.note}" if f.note else "")
                ax.text(f.start, lane - 0.42, f" {label}", color=colour, fontsize=7, va="top",
                        fontweight="bold", zorder=5, bbox=backing)
            marks.append((f.action, f.target, f.start))
            continue
        top_y = 0.995 - 0.045 * (stagger % 3)
        stagger += 1
        if f.end is not None:  # a broker outage until it is back
            ax.axvspan(f.start, f.end, color=FAULT_COLOURS.get(f.action, "#555555"),
                       alpha=0.15, zorder=1)
            ax.text(f.start, top_y, " " + f.action.replace("-", " "), transform=top,
                    fontsize=7, va="top", bbox=backing, zorder=5)
        else:
            label = f"{f.action} {f.target}" + (f" {f.note}" if f.note else "")
            ax.axvline(f.start, color=colour, linestyle="--", linewidth=1.4, zorder=3)
            ax.text(f.start, top_y, f" {label}", transform=top, color=colour, fontsize=8,
                    va="top", fontweight="bold", bbox=backing, zorder=5)
        marks.append((f.action, f.target, f.start))
    return marks


def save_timeline(t: Plot, path: Path) -> None:
    t.figure.savefig(path, format="png")
