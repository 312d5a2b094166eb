"""A run's timeline as SVG geometry: the model of ``experiments.timeline``, laid out.

Geometry is computed here so the template only places shapes; every text on them is
escaped by the template engine. Hover text is each shape's SVG ``<title>``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from experiments.timeline import CATEGORIES, NEVER_RAN, Bar, FaultMark, Timeline, build, subrows

__all__ = ["NEVER_RAN", "Bar", "Drawing", "FaultMark", "Timeline", "build", "draw"]

MAX_SUBROWS = 6
MAX_BARS = 20_000  # beyond this an SVG grows past ~8 MB; the units table has the rest

# --- SVG geometry -----------------------------------------------------------------------

WIDTH = 1000.0
LABELS = 170.0  # the lane names' column (a replacement's name says whom it replaced)
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
    d.lanes = [Text(LABELS - 6, y[lane] + LANE * 0.65, t.lane_label(lane), "lane", "end")
               for lane in lanes]
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
    d.categories = [(k, label, counts[k]) for k, (label, _) in CATEGORIES.items() if counts[k]]
    return d


def _subrows(bars: Sequence[Bar]) -> dict[int, tuple[int, int]]:
    return subrows(bars, MAX_SUBROWS)
