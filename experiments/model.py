"""The model, after Jepsen: an experiment is a plain value.

``Experiment(name, topology, workload, faults, checker settings, expectation)``:
the topology says what runs, the workload what the harness asks for, the faults
what the nemesis does, the schedules which units are due without anyone asking,
and the expectation what the lab claims — checked against the measured result.
An experiment module builds its Experiment from parameters (``Param``) that the
CLI parses and bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chaos.faults import FaultStep
from chaos.platform import Topology
from experiments.checker import Result, Schedule
from services.ledger import Event


class BadInput(ValueError):
    """A parameter the lab cannot run with; the CLI prints it on one line and exits 2."""


@dataclass(frozen=True)
class RequestLoad:
    """POSTs to API replicas, spread over the ready ones like a Service would.

    Each request carries a fresh work_id; a 202 is an acknowledgement (an intent).
    """

    path: str
    rate: float  # requests per second
    seconds: float  # the work each request asks for
    acknowledged: bool = True  # False: fire-and-forget load that is not a unit of work


@dataclass(frozen=True)
class TaskLoad:
    """Celery tasks sent straight to the broker; the task id is the work_id."""

    rate: float
    seconds: float
    kill_window: float = 0.0  # pause between the task's effect and its ack


@dataclass(frozen=True)
class Workload:
    duration: float
    requests: tuple[RequestLoad, ...] = ()
    tasks: TaskLoad | None = None


Verdict = tuple[bool, str]


@dataclass(frozen=True)
class Experiment:
    name: str
    topology: Topology
    workload: Workload
    expectation: Callable[[Result], Verdict]
    faults: tuple[FaultStep, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    drain: float = 5.0  # seconds to wait after the workload for acknowledged work to finish
    redelivers: bool = False  # interrupted work may run again later (Celery acks late)
    requires_intact_ledger: bool = False  # valid only if instances' own counts match the ledger
    late_after: float = 0.5  # a due unit starting later than this is late
    parameters: Mapping[str, Any] = field(default_factory=dict)
    # Extra figures of this experiment, from the history and the checker's result.
    measure: Callable[[Sequence[Event], Result], dict[str, Any]] | None = None

    def judge(self, result: Result, integrity: Mapping[str, Any]) -> Verdict:
        """The stated expectation, and the ledger's integrity where the experiment asks."""
        valid, sentence = self.expectation(result)
        if self.requires_intact_ledger:
            intact = bool(integrity.get("intact")) and integrity.get("reporting", 0) > 0
            valid = valid and intact
            sentence += (f"; ledger intact: {integrity['found_in_ledger']}/"
                         f"{integrity['reported_events']} events the instances reported"
                         if intact else f"; LEDGER NOT INTACT: {dict(integrity)}")
        return valid, sentence


@dataclass(frozen=True)
class Param:
    """One ``--option`` of an experiment, with its bounds."""

    name: str
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, raw: str | None) -> Any:
        """Turn the option's text into a value, or raise BadInput naming the option."""
        kind = type(self.default)
        if kind is bool:
            if raw is None:
                return True
            if raw.lower() in ("true", "yes", "1"):
                return True
            if raw.lower() in ("false", "no", "0"):
                return False
            raise BadInput(f"{self.flag} takes no value or true/false, not {raw!r}")
        if raw is None:
            raise BadInput(f"{self.flag} needs a value")
        if self.choices:
            if raw not in self.choices:
                raise BadInput(f"{self.flag} must be one of {', '.join(self.choices)}, "
                               f"not {raw!r}")
            return raw
        try:
            value = kind(raw)
        except ValueError:
            raise BadInput(f"{self.flag} must be a{'n integer' if kind is int else ' number'}, "
                           f"not {raw!r}") from None
        if isinstance(value, float) and value != value:  # NaN
            raise BadInput(f"{self.flag} must be a number, not {raw!r}")
        if self.minimum is not None and value < self.minimum:
            raise BadInput(f"{self.flag} must be at least {self.minimum:g}, not {raw}")
        if self.maximum is not None and value > self.maximum:
            raise BadInput(f"{self.flag} must be at most {self.maximum:g}, not {raw}")
        return value


@dataclass(frozen=True)
class ExperimentSpec:
    """An experiment as the catalogue lists it: name, claim, parameters, builder."""

    name: str
    summary: str
    params: tuple[Param, ...]
    build: Callable[[dict[str, Any]], Experiment]
    quick: Mapping[str, Any] = field(default_factory=dict)  # the suite's --quick settings
    variants: tuple[Mapping[str, Any], ...] = ({},)  # what the suite runs
    quick_variants: tuple[Mapping[str, Any], ...] | None = None  # --quick: these (or all)

    def suite_variants(self, quick: bool) -> tuple[Mapping[str, Any], ...]:
        return self.quick_variants if quick and self.quick_variants is not None else self.variants

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def parse_args(self, args: list[str]) -> dict[str, Any]:
        """``["--replicas", "3", "--guard=redis-lock"]`` -> values, every one bounded."""
        by_flag = {p.flag: p for p in self.params}
        values = self.defaults()
        i = 0
        while i < len(args):
            arg = args[i]
            flag, eq, inline = arg.partition("=")
            param = by_flag.get(flag)
            if param is None:
                known = " ".join(sorted(by_flag))
                raise BadInput(f"{self.name} has no option {flag!r} (options: {known})")
            if eq:
                raw: str | None = inline
            elif isinstance(param.default, bool):
                raw = None
            elif i + 1 < len(args):
                i += 1
                raw = args[i]
            else:
                raw = None
            values[param.name] = param.parse(raw)
            i += 1
        return values
