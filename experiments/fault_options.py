"""Faults as experiments take them: options derived from the fault table, and their parsing.

Every fault of ``chaos.faults.FAULTS`` that declares a ``flag`` is an option of every
experiment: ``--partition TARGET --partition-at S --partition-for S`` cuts one
instance (``api-2``) or a component's seeded pick off the broker for a while;
``--skew TARGET=SECONDS`` runs one instance with its wall clock off. A lasting fault
takes ``--X-at`` and ``--X-for``; one with a number of its own (the skew's seconds)
takes it after ``=``. An experiment that declares an option of the fault's flag (the
``partition`` and ``clock-skew`` experiments) takes that fault over, with the same
parsers. ``fault_params`` gives a scheduler experiment's ``--fault`` options, from the
faults that are columns of the fixes matrix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from chaos.faults import COLUMNS, FAULTS, LASTS, OFFSET, Fault, FaultStep
from experiments.params import BadInput, Param

if TYPE_CHECKING:
    from experiments.model import Experiment

AT = 1.0  # a generic lasting fault's default start, seconds into the run


def _generic() -> list[Fault]:
    return [f for f in FAULTS.values() if f.flag]


def _value(fault: Fault) -> str:
    """What a fault's generic option takes: its target, and its number after ``=``."""
    return "TARGET=SECONDS" if fault.options else "TARGET"


def generic_params(own: set[str]) -> tuple[Param, ...]:
    """The generic faults' options, but for those whose flag ``own`` already declares."""
    params: list[Param] = []
    for fault in _generic():
        if fault.flag in own:
            continue
        params.append(Param(fault.flag, "", f"{_value(fault)}: {fault.help}"))
        if fault.lasts:
            params.append(Param(f"{fault.flag}_at", AT, f"seconds into the run when "
                                f"--{fault.flag} begins", 0, 3600))
            params.append(Param(f"{fault.flag}_for", LASTS.default,
                                f"seconds --{fault.flag} lasts", LASTS.minimum, LASTS.maximum))
    return tuple(params)


def fault_params(default_for: float, default_offset: float) -> tuple[Param, ...]:
    """A scheduler experiment's ``--fault``, ``--fault-at``, ``--fault-for`` and ``--skew``."""
    names = ("none", *(f.name for f in COLUMNS))
    helps = "; ".join(f"{f.name}: {f.help}" for f in COLUMNS)
    return (
        Param("fault", "none", f"the fault, mid-job where it can strike there ({helps})",
              choices=names),
        Param("fault_at", 3.0, "seconds into the run when the fault is due", 0, 3600),
        Param("fault_for", default_for, f"a lasting fault: {LASTS.help}", LASTS.minimum,
              LASTS.maximum),
        # SECONDS alone: --fault picks the target (the instance running a tick), where the
        # other experiments' --skew TARGET=SECONDS names it.
        Param("skew", default_offset, "--fault clock-skew: SECONDS the wall clock of the "
              "instance running a tick is set off (as TARGET=SECONDS elsewhere, the target "
              "chosen here)", OFFSET.minimum, OFFSET.maximum),
    )


def fault_step(values: Mapping[str, Any], component: str, mechanism: str) -> FaultStep | None:
    """The step ``--fault`` asks for on ``component``, mid-job on ``mechanism``'s work
    where the fault can strike there; None for ``none``."""
    if values["fault"] == "none":
        return None
    return FAULTS[values["fault"]].step(
        component, at=values["fault_at"], mid_job=mechanism,
        numbers={"duration": values["fault_for"], "offset": values["skew"]})


def settings_for(steps: tuple[FaultStep, ...]) -> dict[str, Any]:
    """The topology settings a lab must start with for these faults."""
    return {FAULTS[s.action].setting: True for s in steps if FAULTS[s.action].setting}


def parse_target(raw: str, replicas: Mapping[str, int], option: str) -> str:
    """``raw`` if it names a component of the run or one of its instances (``api-2``)."""
    live = {c: n for c, n in replicas.items() if n}
    kind, sep, serial = raw.rpartition("-")
    if raw in live or (sep and kind in live and serial.isdigit()
                       and 1 <= int(serial) <= live[kind]):
        return raw
    names = [*live, *(f"{c}-{i + 1}" for c, n in live.items() for i in range(n))]
    raise BadInput(f"{option} {raw!r} is not in this run (targets: {', '.join(names)})")


def parse_skew(raw: str, replicas: Mapping[str, int], option: str = "--skew",
               ) -> tuple[str, float]:
    """``(target, seconds)`` from ``TARGET=SECONDS``; BadInput naming what is wrong."""
    target, sep, seconds = raw.partition("=")
    try:
        offset = float(seconds)
    except ValueError:
        offset = math.nan
    if not sep or not target or not math.isfinite(offset):
        raise BadInput(f"{option} takes TARGET=SECONDS (e.g. api-1=2), not {raw!r}")
    if not OFFSET.minimum <= offset <= OFFSET.maximum:
        raise BadInput(f"{option} must be within ±{OFFSET.maximum:g} s, not {offset:g}")
    return parse_target(target, replicas, f"{option} target"), offset


def _generic_step(fault: Fault, values: Mapping[str, Any], experiment: Experiment,
                  ) -> FaultStep:
    raw, option = str(values[fault.flag]), f"--{fault.flag}"
    replicas = experiment.topology.replicas
    if fault.options:
        target, number = parse_skew(raw, replicas, option)
        numbers = {fault.options[0].field: number}
    else:
        target, numbers = parse_target(raw, replicas, option), {}
    if not fault.lasts:
        return fault.step(target, at=0.0, numbers=numbers)
    at = float(values[f"{fault.flag}_at"])
    if not 0 < at < experiment.workload.duration:
        raise BadInput(f"{option}-at must fall inside the run "
                       f"(0 < {fault.flag}-at < duration)")
    return fault.step(target, at=at,
                      numbers={**numbers, "duration": float(values[f"{fault.flag}_for"])})


def apply(experiment: Experiment, values: Mapping[str, Any], generic: set[str]) -> Experiment:
    """The experiment with the generic faults its command line asked for."""
    added = tuple(_generic_step(fault, values, experiment) for fault in _generic()
                  if fault.flag in generic and values.get(fault.flag))
    if not added:
        return experiment
    settings = {**experiment.topology.settings, **settings_for(added)}
    return replace(experiment, faults=(*experiment.faults, *added),
                   topology=replace(experiment.topology, settings=settings))
