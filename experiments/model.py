"""The model, after Jepsen: an experiment is a plain value.

``Experiment(name, topology, workload, faults, checker settings, expectation)``:
the topology says what runs, the workload what the harness asks for, the faults
what the nemesis does, the schedules which units are due without anyone asking,
and the expectation what the lab claims — checked against the measured result.
An experiment module declares, next to each other: its parameters (``Param``, which
become its command's options), ``build`` (parameters -> Experiment), ``judge`` (the
expectation: parameters and the checker's result -> a ``Verdict``: demonstrated, not
demonstrated or untested, and a sentence),
``measure`` (its extra figures) and the table cells it fills (``Cell``). Judge,
measure and cells are plain named functions of their inputs, so a stored run can be
judged again by the same rule, and the report needs no knowledge of any experiment.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from chaos.faults import FaultStep
from chaos.platform import Topology
from experiments import fault_options
from experiments.checker import Result, Schedule
from experiments.params import BadInput as BadInput
from experiments.params import Param as Param
from experiments.summary import (
    DEMONSTRATED,
    NOT_DEMONSTRATED,
    OUTCOMES,
    UNTESTED,
    JudgeRecord,
    Summary,
)
from services.history import Event


@dataclass(frozen=True)
class RequestLoad:
    """POSTs to API replicas, spread over the ready ones like a Service would.

    Each request carries a fresh work_id; a 202 is an acknowledgement (an intent).
    """

    path: str
    rate: float  # requests per second
    seconds: float  # the work each request asks for
    acknowledged: bool = True  # False: fire-and-forget load that is not a unit of work
    # A user's endpoint (``scalelab probe``): this method and JSON body, the work_id in a
    # header; else the lab's own endpoint, the work_id and seconds as query parameters.
    method: str = "POST"
    body: Any = None
    own: bool = True


@dataclass(frozen=True)
class TaskLoad:
    """Celery tasks sent straight to the broker; the task id is the work_id."""

    rate: float
    seconds: float
    kill_window: float = 0.0  # pause between the task's effect and its ack


@dataclass(frozen=True)
class PublishLoad:
    """A user's Celery task published by name (``scalelab probe``); its id is the work_id."""

    task: str
    rate: float
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Workload:
    duration: float
    requests: tuple[RequestLoad, ...] = ()
    tasks: TaskLoad | None = None
    publish: tuple[PublishLoad, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """What a run says of its experiment's expectation.

    ``demonstrated``: the measured counts are what the theory gives, within its
    tolerance; ``not_demonstrated``: they are not; ``untested``: the fault the
    expectation depends on did not happen (refused, never fired, or struck with no
    work in flight where the claim needs it), so the counts say nothing either way.
    Never "held" by accident: a judge states which one, with its sentence.
    """

    outcome: str
    sentence: str

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown verdict outcome {self.outcome!r}")

    @classmethod
    def of(cls, demonstrated: bool, sentence: str) -> Verdict:
        return cls(DEMONSTRATED if demonstrated else NOT_DEMONSTRATED, sentence)

    @classmethod
    def untested(cls, sentence: str) -> Verdict:
        return cls(UNTESTED, sentence)

    @property
    def demonstrated(self) -> bool:
        return self.outcome == DEMONSTRATED

    @property
    def words(self) -> str:
        """How a person reads it: ``not demonstrated``."""
        return self.outcome.replace("_", " ")


Params = Mapping[str, Any]  # an experiment's parameter values, by parameter name
# A judge returns a Verdict (a ``(held, sentence)`` pair is read as demonstrated or not).
Judge = Callable[[Params, Result], "Verdict | tuple[bool, str]"]
Measure = Callable[[Params, Sequence[Event], Result], dict[str, Any]]


@dataclass(frozen=True)
class Experiment:
    name: str
    topology: Topology
    workload: Workload
    faults: tuple[FaultStep, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    drain: float = 5.0  # seconds to wait after the workload for acknowledged work to finish
    redelivers: bool = False  # interrupted work may run again later (Celery acks late)
    requires_intact_ledger: bool = False  # valid only if instances' own counts match the ledger
    late_after: float = 0.5  # a due unit starting later than this is late
    # More schedules, read after the run from what the instances announced in the ledger
    # (a user's app under ``scalelab probe`` says which jobs its schedulers run).
    announced: Callable[[Mapping[str, Mapping[str, Any]]], tuple[Schedule, ...]] | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    # Set by the spec that built it: the expectation and the extra figures.
    judge: Judge | None = None
    measure: Measure | None = None

    def verdict(self, result: Result, integrity: Mapping[str, Any],
                fault_errors: Sequence[str] = ()) -> Verdict:
        """The stated expectation; untested when a fault of the run could not be applied
        (the run is not the one asked for); and the ledger's integrity where asked."""
        if self.judge is None:
            return Verdict.of(True, "no expectation stated")
        judged = self.judge(self.parameters, result)
        v = judged if isinstance(judged, Verdict) else Verdict.of(*judged)
        if fault_errors:
            return Verdict.untested(
                f"{len(fault_errors)} fault(s) did not happen "
                f"({'; '.join(fault_errors)}), so the counts test nothing "
                f"(they were: {v.sentence})")
        if self.requires_intact_ledger:
            intact = bool(integrity.get("intact")) and integrity.get("reporting", 0) > 0
            v = Verdict(v.outcome if intact or v.outcome == UNTESTED else NOT_DEMONSTRATED,
                        v.sentence + (f"; ledger intact: {integrity['found_in_ledger']}/"
                                      f"{integrity['reported_events']} events the instances "
                                      "reported" if intact
                                      else f"; LEDGER NOT INTACT: {dict(integrity)}"))
        return v

    def figures(self, events: Sequence[Event], result: Result) -> dict[str, Any]:
        return self.measure(self.parameters, events, result) if self.measure else {}


@dataclass(frozen=True)
class Cell:
    """A cell of one of the report's tables that runs of this experiment fill.

    ``where``: the parameters a run must have (a value, or a test of the value);
    ``says``: how one matching run is said in the cell ("" says nothing).
    """

    table: str
    row: str
    column: str
    where: Mapping[str, Any]
    says: Callable[[Summary], str]

    def matches(self, experiment: str, summary: Summary) -> bool:
        if summary.get("experiment") != experiment:
            return False
        params = summary.get("parameters") or {}
        return all(v(params.get(k)) if callable(v) else params.get(k) == v
                   for k, v in self.where.items())


def rule_of(judge: Judge) -> JudgeRecord:
    """Which judge this is, and a fingerprint of its rule (its source) to notice a change."""
    try:
        source = inspect.getsource(judge)
    except (OSError, TypeError):
        source = judge.__qualname__
    return {"name": f"{judge.__module__}.{judge.__qualname__}",
            "rule": hashlib.sha256(source.encode()).hexdigest()[:12]}


@dataclass(frozen=True)
class ExperimentSpec:
    """An experiment as the catalogue lists it: its name, claim, parameters and rules."""

    name: str
    summary: str
    params: tuple[Param, ...]
    build: Callable[[dict[str, Any]], Experiment]
    judge: Judge
    measure: Measure | None = None
    cells: tuple[Cell, ...] = ()
    quick: Mapping[str, Any] = field(default_factory=dict)  # the suite's --quick settings
    variants: tuple[Mapping[str, Any], ...] = ({},)  # what the suite runs
    quick_variants: tuple[Mapping[str, Any], ...] | None = None  # --quick: these (or all)

    @property
    def generic(self) -> tuple[Param, ...]:
        """The faults every experiment takes from its command line, unless it declares
        an option of the fault's name itself (see ``experiments.fault_options``)."""
        return fault_options.generic_params({p.name for p in self.params})

    @property
    def all_params(self) -> tuple[Param, ...]:
        return (*self.params, *self.generic)

    def __post_init__(self) -> None:
        names = {p.name for p in self.all_params}
        settings = [self.quick, *self.variants, *(self.quick_variants or ())]
        for where in [*(c.where for c in self.cells), *settings]:
            unknown = set(where) - names
            if unknown:
                raise ValueError(f"{self.name}: no parameter {sorted(unknown)[0]!r} "
                                 f"(parameters: {', '.join(sorted(names))})")

    def suite_variants(self, quick: bool) -> tuple[Mapping[str, Any], ...]:
        return self.quick_variants if quick and self.quick_variants is not None else self.variants

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.all_params}

    def values(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every parameter's value: the defaults, overridden by ``given`` (each checked)."""
        by_name = {p.name: p for p in self.all_params}
        values = self.defaults()
        for key, value in given.items():
            param = by_name.get(key)
            if param is None:
                known = " ".join(sorted(p.flag for p in self.all_params))
                raise BadInput(f"{self.name} has no option --{key.replace('_', '-')} "
                               f"(options: {known})")
            values[key] = param.convert(value)
        return values

    def experiment(self, values: Mapping[str, Any]) -> Experiment:
        """Build from checked values; the judge and measure come with it."""
        built = fault_options.apply(self.build(dict(values)), values,
                                    {p.name for p in self.generic})
        return replace(built, parameters=dict(values), judge=self.judge, measure=self.measure)
