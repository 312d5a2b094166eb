"""The measured tables of a suite, each cell linked to the runs it was counted from.

The one place the browser asks the report which runs fill which cell: the cells are
the experiments' own declarations, read through ``report.measured_cells`` one run
at a time, so each text a cell shows is known to come from that run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from experiments.report import measured_cells, tables_measured
from experiments.summary import Summary
from experiments.tables import TABLES


@dataclass(frozen=True)
class Said:
    text: str
    run_id: str
    label: str


@dataclass(frozen=True)
class Cell:
    claim: str  # the usual advice's claim, "" where none was stated
    said: list[Said]


@dataclass(frozen=True)
class TableView:
    title: str
    note: str
    columns: tuple[str, ...]
    rows: list[tuple[str, list[Cell]]]


def measured_tables(runs: Sequence[tuple[str, str, dict[str, Any]]]) -> list[TableView]:
    """``runs``: (run id, label, re-checked summary). The usual advice's table, then any other
    table these runs fill a cell of."""
    summaries = [cast(Summary, s) for _, _, s in runs]
    views = []
    for key in ["seed", *(k for k in tables_measured(summaries) if k != "seed")]:
        spec = TABLES[key]
        per_run = [(run_id, label, measured_cells([s], key))
                   for (run_id, label, _), s in zip(runs, summaries, strict=True)]
        rows = [(row, [Cell(claim, [Said(text, run_id, label) for run_id, label, table in per_run
                                    for text in table[r][1][c][1]])
                       for c, (claim, _) in enumerate(cells)])
                for r, (row, cells) in enumerate(measured_cells([], key))]
        views.append(TableView(spec.title, spec.note, spec.columns, rows))
    return views
