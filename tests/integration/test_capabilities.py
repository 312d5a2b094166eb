"""A fault a platform lacks is refused when the run is planned: one line, exit 2, nothing
made or started; the matrix shows such a cell as n/a with the platform's reason."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from chaos import platforms
from chaos.platforms import PLATFORMS, listed
from experiments.matrix import ROWS, plan
from tests.integration.test_bad_input import assert_refused


def _without(monkeypatch: pytest.MonkeyPatch, name: str, capability: str) -> None:
    """The platform as if it lacked ``capability``; making it fails the test."""

    def make(workdir: Path, options: Any) -> Any:
        raise AssertionError(f"the {name} platform was made for a run it cannot do")

    entry = PLATFORMS[name]
    monkeypatch.setitem(platforms.PLATFORMS, name, dataclasses.replace(
        entry, capabilities=entry.capabilities - {capability}, make=make,
        lacking={capability: f"{name} has no {capability} in this test"}))


def _platform_args(name: str) -> list[str]:
    # a cluster platform is refused before its context is even looked up
    return ["--platform", name, *(["--context", "no-such-context"]
                                  if PLATFORMS[name].cluster else [])]


@pytest.mark.parametrize("name", listed())
def test_a_run_asking_for_a_fault_the_platform_lacks_is_refused(
        scalelab_here: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> None:
    _without(monkeypatch, name, "kill")
    r = scalelab_here("run", "scheduler-duplicates", "--fault", "kill", *_platform_args(name))
    assert_refused(r, f"--platform {name} cannot do kill", "no kill in this test")
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


@pytest.mark.parametrize("name", listed())
def test_a_suite_with_a_fault_the_platform_lacks_is_refused_before_its_first_run(
        scalelab_here: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> None:
    _without(monkeypatch, name, "partition")
    # the first experiment takes no partition: the refusal still comes before it runs
    r = scalelab_here("suite", "--quick", "--only", "scheduler-duplicates,partition",
                      *_platform_args(name))
    assert_refused(r, f"--platform {name} cannot do partition")
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_the_kubernetes_platform_refuses_the_data_store_outage_it_lacks(scalelab: Any) -> None:
    r = scalelab("run", "scheduler-duplicates", "--scheduler", "apscheduler4",
                 "--fault", "datastore-outage", "--platform", "kubernetes",
                 "--context", "no-such-context")
    assert_refused(r, "cannot do datastore-outage", "no PostgreSQL")


@pytest.mark.parametrize("name", list(PLATFORMS))
def test_the_matrix_shows_a_fault_the_platform_lacks_as_n_a(name: str) -> None:
    entry = PLATFORMS[name]
    for cell in plan(ROWS, quick=False, platform=name):
        row = next(r for r in ROWS if r.key == cell.row)
        why = entry.lacks(cell.column) if cell.column != "none" else ""
        if why and cell.column in row.faults and not (row.kind_only and not entry.cluster):
            assert cell.reason == f"n/a — {why}" and not cell.values, cell
        else:
            assert not cell.reason.startswith("n/a —"), cell
