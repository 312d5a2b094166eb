"""The experiment model: parameters as bounded options, declared cells, native help."""

from __future__ import annotations

import math
from typing import Any

import pytest
from click.testing import CliRunner

from experiments import catalog
from experiments.cli import app
from experiments.model import BadInput, Cell, ExperimentSpec, Param, rule_of
from experiments.tables import TABLES


@pytest.mark.parametrize(("param", "value", "expected"), [
    (Param("n", 3, "", 1, 32), "7", 7),
    (Param("n", 3, "", 1, 32), 1, 1),
    (Param("x", 1.0, "", 0.1, 60), "0.5", 0.5),
    (Param("x", 1.0, "", 0.1, 60), 60, 60.0),
    (Param("g", "none", "", choices=("none", "lock")), "lock", "lock"),
    (Param("f", False, ""), True, True),
])
def test_a_value_within_bounds_is_taken(param: Param, value: Any, expected: Any) -> None:
    converted = param.convert(value)
    assert converted == expected and type(converted) is type(expected)


@pytest.mark.parametrize(("param", "value", "words"), [
    (Param("n", 3, "", 1, 32), 0, "at least 1"),
    (Param("n", 3, "", 1, 32), 33, "at most 32"),
    (Param("n", 3, "", 1, 32), "2.5", "integer"),
    (Param("x", 1.0, "", 0.1, 60), "nan", "finite"),
    (Param("x", 1.0, "", 0.1, 60), math.inf, "finite"),
    (Param("x", 1.0, "", None, None), "-inf", "finite"),
    (Param("x", 1.0, "", 0.1, 60), "abc", "number"),
    (Param("x", 1.0, "", 0.1, 60), True, "number"),
    (Param("g", "none", "", choices=("none", "lock")), "bogus", "bogus"),
    (Param("f", False, ""), "yes", "true or false"),
])
def test_a_value_out_of_bounds_is_bad_input_naming_the_option(param: Param, value: Any,
                                                              words: str) -> None:
    with pytest.raises(BadInput) as refused:
        param.convert(value)
    assert refused.value.args[0].startswith(param.flag) and words in refused.value.args[0]


def test_values_are_the_defaults_overridden_and_checked() -> None:
    spec = catalog.get("scheduler-duplicates")
    values = spec.values({"replicas": 5})
    assert values == {**spec.defaults(), "replicas": 5}
    with pytest.raises(BadInput, match="has no option --replica "):
        spec.values({"replica": 5})


def test_a_cell_or_a_variant_naming_no_parameter_fails_at_declaration() -> None:
    spec = catalog.get("scheduler-duplicates")
    cell = Cell("seed", "Scheduling", "AsyncIOScheduler", {"guards": "none"}, lambda s: "")
    with pytest.raises(ValueError, match="no parameter 'guards'"):
        ExperimentSpec(spec.name, "", spec.params, spec.build, spec.judge, cells=(cell,))
    with pytest.raises(ValueError, match="no parameter 'replica'"):
        ExperimentSpec(spec.name, "", spec.params, spec.build, spec.judge,
                       variants=({"replica": 2},))


def test_every_declared_cell_is_a_cell_of_a_declared_table() -> None:
    for spec in catalog.CATALOG.values():
        for cell in spec.cells:
            table = TABLES[cell.table]
            assert cell.row in table.claims, (spec.name, cell.row)
            assert cell.column in table.columns, (spec.name, cell.column)


def test_every_experiment_builds_its_suite_settings() -> None:
    for spec in catalog.CATALOG.values():
        for quick in (False, True):
            for variant in spec.suite_variants(quick):
                values = spec.values({**(spec.quick if quick else {}), **variant})
                experiment = spec.experiment(values)
                assert experiment.judge is spec.judge
                assert dict(experiment.parameters) == values


@pytest.mark.parametrize("name", list(catalog.CATALOG))
def test_run_name_help_lists_the_experiments_own_options(name: str) -> None:
    spec = catalog.get(name)
    r = CliRunner().invoke(app, ["run", name, "--help"], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert spec.summary in r.output
    for param in spec.params:
        assert param.flag in r.output, param.flag
        if param.choices:
            assert "|".join(param.choices) in r.output
        elif not isinstance(param.default, bool) and param.minimum is not None:
            assert f"[{param.minimum:g}.." in r.output, param.flag
    assert "--seed" in r.output and "--platform" in r.output


def test_the_judge_record_names_the_function_and_fingerprints_its_rule() -> None:
    spec = catalog.get("celery-kill")
    record = rule_of(spec.judge)
    assert record["name"] == "experiments.catalog.celery_kill.judge"
    assert record != rule_of(catalog.get("scheduler-duplicates").judge)
    assert rule_of(spec.judge) == record  # stable


def _probe_many(results: str, times: int) -> None:
    from pathlib import Path

    from experiments.cli import check_results_dir

    for _ in range(times):
        check_results_dir(Path(results))


def test_harnesses_checking_one_new_results_directory_at_once_never_fail(
        tmp_path: Any) -> None:
    import multiprocessing

    for attempt in range(3):
        target = tmp_path / f"try{attempt}" / "results" / "suite"  # does not exist yet
        ctx = multiprocessing.get_context("fork")
        workers = [ctx.Process(target=_probe_many, args=(str(target), 200)) for _ in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=60)
        assert [w.exitcode for w in workers] == [0, 0, 0, 0]
        assert not list(target.iterdir()), "no probe left behind"


def test_every_experiment_takes_partition_and_skew_unless_it_has_its_own() -> None:
    spec = catalog.get("background-loss")
    e = spec.experiment(spec.values({"partition": "api-2", "partition_at": 1.5,
                                     "partition_for": 3.0, "skew": "worker-1=-2.5",
                                     "mechanism": "celery"}))
    partition, skew = e.faults[-2:]
    assert (partition.action, partition.component, partition.at, partition.duration) == (
        "partition", "api-2", 1.5, 3.0)
    assert (skew.action, skew.component, skew.offset) == ("clock-skew", "worker-1", -2.5)
    assert e.topology.settings["partitionable"] and e.topology.settings["skewable"]
    plain = spec.experiment(spec.defaults())
    assert "partitionable" not in plain.topology.settings
    assert not any(f.action in ("partition", "clock-skew") for f in plain.faults)
    # the partition experiment's own options are its own, not the generic ones
    assert {p.name for p in catalog.get("partition").generic} == {"skew"}


@pytest.mark.parametrize(("given", "words"), [
    ({"partition": "api-9"}, "not in this run"),
    ({"partition": "worker"}, "not in this run"),  # no workers with background tasks
    ({"partition": "api", "partition_at": 99.0}, "inside the run"),
    ({"skew": "api-1=3601"}, "within ±3600"),
    ({"skew": "api-1"}, "TARGET=SECONDS"),
    ({"skew": "api-1=nan"}, "TARGET=SECONDS"),
])
def test_a_partition_or_skew_outside_the_run_is_bad_input(given: dict[str, Any],
                                                          words: str) -> None:
    spec = catalog.get("background-loss")
    with pytest.raises(BadInput, match=words):
        spec.experiment(spec.values(given))


def test_the_documented_catalogue_is_the_one_the_experiments_declare() -> None:
    from experiments.cli import catalogue_markdown
    from tests.conftest import REPO

    page = (REPO / "docs" / "experiments.md").read_text(encoding="utf-8")
    block = page.split("<!-- catalogue:", 1)[1].split("-->", 1)[1].split(
        "<!-- /catalogue -->", 1)[0]
    assert block.strip() == catalogue_markdown(), "run: scalelab list --markdown"
