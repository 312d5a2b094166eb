"""What a person reads: `scalelab report` on stored runs, the suite's report.md, progress."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from experiments import catalog
from experiments.report import suite_markdown
from tests.unit.test_store import stored_run

COUNTED = ("counts", "expected", "executions", "extra_executions", "refused", "ignored", "late",
           "valid", "expectation")


def one_line_error(r: Any, *words: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return str(lines[0])


# --- on hand-written runs (no lab processes) ------------------------------------------------

def test_report_exits_by_the_rechecked_expectation(scalelab_here: Any, tmp_path: Path) -> None:
    scalelab = scalelab_here  # nothing to start: the report runs in this process
    run = tmp_path / "run"
    stored_run(run, replicas=2)
    (run / "summary.md").unlink()
    (run / "timeline.png").unlink()
    r = scalelab("report", str(run))
    assert r.returncode == 0, r.stderr
    assert "unguarded, 2 replicas" in r.stdout
    assert (run / "summary.md").read_text().startswith("# scheduler-duplicates")
    assert (run / "timeline.png").read_bytes()[:4] == b"\x89PNG"

    one = tmp_path / "one"  # one replica ran each tick: no duplicate, so the claim fails
    stored_run(one, replicas=1)
    s = json.loads((one / "summary.json").read_text())
    s["parameters"]["replicas"] = 2
    (one / "summary.json").write_text(json.dumps(s))
    r = scalelab("report", str(one), "--json")
    assert r.returncode == 4, r.stderr  # the re-check differs from what was stored
    assert r.summary["verdict"] == "not_demonstrated" and r.summary["counts"]["duplicated"] == 0
    said = "verdict: stored demonstrated, re-checked not demonstrated"
    assert f"re-check differs from the stored run: {said}" in r.stderr
    # summary.json and summary.md both say what the re-check found, with the difference
    stored = json.loads((one / "summary.json").read_text())
    assert stored["verdict"] == "not_demonstrated" and stored["valid"] is False
    assert stored["rechecked"]["differences"] == [said]
    md = (one / "summary.md").read_text()
    assert "not demonstrated" in md and said in md
    r = scalelab("report", str(one))  # now the record stands: exit by its verdict
    assert r.returncode == 1 and "re-check differs" not in r.stderr, r.stderr


def test_report_of_a_tampered_count_exits_4_and_rewrites_both_files(
        scalelab_here: Any, tmp_path: Path) -> None:
    run = tmp_path / "run"
    stored_run(run, replicas=3)
    s = json.loads((run / "summary.json").read_text())
    s["counts"]["duplicated"] -= 1
    s["counts"]["ok"] += 1
    (run / "summary.json").write_text(json.dumps(s))
    r = scalelab_here("report", str(run))
    assert r.returncode == 4
    assert "duplicated: stored 4, re-checked 5" in r.stderr
    stored = json.loads((run / "summary.json").read_text())
    assert stored["counts"]["duplicated"] == 5 and stored["counts"]["ok"] == 0
    assert "| duplicated | 5 |" in (run / "summary.md").read_text()


def test_report_on_what_is_not_a_run_is_exit_2(scalelab_here: Any, tmp_path: Path) -> None:
    scalelab = scalelab_here
    one_line_error(scalelab("report", str(tmp_path / "nowhere")), "no such run directory")
    one_line_error(scalelab("report", str(tmp_path)), "not a run directory")
    run = tmp_path / "run"
    stored_run(run)
    s = json.loads((run / "summary.json").read_text())
    s["experiment"] = "no-such-experiment"
    (run / "summary.json").write_text(json.dumps(s))
    one_line_error(scalelab("report", str(run)), "unknown experiment")


# --- on a real run --------------------------------------------------------------------------

@pytest.fixture
def real_run(scalelab: Any, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    r = scalelab("run", "scheduler-duplicates", "--replicas", "2", "--scale-to", "3",
                 "--scale-at", "2", "--duration", "4", "--plot", "--json")
    assert r.returncode == 0, r.stderr
    (run,) = (tmp_path / "results").iterdir()
    return run, r.summary


@pytest.mark.slow
def test_report_reproduces_a_real_runs_counts_exactly(
        scalelab: Any, real_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    run, summary = real_run
    assert {p.name for p in run.iterdir()} >= {"summary.json", "summary.md", "events.jsonl",
                                                "timeline.png"}
    assert json.loads((run / "summary.json").read_text()) == summary
    assert "scale-up" in (run / "summary.md").read_text()
    (run / "summary.md").unlink()
    (run / "timeline.png").unlink()

    r = scalelab("report", str(run), "--json")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # nothing differs
    assert {k: r.summary[k] for k in COUNTED} == {k: summary[k] for k in COUNTED}
    assert summary["counts"]["duplicated"] >= 1
    assert (run / "summary.md").exists() and (run / "timeline.png").exists()

    table = scalelab("report", str(run))
    assert table.returncode == 0
    for number in (summary["expected"], summary["executions"], summary["extra_executions"]):
        assert re.search(rf"│\s+{number} │", table.stdout), table.stdout

    # Corrupt line 3 of a copy: exit 2, the file and line named on one line.
    bad = tmp_path / "corrupt"
    shutil.copytree(run, bad)
    lines = (bad / "events.jsonl").read_text().splitlines(keepends=True)
    lines[2] = lines[2][:10] + "#garbage#" + lines[2][10:]
    (bad / "events.jsonl").write_text("".join(lines))
    one_line_error(scalelab("report", str(bad)), f"{bad / 'events.jsonl'}:3:", "corrupted")

    # Truncate the copy mid-way through its last line, as a crash while writing would.
    full = (run / "events.jsonl").read_bytes()
    (bad / "events.jsonl").write_bytes(full[: len(full) - 20])
    last = full.count(b"\n")
    one_line_error(scalelab("report", str(bad)), f"{bad / 'events.jsonl'}:{last}:", "truncated")


# --- the suite report and progress, pure ----------------------------------------------------

def _summary(experiment: str, lost: int, expected: int, **params: Any) -> dict[str, Any]:
    counts = {"ok": expected - lost, "lost": lost, "duplicated": 0, "recovered": 0,
              "unexpected": 0, "in_doubt": 0}
    return {"experiment": experiment, "parameters": params, "counts": counts,
            "expected": expected, "executions": expected - lost, "extra_executions": 0,
            "late": 0, "faults": [], "valid": True, "expectation": f"lost {lost}"}


def test_the_measured_seed_table_says_what_each_run_measured() -> None:
    runs = [("background-loss sigkill",
             _summary("background-loss", 7, 20, mechanism="background", kill="sigkill",
                      kills=2, replicas=3), "a"),
            ("background-loss celery",
             _summary("background-loss", 0, 20, mechanism="celery", kill="sigkill",
                      kills=2, replicas=3), "b")]
    md = suite_markdown(runs, seed=4, quick=True)
    row = next(line for line in md.splitlines() if line.startswith("| Survives restarts"))
    bt, scheduler, celery = row.split(" | ")[1:4]
    assert bt == "advice: no; measured: lost 7/20 on SIGKILL of 2 replica(s)"
    assert scheduler == "advice: no; not measured"
    assert celery.startswith("advice: yes; measured: lost 0/20 when API replicas were killed")
    assert "[summary](a/summary.md)" in md and "![timeline of background-loss celery]" \
        "(b/timeline.png)" in md
    assert "2 runs (seed 4, quick)" in md


def test_list_is_aligned_within_80_columns(scalelab_here: Any) -> None:
    r = scalelab_here("list")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    starts = {len(line) - len(line[len(spec.name):].lstrip()) for line in lines
              for spec in catalog.CATALOG.values() if line.startswith(spec.name + " ")}
    assert len(starts) == 1  # every summary begins in one column
    assert {line.split()[0] for line in lines if not line.startswith(" ")} == set(
        catalog.CATALOG)


def test_an_unknown_experiment_says_which_was_meant(scalelab_here: Any) -> None:
    line = one_line_error(scalelab_here("run", "scheduler-duplicate"), "unknown experiment")
    assert "did you mean 'scheduler-duplicates'?" in line
