"""``scalelab matrix`` for real: cells run as ordinary runs, the grid and its files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def test_matrix_runs_its_cells_and_writes_the_grid(scalelab: Any, tmp_path: Path) -> None:
    results = tmp_path / "m"
    r = scalelab("matrix", "--quick", "--only", "celery-redbeat", "--jobs", "2",
                 "--seed", "3", "--results", str(results), timeout=240)
    assert r.returncode == 0, r.stderr
    [directory] = [d for d in results.iterdir() if d.name.endswith("-matrix")]
    data = json.loads((directory / "matrix.json").read_text())
    assert data["seeds"] == [3, 4] and [row["key"] for row in data["rows"]] == ["celery-redbeat"]
    # two seeds by default: each measured column ran once per seed
    assert sorted((c["column"], c["seed"]) for c in data["cells"] if c["measured"]) == [
        ("kill", 3), ("kill", 4), ("none", 3), ("none", 4)]
    measured = {c["column"]: c for c in data["cells"] if c["measured"] and c["seed"] == 3}
    for cell in measured.values():
        assert cell["due"] > 0 and cell["ok"] + cell["lost"] + cell["duplicated"] + cell[
            "recovered"] <= cell["due"]
        assert (directory / cell["run_dir"] / "events.jsonl").is_file()
    assert measured["none"]["duplicated"] == 0  # the lock lets one beat send
    assert {c["reason"] for c in data["cells"] if not c["measured"]} == {
        "not measured", "n/a: no data store"}
    md = (directory / "matrix.md").read_text()
    assert "celery-redbeat docs" in md and "summary.md)" in md
    assert "— claim held" in md or "— claim broken" in md
    assert md.rstrip().splitlines()[-1].startswith("| Celery beat, two beats + celery-redbeat")
    assert "## What to pick" in md
    # the terminal grid: one line for the row, every column headed
    row_lines = [ln for ln in r.stdout.splitlines() if "celery-redbeat" in ln]
    assert len(row_lines) == 1 and "dup 0/" in row_lines[0]


def test_an_unknown_row_is_one_line_and_runs_nothing(scalelab_here: Any, tmp_path: Path) -> None:
    r = scalelab_here("matrix", "--only", "apscheduler5", "--results", str(tmp_path / "m"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "unknown row 'apscheduler5'" in r.stderr
    assert not (tmp_path / "m").exists()


def test_k8s_cronjob_locally_says_it_needs_kubernetes(scalelab: Any, tmp_path: Path) -> None:
    r = scalelab("run", "k8s-cronjob")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "kubernetes platform" in r.stderr
    assert not list((tmp_path / "results").glob("*k8s-cronjob*"))
