"""k8s-cronjob: a Kubernetes CronJob whose Job records its tick in the ledger (kind only).

Claim (Kubernetes docs, CronJob): a Job is created "about once per execution time";
two may be created, or none, so "jobs should be idempotent". ``concurrencyPolicy``
``Forbid`` skips a run while the previous one still runs, ``Allow`` (the default)
lets them overlap. A CronJob fires at most once a minute, so the run window is
minutes long. The local platform has no CronJob: locally this experiment exits 2
saying it needs the kubernetes platform.
"""

from __future__ import annotations

from typing import Any

from chaos.platform import Topology
from experiments.checker import Result, Schedule
from experiments.findings import Fix
from experiments.model import Experiment, ExperimentSpec, Param, Params, Verdict, Workload

NAME = "k8s-cronjob"

PARAMS = (
    Param("concurrency_policy", "Forbid", "the CronJob's concurrencyPolicy",
          choices=("Forbid", "Allow")),
    Param("duration", 300.0, "seconds of the run window (one tick a minute)", 60, 3600),
    Param("tick_seconds", 5.0, "how long each Job's work takes", 0, 600),
)


def judge(p: Params, r: Result) -> Verdict:
    dup, lost = r.counts["duplicated"], r.counts["lost"]
    return Verdict.of(dup == 0 and lost == 0, (
        f"CronJob ({p['concurrency_policy']}): {dup}/{r.expected} duplicated, {lost} lost "
        "(its docs: about once per execution time)"))


def build(p: dict[str, Any]) -> Experiment:
    return Experiment(
        name=NAME,
        topology=Topology(replicas={"cronjob": 1},
                          settings={"cronjob_concurrency_policy": p["concurrency_policy"],
                                    "tick_seconds": p["tick_seconds"]}),
        workload=Workload(duration=p["duration"]),
        schedules=(Schedule("tick", 60.0),),
        drain=p["tick_seconds"] + 30.0,  # a Job's pod takes seconds to be scheduled
        late_after=30.0,
    )


SPEC = ExperimentSpec(
    name=NAME,
    summary="a Kubernetes CronJob: a Job about once per execution time (kind only)",
    params=PARAMS,
    build=build,
    judge=judge,
    quick={"duration": 180.0},
    variants=(),  # not in the local suite: it needs the kubernetes platform
)

# What removes this experiment's failure (said beside a run that lost or duplicated work).
FIXES = (Fix("concurrencyPolicy Forbid", {"concurrency_policy": "Forbid"},
             when={"concurrency_policy": "Allow"}),)
