"""--junit and the suite's report.html, read as a CI job would: a JUnit parser, a file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from junitparser import Error, Failure, JUnitXml, Skipped

from experiments import junit


def cases_of(path: Path) -> dict[str, Any]:
    (suite,) = list(JUnitXml.fromfile(str(path)))
    return {case.name: case for case in suite}


def test_each_verdict_is_a_junit_outcome(tmp_path: Path) -> None:
    summary = {"experiment": "scheduler-duplicates", "parameters": {"replicas": 2},
               "counts": {"ok": 0, "lost": 0, "duplicated": 4}, "expected": 4,
               "executions": 8, "wall_seconds": 6.5}
    runs = [("held", {**summary, "valid": True, "expectation": "4/4 duplicated"}),
            ("not", {**summary, "valid": False, "verdict": "not_demonstrated",
                     "expectation": "guard redis-lock: 4/4 duplicated, theory 0"}),
            ("untested", {**summary, "verdict": "untested",
                          "expectation": "the kill did not happen"})]
    path = tmp_path / "ci" / "out.xml"
    junit.write(path, "suite", [junit.of_run(label, s) for label, s in runs]
                + [junit.error("broken", "scalelab.matrix.arq", "did not run: no arq")])
    cases = cases_of(path)
    assert cases["held"].is_passed and cases["held"].time == 6.5
    (failure,) = cases["not"].result
    assert isinstance(failure, Failure)
    assert failure.message == "guard redis-lock: 4/4 duplicated, theory 0"
    assert "scalelab run scheduler-duplicates --replicas 2 --guard redis-lock" in (
        failure.text or "")  # the fix, beside the failure
    (skip,) = cases["untested"].result
    assert isinstance(skip, Skipped) and skip.message == "the kill did not happen"
    (err,) = cases["broken"].result
    assert isinstance(err, Error) and err.message == "did not run: no arq"


def test_run_and_suite_write_junit_and_a_self_contained_report(scalelab: Any,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "run.xml"
    r = scalelab("run", "scheduler-duplicates", "--replicas", "2", "--duration", "3",
                 "--junit", str(out))
    assert r.returncode == 0, r.stderr
    (case,) = cases_of(out).values()
    assert case.is_passed and case.name == "scheduler-duplicates"
    assert case.classname == "scalelab.scheduler-duplicates"

    suite_xml = tmp_path / "suite.xml"
    r = scalelab("suite", "--quick", "--only", "scheduler-duplicates", "--junit",
                 str(suite_xml), "--results", str(tmp_path / "suites"), timeout=240)
    assert r.returncode == 0, r.stderr
    cases = cases_of(suite_xml)
    assert set(cases) == {"scheduler-duplicates guard=none",
                          "scheduler-duplicates guard=redis-lock"}
    assert all(c.is_passed for c in cases.values())
    (suite_dir,) = (tmp_path / "suites").iterdir()
    html = (suite_dir / "report.html").read_text()
    assert html.count('<svg class="timeline"') == 2  # the timelines, inline
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from elsewhere
    assert "<style>" in html and 'rel="stylesheet"' not in html and "<script" not in html
    for run in (d for d in suite_dir.iterdir() if (d / "summary.json").is_file()):
        assert f'id="{run.name}"' in html and f'href="{run.name}/summary.md"' in html
        # the variant's name is kept with the run
        assert json.loads((run / "summary.json").read_text())["label"].startswith(
            "scheduler-duplicates guard=")


def test_an_unwritable_junit_path_is_refused_before_anything_runs(scalelab: Any,
                                                                   tmp_path: Path) -> None:
    r = scalelab("run", "scheduler-duplicates", "--junit", str(tmp_path))
    assert r.returncode == 2 and "is a directory" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").iterdir())


def test_matrix_cells_are_cases_a_cell_without_a_run_skipped_or_an_error(
        tmp_path: Path) -> None:
    from experiments.matrix import Cell

    run = tmp_path / "matrix" / "20261208T000000Z-scheduler-duplicates"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({
        "experiment": "scheduler-duplicates", "parameters": {"guard": "redis-lock"},
        "window": {"start": 0, "end": 1}, "counts": {"ok": 3, "lost": 0, "duplicated": 0},
        "expected": 3, "valid": True, "expectation": "guard redis-lock: 0/3 duplicated"}))
    cells = [Cell("apscheduler3", "kill", "scheduler-duplicates", counts={"ok": 3},
                  run_dir=run.name),
             Cell("cronjob", "kill", reason="kind only"),
             Cell("arq", "pause", "scheduler-duplicates", error="arq did not start")]
    path = tmp_path / "matrix.xml"
    junit.write(path, "matrix", junit.of_matrix(cells, tmp_path / "matrix"))
    cases = cases_of(path)
    assert list(cases) == [cell.label for cell in cells]
    ran, kind_only, broken = (cases[cell.label] for cell in cells)
    assert ran.is_passed and kind_only.is_skipped
    (err,) = broken.result
    assert isinstance(err, Error) and err.message == "arq did not start"
