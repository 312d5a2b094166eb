"""Faults any experiment can take from its command line: a partition and a clock skew.

``--partition TARGET --partition-at S --partition-for S`` cuts one instance (``api-2``)
or a component's seeded pick off the broker for a while (the ledger stays reachable:
it observes, it is never partitioned); ``--skew TARGET=SECONDS`` runs one instance
with its wall clock off. An experiment that declares options of these names (the
``partition`` and ``clock-skew`` experiments) handles them itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from chaos.faults import FaultStep
from chaos.platform import Topology
from chaos.skew import MAX_SKEW

if TYPE_CHECKING:
    from experiments.model import Experiment, Param


def generic_params() -> tuple[Param, ...]:
    from experiments.model import Param

    return (
        Param("partition", "", "cut this instance (e.g. api-2) or component off the broker"),
        Param("partition_at", 1.0, "seconds into the run when --partition begins", 0, 3600),
        Param("partition_for", 2.0, "seconds --partition lasts", 0.1, 600),
        Param("skew", "", "TARGET=SECONDS: that instance's wall clock runs off by SECONDS"),
    )


def target_in(topology: Topology, target: str, option: str) -> str:
    """``target`` if it names a component of the run or one of its first instances."""
    from experiments.model import BadInput

    replicas = {c: n for c, n in topology.replicas.items() if n}
    kind, sep, serial = target.rpartition("-")
    if target in replicas or (sep and kind in replicas and serial.isdigit()
                              and 1 <= int(serial) <= replicas[kind]):
        return target
    names = [*replicas, *(f"{c}-{i + 1}" for c, n in replicas.items() for i in range(n))]
    raise BadInput(f"{option} {target!r} is not in this run (targets: {', '.join(names)})")


def parse_skew(raw: str, topology: Topology) -> tuple[str, float]:
    from experiments.model import BadInput

    target, sep, seconds = raw.partition("=")
    try:
        offset = float(seconds)
    except ValueError:
        offset = math.nan
    if not sep or not target or not math.isfinite(offset):
        raise BadInput(f"--skew takes TARGET=SECONDS (e.g. api-1=2), not {raw!r}")
    if abs(offset) > MAX_SKEW:
        raise BadInput(f"--skew must be within ±{MAX_SKEW:g} s, not {offset:g}")
    return target_in(topology, target, "--skew target"), offset


def apply(experiment: Experiment, values: Mapping[str, Any], generic: set[str]) -> Experiment:
    """The experiment with the partition and skew its command line asked for."""
    from experiments.model import BadInput

    faults, settings = list(experiment.faults), dict(experiment.topology.settings)
    if "partition" in generic and values.get("partition"):
        target = target_in(experiment.topology, str(values["partition"]), "--partition")
        at, lasts = float(values["partition_at"]), float(values["partition_for"])
        if not 0 < at < experiment.workload.duration:
            raise BadInput("--partition-at must fall inside the run "
                           "(0 < partition-at < duration)")
        faults.append(FaultStep("partition", target, at=at, duration=lasts))
        settings["partitionable"] = True
    if "skew" in generic and values.get("skew"):
        target, offset = parse_skew(str(values["skew"]), experiment.topology)
        faults.append(FaultStep("skew", target, at=0.0, offset=offset))
        settings["skewable"] = True
    if faults == list(experiment.faults):
        return experiment
    return replace(experiment, faults=tuple(faults),
                   topology=replace(experiment.topology, settings=settings))
