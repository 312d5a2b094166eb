"""Repeat runs on the local platform: each seed a run, and the spread of their counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def test_a_repeated_run_gives_each_count_its_spread(scalelab: Any, tmp_path: Path) -> None:
    r = scalelab("run", "scheduler-duplicates", "--replicas", "2", "--duration", "3",
                 "--seed", "4", "--repeat", "2", "--no-plot")
    assert r.returncode == 0, r.stderr
    runs = sorted((tmp_path / "results").iterdir())
    seeds = [json.loads((d / "summary.json").read_text())["seed"] for d in runs]
    assert sorted(seeds) == [4, 5]
    assert "spread over 2 seeds" in r.stdout
    row = next(line for line in r.stdout.splitlines() if "│ scheduler-duplicates" in line)
    assert row.rstrip().endswith("2/2 │")


def test_seeds_that_are_not_a_range_are_bad_input(scalelab_here: Any) -> None:
    r = scalelab_here("suite", "--quick", "--only", "celery-kill", "--seeds", "5-1")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "scalelab: error: --seeds '5-1': a range runs upwards (1-5)"]
