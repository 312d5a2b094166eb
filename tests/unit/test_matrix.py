"""The fixes matrix's pure parts: the plan of cells, and what a person reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from experiments import catalog
from experiments.matrix import COLUMNS, ROWS, Cell, counts_of, plan, select_rows
from experiments.matrix_report import (
    combined,
    compact,
    held,
    markdown,
    pick_table,
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


def _measured(row: str, column: str, dup: int, lost: int, seed: int = 1) -> Cell:
    summary = {"expected": 10, "counts": {"ok": 10 - dup - lost, "lost": lost,
                                          "duplicated": dup, "recovered": 0},
               "extra_executions": dup, "valid": dup == 0}
    return Cell(row, column, "scheduler-duplicates", seed, {"scheduler": "arq"},
                counts=counts_of(summary), run_dir=f"run-{row}-{column}-{seed}")


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
    write(cells, tmp_path, quick=True)
    data = json.loads((tmp_path / "matrix.json").read_text())
    assert data["seeds"] == [1] and data["rows"][0]["claim"].startswith("the job \"will only")
    pause = next(c for c in data["cells"] if c["column"] == "pause")
    assert (pause["due"], pause["duplicated"], pause["extra_executions"]) == (10, 1, 1)
    assert pause["run_dir"] == "run-arq-pause-1"
    na = next(c for c in data["cells"] if c["column"] == "datastore-outage")
    assert na == {"row": "arq", "column": "datastore-outage", "seed": 1, "measured": False,
                  "reason": "n/a: no data store"}
    md = (tmp_path / "matrix.md").read_text()
    assert "[dup 1/10 · lost 0 — claim broken](run-arq-pause-1/summary.md)" in md
    assert "[dup 0/10 · lost 0 — claim held](run-arq-none-1/summary.md)" in md
    assert "arq docs, cron(unique=True)" in md and "(checked: no duplicate)" in md
    assert md == markdown(cells, quick=True)
    assert to_json(cells, quick=True) == data


def test_seeds_are_summed_and_a_failed_seed_leaves_the_cell_unmeasured() -> None:
    both = combined([_measured("arq", "kill", dup=0, lost=1, seed=1),
                     _measured("arq", "kill", dup=2, lost=0, seed=2)])
    assert both.counts is not None
    assert (both.counts["due"], both.counts["duplicated"], both.counts["lost"]) == (20, 2, 1)
    assert both.counts["seeds"] == 2 and compact(both) == "dup 2/20 · lost 1"
    failed = Cell("arq", "kill", "scheduler-duplicates", 2, error="exit 2")
    half = combined([_measured("arq", "kill", dup=0, lost=0, seed=1), failed])
    assert half.counts is None and compact(half) == "failed: exit 2"
    assert [c.seed for c in plan([r for r in ROWS if r.key == "arq"], quick=True,
                                 seeds=(5, 6)) if c.column == "kill"] == [5, 6]


def test_each_cell_checks_the_rows_own_claim() -> None:
    rows = {r.key: r for r in ROWS}
    # the documentation says every consumer enqueues it: duplicates are the claim
    assert held(rows["huey"], _measured("huey", "none", dup=10, lost=0))
    assert not held(rows["huey"], _measured("huey", "none", dup=0, lost=0))
    # a row that claims nothing about loss holds with a loss; one that does, does not
    assert held(rows["procrastinate"], _measured("procrastinate", "kill", dup=0, lost=1))
    assert not held(rows["procrastinate-stalled-retry"],
                    _measured("procrastinate-stalled-retry", "kill", dup=0, lost=1))
    assert held(rows["arq"], Cell("arq", "kill", reason="n/a: x")) is None


def test_what_to_pick_ranks_rows_by_their_bad_cells() -> None:
    cells = [_measured("arq", "none", 0, 0), _measured("arq", "kill", 0, 2),
             _measured("arq", "pause", 3, 0),
             _measured("rq", "none", 0, 0), _measured("rq", "kill", 0, 1),
             Cell("rq", "pause", reason="not measured")]
    lines = pick_table(cells)
    assert lines[0] == "## What to pick"
    body = [ln for ln in lines if ln.startswith("| RQ") or ln.startswith("| arq")]
    # RQ went bad under one fault of two (kill), arq under two of three: RQ first
    assert body[0].startswith("| RQ") and "| 1/2 | none | — | kill |" in body[0]
    assert body[1].startswith("| arq") and "| 2/3 | none | pause | kill |" in body[1]


def test_the_terminal_grid_is_one_line_per_row_when_wide() -> None:
    cells = [_measured("arq", c.key, dup=0, lost=0) for c in COLUMNS]
    console = Console(width=220, record=True, color_system=None)
    console.print(terminal_grid(cells))
    text = console.export_text()
    assert sum("dup 0/10 · lost 0" in line for line in text.splitlines()) == 1
    assert all(c.short in text for c in COLUMNS)
