"""The measured tables of a suite, each cell linked to the runs it was counted from.

The one place the browser asks the report which runs fill which cell: the cells are
the report's own (``measured_cells``), asked one run at a time so each text a cell
shows is known to come from that run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from experiments.report import COLUMNS, measured_cells


@dataclass(frozen=True)
class Said:
    text: str
    run_id: str
    label: str


@dataclass(frozen=True)
class Cell:
    claim: str
    said: list[Said]


@dataclass(frozen=True)
class TableView:
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, list[Cell]]]


def measured_tables(runs: Sequence[tuple[str, str, dict[str, Any]]]) -> list[TableView]:
    """``runs``: (run id, label, re-checked summary). The seed's table, measured."""
    per_run = [(run_id, label, measured_cells([summary])) for run_id, label, summary in runs]
    rows: list[tuple[str, list[Cell]]] = []
    for r, (row, cells) in enumerate(measured_cells([])):
        rows.append((row, [
            Cell(claim, [Said(text, run_id, label)
                         for run_id, label, table in per_run for text in table[r][1][c][1]])
            for c, (claim, _) in enumerate(cells)]))
    return [TableView("the seed's comparison table, measured", COLUMNS, rows)]
