"""How a run is said: its work, its claim, and the fix beside a failure (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from experiments import catalog, findings
from experiments.model import BadInput


def run(experiment: str, counts: dict[str, int], **params: Any) -> dict[str, Any]:
    spec = catalog.get(experiment)
    return {"experiment": experiment, "parameters": {**spec.defaults(), **params},
            "counts": {"ok": 0, "lost": 0, "duplicated": 0, "recovered": 0, "in_doubt": 0,
                       "unexpected": 0, **counts},
            "expected": sum(counts.values()), "executions": 30, "valid": True,
            "expectation": "unguarded with 3 replicas: 10/10 duplicated"}


def test_every_fix_names_options_its_experiment_has() -> None:
    assert set(catalog.FIXES) == set(catalog.CATALOG)
    for name, fixes in catalog.FIXES.items():
        own = {p.name for p in catalog.get(name).all_params}
        for fix in fixes:
            target = catalog.get(fix.experiment) if fix.experiment else catalog.get(name)
            assert set(fix.options) <= {p.name for p in target.all_params}, (name, fix)
            assert set(fix.when) <= own, (name, fix)
    # every experiment but the broker's outage (nothing in the lab brings its data back)
    assert [n for n, f in catalog.FIXES.items() if not f] == ["broker-outage"]


def test_work_and_claim_are_said_apart_and_the_work_first() -> None:
    s = run("scheduler-duplicates", {"duplicated": 10})
    assert findings.work_line(s) == ("10 units due or acknowledged, 30 executions: "
                                     "10 duplicated, 0 lost")
    assert findings.verdict_line(s) == "demonstrated: unguarded with 3 replicas: 10/10 duplicated"
    assert findings.demonstration({**s, "valid": False}) == "not-demonstrated"
    assert findings.demonstration({**s, "verdict": "untested"}) == "untested"
    marked = findings.rich_work_line(s)
    assert "[bold red]10 duplicated[/]" in marked and "[bold red]0 lost" not in marked


def test_a_failure_ends_with_its_fix_and_where_the_fix_was_measured() -> None:
    broken = run("scheduler-duplicates", {"duplicated": 10}, replicas=2)
    fixed = run("scheduler-duplicates", {"ok": 10}, replicas=2, guard="redis-lock")
    other = run("scheduler-duplicates", {"ok": 10}, replicas=5, guard="redis-lock")
    lines = findings.fix_lines(broken, [("../b", other), ("../a", fixed)])
    assert lines == [
        "fix (a Redis lock per tick): scalelab run scheduler-duplicates --replicas 2 "
        "--guard redis-lock",
        "measured: ../a: 10 units due or acknowledged, 30 executions: 10 ok, 0 lost, "
        "0 duplicated"]
    assert findings.fix_lines(fixed) == []  # nothing lost or duplicated: no fix to offer
    # another mechanism's experiment shows the fix
    cut = run("partition", {"duplicated": 3}, mechanism="worker")
    assert findings.fix_lines(cut) == [
        "fix (an idempotency key in the task): scalelab run celery-kill --acks late "
        "--kill-at after-effect --idempotent"]


def test_figures_are_rounded_for_reading() -> None:
    assert findings.figure(7.9125000000000005) == "7.913"
    assert findings.figure(2.0) == "2"
    assert findings.figure([0.1 + 0.2, 3]) == "0.3, 3"


def test_an_unknown_experiment_suggests_the_closest_name() -> None:
    with pytest.raises(BadInput, match="did you mean 'scheduler-duplicates'"):
        catalog.get("scheduler-duplicate")
