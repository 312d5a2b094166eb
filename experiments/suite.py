"""Runs, one or many side by side: what ``scalelab run``, ``suite`` and ``matrix`` share.

``execute`` is one run: the experiment built from checked values, its faults checked
against the platform's capabilities, then run. ``plan_catalogue`` turns the catalogue
into the suite's runs; ``check`` builds each planned run and refuses it — bad
settings, a fault its platform lacks — before any of them starts; ``run_many`` runs
them, ``jobs`` at a time, each its own harness (``experiments.parallel``: harnesses
forked from one pre-imported server), drawing each run's timeline as it ends, or one
after the other in this process when ``jobs`` is 1. A command adds what is its own on
top: the suite its report, the matrix its grid, ``--repeat`` more seeds.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from rich.console import Console

from chaos.platform import PlatformError
from chaos.platforms import PlatformEntry
from experiments import catalog, store
from experiments.model import BadInput, ExperimentSpec
from experiments.progress import live
from experiments.report import variant_label
from experiments.runner import Run, new_run_directory, run_experiment
from experiments.summary import Summary

console = Console(stderr=True)
Chosen = tuple[PlatformEntry, dict[str, Any]]  # a platform and its options


class LabCannotRun(Exception):
    """The lab could not run (exit 2)."""


def check_results_dir(results: Path) -> None:
    try:
        results.mkdir(parents=True, exist_ok=True)
        # A probe of its own: the harnesses of a parallel suite check the same directory.
        with tempfile.NamedTemporaryFile(dir=results, prefix=".scalelab-write-probe-"):
            pass
    except OSError as exc:
        raise BadInput(f"results directory {str(results)!r} is not writable "
                       f"({exc.strerror or exc}); pass --results DIR") from None


def execute(spec: ExperimentSpec, values: Mapping[str, Any], *, seed: int, results: Path,
            platform: Chosen, quiet: bool, label: str | None = None,
            plot: bool = True) -> Run:
    """Run one experiment with checked parameter values on a chosen platform."""
    experiment = spec.experiment(values)
    entry, options = platform
    entry.refuse(experiment.faults)
    check_results_dir(results)
    with live(console, label or spec.name, quiet) as progress:
        return run_experiment(experiment, entry.factory(options), results, seed, progress,
                              platform_options=options, plot=plot, label=label)


@dataclass(frozen=True)
class Planned:
    """One run to do: its label, its experiment and checked values."""

    label: str
    spec: ExperimentSpec
    values: dict[str, Any]
    seed: int | None = None  # its own seed (a matrix's repeats), else the common one


@dataclass
class Outcome:
    """A planned run once done: its summary and directory, or why it has none."""

    label: str
    summary: Summary | None = None
    directory: Path | None = None
    error: str = ""


def plan_catalogue(names: Sequence[str] | None, quick: bool) -> list[Planned]:
    """The suite's runs: each experiment's variants (``--quick``: its quick settings)."""
    specs = [catalog.get(name) for name in names or catalog.CATALOG]  # unknown: BadInput
    planned = []
    for spec in specs:
        for variant in spec.suite_variants(quick):
            values = spec.values({**(spec.quick if quick else {}), **variant})
            label = variant_label({"experiment": spec.name, "parameters": dict(variant)},
                                  list(variant))
            planned.append(Planned(label, spec, values))
    return planned


def runnable(planned: Sequence[Planned], platform: Chosen) -> tuple[list[Planned], list[str]]:
    """The whole catalogue on a platform: the runs it can do, and a line for each one left
    out because its fault is one the platform lacks (a cluster's own, locally)."""
    entry, _ = platform
    kept, left_out = [], []
    for run in planned:
        try:
            entry.refuse(run.spec.experiment(run.values).faults)
        except PlatformError as exc:
            left_out.append(f"left out: {run.label}: {exc}")
            continue
        kept.append(run)
    return kept, left_out


def check(planned: Sequence[Planned], platform: Chosen, jobs: int) -> None:
    """Refuse, before anything starts: bad settings, a fault the platform lacks, runs side
    by side where they would share one lab or one port."""
    entry, options = platform
    if jobs > 1 and not entry.parallel_runs:
        raise BadInput(f"--jobs {jobs}: runs on the {entry.name} platform share one lab; "
                       "use --jobs 1")
    if jobs > 1 and options.get("ledger_port") is not None:
        raise BadInput("--ledger-port with --jobs above 1: the runs would share one port")
    for run in planned:
        entry.refuse(run.spec.experiment(run.values).faults)


def _run_directories(directory: Path) -> dict[str, Path]:
    """The runs stored under ``directory``, by run id."""
    found = {}
    for d in directory.iterdir():
        summary_json = d / store.SUMMARY_JSON
        if summary_json.is_file():
            found[json.loads(summary_json.read_text())["run_id"]] = d
    return found


def _seed(run: Planned, seed: int) -> int:
    return seed if run.seed is None else run.seed


def _longest(run: Planned) -> float:
    """A run's longest course: its workload and its longest drain."""
    experiment = run.spec.experiment(run.values)
    return experiment.workload.duration + experiment.drain


def run_many(planned: Sequence[Planned], directory: Path, *, seed: int, jobs: int,
             platform: Chosen, keep_going: bool = False) -> list[Outcome]:
    """Every planned run into ``directory``, ``jobs`` at a time; in their order. A run that
    fails stops the rest (LabCannotRun), unless ``keep_going``: then its outcome says why."""
    if jobs == 1:
        return [_in_process(run, directory, seed, platform, keep_going) for run in planned]
    from experiments.parallel import ChildRun, run_children

    entry, options = platform
    children = [ChildRun(run.label, {"experiment": run.spec.name, "values": run.values,
                                     "seed": _seed(run, seed),
                                     "results": str(directory.resolve()),
                                     "platform": entry.name, "platform_options": options,
                                     "label": run.label, "plot": False},
                         weight=_longest(run))
                for run in planned]
    console.print(f"running {len(children)} runs, {jobs} at a time ...")
    # Every run's timeline is drawn here as it ends: matplotlib imported once, not per run.
    run_children(children, jobs, directory / "harness-logs",
                 on_done=lambda child: _draw_timeline(directory, child.summary))
    failed = [c for c in children if c.summary is None]
    if failed and not keep_going:
        raise LabCannotRun(f"{failed[0].label}: {failed[0].error} "
                           f"(logs: {directory / 'harness-logs'})")
    by_run = _run_directories(directory)
    return [Outcome(c.label, cast(Summary, c.summary), by_run.get(str(c.summary["run_id"])))
            if c.summary is not None else
            Outcome(c.label, error=c.error or f"exit {c.returncode}") for c in children]


def _in_process(run: Planned, directory: Path, seed: int, platform: Chosen,
                keep_going: bool) -> Outcome:
    try:
        r = execute(run.spec, run.values, seed=_seed(run, seed), results=directory,
                    platform=platform,
                    quiet=False, label=run.label)
    except (BadInput, PlatformError, LabCannotRun) as exc:
        if not keep_going:
            raise
        return Outcome(run.label, error=str(exc))
    return Outcome(run.label, r.summary, r.directory)


def _draw_timeline(directory: Path, summary: Mapping[str, Any] | None) -> None:
    if summary is not None:
        found = _run_directories(directory).get(str(summary["run_id"]))
        if found is not None:
            store.draw_timeline(found)


def suite_directory(results: Path, kind: str = "suite") -> Path:
    """A new directory for a suite's (or a matrix's) runs under ``results``."""
    directory = new_run_directory(results, kind)
    directory.mkdir(parents=True)
    return directory
