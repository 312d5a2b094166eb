"""Repeat runs and their spread: the same experiment (or suite cell) on several seeds.

One run's counts are one sample of timing-dependent behaviour. Run on N seeds, each
cell says its counts as min / median / max, how many of the N runs demonstrated the
expectation, and — when the runs disagree on the verdict — that it is *unstable*,
naming the runs that broke it (seed and verdict), so a flaky claim is never read as
a settled one.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

from experiments.checker import VERDICTS
from experiments.summary import DEMONSTRATED, Summary, outcome

SHOWN = ("expected", "ok", "lost", "duplicated", "recovered", "in_doubt", "extra_executions")


def parse_seeds(text: str) -> list[int]:
    """``1-5``, ``3`` or ``1,4,7`` -> the seeds; ValueError with a reason otherwise."""
    seeds: list[int] = []
    for part in text.split(","):
        low, sep, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high) if sep else int(low)
        except ValueError:
            raise ValueError(f"--seeds takes a range such as 1-5 or a list such as 1,4,7, "
                             f"not {text!r}") from None
        if last < first:
            raise ValueError(f"--seeds {text!r}: a range runs upwards (1-5)")
        seeds += range(first, last + 1)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r} names a seed twice")
    if len(seeds) > 50:
        raise ValueError(f"--seeds {text!r}: at most 50 seeds")
    return seeds


def count(s: Summary, key: str) -> int:
    if key in VERDICTS:
        return int(s["counts"].get(key, 0))
    value: Any = s.get(key, 0)
    return int(value or 0)


@dataclass
class Spread:
    """One cell over its runs: each count's min, median and max, and the verdicts."""

    label: str
    runs: list[Summary] = field(default_factory=list)

    @property
    def demonstrated(self) -> int:
        return sum(1 for s in self.runs if outcome(s) == DEMONSTRATED)

    @property
    def unstable(self) -> bool:
        """The runs disagree on the verdict."""
        return len({outcome(s) for s in self.runs}) > 1

    def broke(self) -> list[str]:
        """The runs that did not demonstrate it: ``seed 3 (not demonstrated, run <id>)``."""
        return [f"seed {s.get('seed', '?')} ({outcome(s).replace('_', ' ')}, run "
                f"{s.get('run_id', '?')})" for s in self.runs if outcome(s) != DEMONSTRATED]

    def of(self, key: str) -> tuple[int, float, int]:
        values = [count(s, key) for s in self.runs]
        return min(values), statistics.median(values), max(values)

    def said(self, key: str) -> str:
        low, median, high = self.of(key)
        return str(low) if low == high else f"{low} / {median:g} / {high}"

    def held(self) -> str:
        return (f"{self.demonstrated}/{len(self.runs)}"
                + (" UNSTABLE" if self.unstable else ""))


def spreads(labelled: Iterable[tuple[str, Summary]]) -> list[Spread]:
    """Group runs by label (in first-seen order)."""
    found: dict[str, Spread] = {}
    for label, s in labelled:
        found.setdefault(label, Spread(label)).runs.append(s)
    return list(found.values())


def spread_table(cells: Sequence[Spread]) -> Table:
    """The terminal's table: per cell, each count as min / median / max, and how many held."""
    runs = max((len(c.runs) for c in cells), default=0)
    table = Table(title=f"scalelab: spread over {runs} seeds (min / median / max)")
    table.add_column("cell", max_width=48, overflow="fold")
    for title in ("due", "ok", "lost", "dup", "recov", "doubt", "extra"):
        table.add_column(title, justify="right")
    table.add_column("demonstrated", justify="right")
    for c in cells:
        table.add_row(c.label, *(c.said(k) for k in SHOWN),
                      f"[bold yellow]{c.held()}[/]" if c.unstable else c.held())
    return table


def spread_markdown(cells: Sequence[Spread]) -> str:
    """The same in Markdown, with the runs that broke each unstable cell."""
    lines = ["| cell | " + " | ".join(k.replace("_", " ") for k in SHOWN)
             + " | demonstrated |", "| --- |" + " ---: |" * (len(SHOWN) + 1)]
    for c in cells:
        lines.append(f"| {c.label} | " + " | ".join(c.said(k) for k in SHOWN)
                     + f" | {c.held()} |")
    broken = [(c.label, c.broke()) for c in cells if c.unstable]
    if broken:
        lines += ["", "Unstable (the runs that broke the expectation):", ""]
        lines += [f"- {label}: {', '.join(runs)}" for label, runs in broken]
    return "\n".join(lines)
