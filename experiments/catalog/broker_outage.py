"""broker-outage: the broker Redis dies mid-run and comes back empty; the ledger does not.

Everything that lives in the broker is lost with it: queued Celery tasks, the
scheduler's per-tick locks. Measured: acknowledged tasks lost or delayed, ticks
duplicated while the locks are unavailable (the lock guard fails open), submissions
refused during the outage. The ledger is a separate Redis that no fault targets:
every event the instances say they recorded (their own counts, reported at shutdown)
must be in it — the experiment's expectation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chaos.faults import FaultStep
from chaos.platform import Topology
from experiments.checker import Result, Schedule
from experiments.findings import Fix
from experiments.model import (
    BadInput,
    Experiment,
    ExperimentSpec,
    Param,
    Params,
    TaskLoad,
    Verdict,
    Workload,
)
from experiments.theory import Expect, judged
from services.history import Event, Kind, parse_scheduled

NAME = "broker-outage"

PARAMS = (
    Param("replicas", 2, "API replicas (scheduler guarded by a per-tick lock)", 1, 16),
    Param("workers", 2, "Celery workers", 1, 16),
    Param("interval", 0.5, "seconds between scheduler ticks", 0.1, 60),
    Param("rate", 2.0, "Celery tasks sent per second", 0.1, 100),
    Param("task_seconds", 0.5, "how long each task runs", 0, 60),
    Param("outage_at", 2.0, "seconds into the run when the broker dies", 0, 3600),
    Param("outage_seconds", 3.0, "how long the broker stays down", 0.1, 600),
    Param("duration", 8.0, "seconds of the run window", 2, 3600),
)


def outage_effects(p: Params, events: Sequence[Event], result: Result) -> dict[str, Any]:
    faults = [e for e in events if e.kind == Kind.FAULT]
    down = next((e.t for e in faults if e.mechanism == "broker-outage"), None)
    up = next((e.t for e in faults if e.mechanism == "broker-back"), None)
    during = [u for u in result.units.values()
              if (fired := parse_scheduled(u.work_id)) and down is not None and up is not None
              and down <= fired[1] <= up]
    tasks = [u for u in result.units.values() if u.work_id.startswith("task-")]
    return {
        "ticks_duplicated_during_outage": sum(u.verdict == "duplicated" for u in during),
        "ticks_during_outage": len(during),
        "tasks_lost": sum(u.verdict == "lost" for u in tasks),
        "tasks_acknowledged": sum(u.acknowledged for u in tasks),
    }


def judge(p: Params, r: Result) -> Verdict:
    # The per-tick lock lives in the broker and fails open: while the broker is down every
    # replica runs every tick (duplicated = ticks during the outage, if more than one
    # replica); outside it each tick runs once. The runner adds the ledger's integrity.
    m = outage_effects(p, r.marks, r)
    during, dup_during = m["ticks_during_outage"], m["ticks_duplicated_during_outage"]
    ticks = [u for u in r.units.values() if parse_scheduled(u.work_id) and u.due]
    dup_outside = sum(u.verdict == "duplicated" for u in ticks) - dup_during
    edge = "a tick at each end of the outage may meet the broker still up"
    head = (f"broker down {p['outage_seconds']:g} s, {p['replicas']} replicas: {during} ticks "
            f"during it; tasks lost {m['tasks_lost']}/{m['tasks_acknowledged']} acknowledged")
    if during == 0 and p["outage_seconds"] >= p["interval"]:
        return Verdict.untested(f"{head}; no tick fell within the outage")
    return judged(head,
                  (Expect.within("ticks duplicated during it",
                                 during if p["replicas"] > 1 else 0,
                                 2 if p["replicas"] > 1 else 0, 0, edge), dup_during),
                  (Expect("ticks duplicated outside it", 0, 0, 2, edge), dup_outside),
                  (Expect("ticks lost", 0, 0, 1, edge),
                   sum(u.verdict == "lost" for u in ticks)))


def build(p: dict[str, Any]) -> Experiment:
    if not 0 < p["outage_at"] < p["duration"]:
        raise BadInput("--outage-at must fall inside the run (0 < outage-at < duration)")
    return Experiment(
        name=NAME,
        topology=Topology(
            replicas={"api": p["replicas"], "worker": p["workers"]},
            settings={"scheduler_interval": p["interval"], "scheduler_guard": "redis-lock",
                      "acks": "late", "worker_concurrency": 2, "tick_seconds": 0.02},
        ),
        workload=Workload(duration=p["duration"],
                          tasks=TaskLoad(p["rate"], p["task_seconds"])),
        faults=(FaultStep("broker-outage", "broker", at=p["outage_at"],
                          duration=p["outage_seconds"]),),
        schedules=(Schedule("tick", p["interval"]),),
        drain=p["task_seconds"] * 2 + 5,
        requires_intact_ledger=True,
    )


SPEC = ExperimentSpec(
    name=NAME,
    summary="the broker dies and comes back empty: queued tasks and locks go, the ledger stays",
    params=PARAMS,
    build=build,
    judge=judge,
    measure=outage_effects,
    quick={"duration": 6.0},
)

# What removes this experiment's failure (said beside a run that lost or duplicated work).
# No setting of the lab removes this failure: what the broker held is gone with it.
FIXES: tuple[Fix, ...] = ()
