"""The fixes matrix's pure parts: the plan of cells, and what a person reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from experiments import catalog
from experiments.matrix import (
    COLUMNS,
    ROWS,
    Cell,
    compact,
    counts_of,
    markdown,
    plan,
    select_rows,
    terminal_grid,
    to_json,
    tone,
    write,
)
from experiments.model import BadInput


def test_every_planned_cell_is_a_valid_run_of_its_experiment() -> None:
    for quick in (True, False):
        for cell in plan(ROWS, quick):
            if cell.reason:
                continue
            spec = catalog.get(cell.experiment)
            spec.experiment(spec.values(cell.values))  # raises on a bad value


def test_cells_that_cannot_run_say_why() -> None:
    at = {(c.row, c.column): c for c in plan(ROWS, quick=False)}
    assert len(at) == len(ROWS) * len(COLUMNS)
    assert all(c.reason == "kind only" for (row, _), c in at.items() if row == "k8s-cronjob")
    assert at[("arq", "datastore-outage")].reason == "n/a: no data store"
    assert not at[("apscheduler4", "datastore-outage")].reason
    assert at[("celery-beat-2", "pause")].reason == "not measured"
    assert not at[("arq", "pause")].reason
    # the arq pause runs past arq's 60 s in-progress marker, even in --quick
    [pause] = [c for c in plan([r for r in ROWS if r.key == "arq"], quick=True)
             if c.column == "pause"]
    assert pause.values["duration"] >= 65


def test_a_pause_outlasts_the_lease_it_is_meant_to_pass() -> None:
    for cell in plan(ROWS, quick=True):
        if cell.column == "pause" and cell.experiment == "scheduler-duplicates":
            assert cell.values["fault_for"] > cell.values["lease"] > 0


def test_quick_keeps_the_main_rows_and_only_picks_rows() -> None:
    quick = [r.key for r in select_rows(None, quick=True)]
    assert {"apscheduler3", "apscheduler4", "arq", "celery-redbeat", "k8s-cronjob"} <= set(quick)
    assert len(quick) < len(ROWS)
    assert [r.key for r in select_rows("arq,apscheduler4", quick=True)] == ["arq", "apscheduler4"]
    with pytest.raises(BadInput, match="unknown row 'nope'"):
        select_rows("arq,nope", quick=False)


def _measured(row: str, column: str, dup: int, lost: int) -> Cell:
    summary = {"expected": 10, "counts": {"ok": 10 - dup - lost, "lost": lost,
                                          "duplicated": dup, "recovered": 0},
               "extra_executions": dup, "valid": dup == 0}
    return Cell(row, column, "scheduler-duplicates", {"scheduler": "arq"},
                counts=counts_of(summary), run_dir=f"run-{row}-{column}")


def test_compact_cells_and_their_tone() -> None:
    bad = _measured("arq", "pause", dup=3, lost=0)
    assert compact(bad) == "dup 3/10 · lost 0" and tone(bad) == "bad"
    good = _measured("arq", "none", dup=0, lost=0)
    assert tone(good) == "good"
    lost = _measured("arq", "kill", dup=0, lost=2)
    assert tone(lost) == "bad"
    na = Cell("arq", "datastore-outage", reason="n/a: no data store")
    assert compact(na) == "n/a: no data store" and tone(na) == "none"
    failed = Cell("arq", "skew", "scheduler-duplicates", error="exit 2")
    assert compact(failed) == "failed: exit 2"


def test_reports_carry_counts_claims_and_run_directories(tmp_path: Path) -> None:
    cells = plan([r for r in ROWS if r.key == "arq"], quick=True)
    for i, cell in enumerate(cells):
        if not cell.reason:
            cells[i] = _measured("arq", cell.column, dup=1 if cell.column == "pause" else 0,
                                 lost=0)
    write(cells, tmp_path, seed=7, quick=True)
    data = json.loads((tmp_path / "matrix.json").read_text())
    assert data["seed"] == 7 and data["rows"][0]["claim"].startswith("the job \"will only")
    pause = next(c for c in data["cells"] if c["column"] == "pause")
    assert (pause["due"], pause["duplicated"], pause["extra_executions"]) == (10, 1, 1)
    assert pause["run_dir"] == "run-arq-pause"
    na = next(c for c in data["cells"] if c["column"] == "datastore-outage")
    assert na == {"row": "arq", "column": "datastore-outage", "measured": False,
                  "reason": "n/a: no data store"}
    md = (tmp_path / "matrix.md").read_text()
    assert "[dup 1/10 · lost 0](run-arq-pause/summary.md)" in md
    assert "arq docs, cron(unique=True)" in md
    assert md == markdown(cells, seed=7, quick=True)
    assert to_json(cells, seed=7, quick=True) == data


def test_the_terminal_grid_is_one_line_per_row_when_wide() -> None:
    cells = [_measured("arq", c.key, dup=0, lost=0) for c in COLUMNS]
    console = Console(width=220, record=True, color_system=None)
    console.print(terminal_grid(cells))
    text = console.export_text()
    assert sum("dup 0/10 · lost 0" in line for line in text.splitlines()) == 1
    assert all(c.short in text for c in COLUMNS)
