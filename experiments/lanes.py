"""Packing executions into a lane: concurrent bars side by side, for both timelines
(the PNG of ``experiments.plot`` and the SVG of ``experiments.web``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol


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
