"""scheduler-duplicates for real: uvicorn replicas, real Redis, real ticks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chaos.processes import LAB_TAG
from services.ledger import parse_scheduled
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def events(summary_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (summary_dir / "events.jsonl").read_text().splitlines()]


def run_dir(tmp_path: Path) -> Path:
    (found,) = list((tmp_path / "results").iterdir())
    return found


def test_three_unguarded_replicas_run_every_tick_three_times(scalelab: Any) -> None:
    r = scalelab("run", "scheduler-duplicates", "--replicas", "3", "--interval", "1",
                 "--duration", "6", "--seed", "7", "--json")
    assert r.returncode == 0, r.stderr
    s = r.summary
    assert s["experiment"] == "scheduler-duplicates" and s["platform"] == "local"
    assert s["seed"] == 7 and s["parameters"]["replicas"] == 3
    assert 5 <= s["expected"] <= 7
    # every tick but possibly one at a window edge ran three times
    assert s["counts"]["duplicated"] >= s["expected"] - 1
    assert 2 * s["expected"] - 2 <= s["extra_executions"] <= 2 * s["expected"]
    assert s["executions"] == s["expected"] + s["extra_executions"] - s["counts"]["lost"]
    assert s["valid"] is True


def test_a_per_tick_redis_lock_brings_it_back_to_once(scalelab: Any, tmp_path: Path) -> None:
    r = scalelab("run", "scheduler-duplicates", "--replicas", "3", "--interval", "1",
                 "--duration", "6", "--guard", "redis-lock", "--json")
    assert r.returncode == 0, r.stderr
    s = r.summary
    assert s["counts"]["duplicated"] == 0 and s["extra_executions"] == 0
    assert s["counts"]["lost"] <= 1
    assert s["counts"]["ok"] >= s["expected"] - 1
    # every effect came from one of the run's own replicas, none from a stray process
    finishers = {e["instance"] for e in events(run_dir(tmp_path)) if e["kind"] == "finish"}
    assert finishers <= {"api-1", "api-2", "api-3"}


def test_duplicates_appear_only_after_the_scale_up(scalelab: Any, tmp_path: Path) -> None:
    r = scalelab("run", "scheduler-duplicates", "--replicas", "1", "--scale-to", "3",
                 "--scale-at", "3", "--duration", "7", "--json")
    assert r.returncode == 0, r.stderr
    s = r.summary
    assert s["faults"][0]["action"] == "scale-up"
    scaled_at = s["window"]["start"] + s["faults"][0]["at"]
    finishes: dict[str, int] = {}
    for e in events(run_dir(tmp_path)):
        if e["kind"] == "finish":
            finishes[e["work_id"]] = finishes.get(e["work_id"], 0) + 1
    duplicated = [w for w, n in finishes.items() if n > 1]
    assert duplicated, "three replicas after the scale-up should duplicate ticks"
    for work_id in duplicated:
        parsed = parse_scheduled(work_id)
        assert parsed is not None and parsed[1] >= scaled_at - 0.001, work_id
    before = [w for w, n in finishes.items()
              if (p := parse_scheduled(w)) and p[1] < scaled_at and n == 1]
    assert len(before) >= 2, "one replica ran the early ticks once each"


def test_a_relative_results_directory_works_from_any_directory(
        lab_tag: str, tmp_path: Path) -> None:
    """`make lab` passes the default, relative `results`: every path must hold up."""
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "run", "scheduler-duplicates", "--replicas",
         "1", "--duration", "2", "--json"],  # --results defaults to ./results
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, LAB_TAG: lab_tag, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    (run,) = (tmp_path / "results").iterdir()
    assert (run / "summary.json").is_file() and (run / "logs").is_dir()
