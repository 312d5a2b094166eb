"""Repeat runs: seeds parsed, each cell's spread, and an unstable cell named with its runs."""

from __future__ import annotations

from typing import Any

import pytest

from experiments.spread import parse_seeds, spread_markdown, spreads


def run(seed: int, lost: int, verdict: str = "demonstrated") -> dict[str, Any]:
    return {"experiment": "celery-kill", "seed": seed, "run_id": f"r{seed}", "expected": 10,
            "extra_executions": 0, "verdict": verdict,
            "counts": {"ok": 10 - lost, "lost": lost, "duplicated": 0, "recovered": 0,
                       "unexpected": 0, "in_doubt": 0}}


def test_seeds_are_a_range_or_a_list() -> None:
    assert parse_seeds("1-5") == [1, 2, 3, 4, 5]
    assert parse_seeds("3") == [3] and parse_seeds("1,4,7") == [1, 4, 7]
    for bad in ("5-1", "a-b", "1,1", "", "1-100"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)


def test_each_cell_has_its_min_median_max_and_how_many_demonstrated() -> None:
    cells = spreads([("early", run(1, 2)), ("late", run(1, 0)), ("early", run(2, 3)),
                     ("early", run(3, 7, "not_demonstrated")), ("late", run(2, 0))])
    early, late = cells
    assert early.of("lost") == (2, 3, 7) and early.said("lost") == "2 / 3 / 7"
    assert early.held() == "2/3 UNSTABLE" and early.unstable
    assert early.broke() == ["seed 3 (not demonstrated, run r3)"]
    assert late.said("lost") == "0" and late.held() == "2/2" and not late.unstable
    md = spread_markdown(cells)
    assert "| early | 10 | 3 / 7 / 8 | 2 / 3 / 7 |" in md
    assert "- early: seed 3 (not demonstrated, run r3)" in md and "- late" not in md


def test_a_cell_that_never_demonstrates_is_not_unstable_but_zero_of_n() -> None:
    (cell,) = spreads([("x", run(s, 1, "untested")) for s in (1, 2)])
    assert cell.held() == "0/2" and not cell.unstable
