"""The suite, runs side by side: each a harness process, all under one watchdog."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from chaos.processes import lab_processes
from tests.conftest import start_scalelab, wait_for

pytestmark = pytest.mark.slow


def test_four_runs_at_a_time_into_a_new_directory_make_one_report(scalelab: Any,
                                                                  tmp_path: Path) -> None:
    results = tmp_path / "not" / "yet" / "results"  # each harness checks it as it starts
    r = scalelab("suite", "--quick", "--only", "scheduler-duplicates,beat-duplicates",
                 "--jobs", "4", "--results", str(results), timeout=180)
    assert r.returncode == 0, r.stderr
    (suite,) = results.iterdir()
    runs = sorted(d for d in suite.iterdir() if (d / "summary.json").is_file())
    assert len(runs) == 4  # two variants of each, side by side
    report = (suite / "report.md").read_text()
    for run in runs:
        assert f"]({run.name}/summary.md)" in report
        assert f"]({run.name}/timeline.png)" in report
        assert (run / "summary.md").exists() and (run / "timeline.png").exists()
    # the usual advice's table is filled from the runs, with their own counts
    summaries = [json.loads((run / "summary.json").read_text()) for run in runs]
    unguarded = next(s for s in summaries if s["experiment"] == "scheduler-duplicates"
                     and s["parameters"]["guard"] == "none")
    row = next(line for line in report.splitlines() if line.startswith("| Horizontal scaling"))
    assert (f"3 replicas unguarded: duplicated {unguarded['counts']['duplicated']}/"
            f"{unguarded['expected']}") in row
    assert "Redis lock per tick: duplicated 0/" in row


def test_ctrl_c_stops_every_run_of_a_parallel_suite(lab_tag: str, tmp_path: Path) -> None:
    suite = start_scalelab(lab_tag, "suite", "--only", "scheduler-duplicates", "--jobs", "2",
                           "--results", str(tmp_path / "results"))
    try:
        # both runs' API replicas are up (3 each, the experiment's default)
        wait_for(lambda: sum("services.api" in c for _, c in lab_processes(lab_tag)) >= 6,
                 60, "two runs' replicas")
        suite.send_signal(signal.SIGINT)
        _, err = suite.communicate(timeout=60)
    finally:
        if suite.poll() is None:
            suite.kill()
        suite.communicate()
    assert suite.returncode == 130, err
    wait_for(lambda: not lab_processes(lab_tag), 10, "every lab process to end")
