"""leader-failover: the scheduler guarded by leader election, and a leader that pauses.

Only the replica holding a lease (in the broker Redis locally; a Kubernetes Lease
on a cluster) runs ticks. The leader is paused (SIGSTOP) mid-job for longer than its
lease: another replica takes over, and the old leader, resumed, still believes it
leads until its next renewal — its ticks duplicate the new leader's. ``--fencing``
checks the lease's token where the effect is written (the ledger): the stale
leader's writes are refused. Counted: duplicates, refused writes, and the
leaderless gap (ticks lost while the lease of the paused leader ran out).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from chaos.faults import FaultStep
from chaos.platform import Topology
from experiments.checker import Result, Schedule
from experiments.findings import Fix
from experiments.model import (
    BadInput,
    Cell,
    Experiment,
    ExperimentSpec,
    Param,
    Params,
    Verdict,
    Workload,
)
from experiments.summary import n, param
from services.history import Event, Kind

NAME = "leader-failover"

PARAMS = (
    Param("replicas", 3, "API replicas", 2, 16),
    Param("interval", 0.5, "seconds between ticks", 0.1, 60),
    Param("lease", 2.0, "leader lease, seconds", 0.5, 600),
    Param("pause_at", 2.0, "seconds into the run of the pause", 0, 3600),
    Param("pause_seconds", 4.0, "how long the leader stays paused", 0.1, 600),
    Param("fencing", False, "check the leader's fencing token at the ledger"),
    Param("tick_seconds", 0.2, "how long each tick's work takes", 0, 60),
    Param("duration", 10.0, "seconds of the run window", 2, 3600),
)


def failover(p: Params, events: Sequence[Event], result: Result) -> dict[str, Any]:
    finishes = sorted(e.t for e in events if e.kind == Kind.FINISH and e.mechanism == "apscheduler")
    gaps = [b - a for a, b in itertools.pairwise(finishes)]
    leaders = sorted({e.instance for e in events
                      if e.kind == Kind.FINISH and e.mechanism == "apscheduler"})
    return {"leaderless_seconds": round(max(gaps), 3) if gaps else None,
            "ticks_lost": result.counts["lost"], "refused_writes": result.refused,
            "leaders": leaders}


def judge(p: Params, r: Result) -> Verdict:
    dup, refused = r.counts["duplicated"], r.refused
    text = (f"leader paused {p['pause_seconds']:g}s past a {p['lease']:g}s lease, fencing "
            f"{'on' if p['fencing'] else 'off'}: duplicated {dup}/{r.expected}, "
            f"refused {refused}, lost {r.counts['lost']}")
    if p["fencing"]:
        return Verdict.of(dup == 0, text + " (want 0 duplicated)")
    return Verdict.of(dup > 0, text + " (want duplicated > 0)")


CELLS = (
    Cell("seed", "Retries", "AsyncIOScheduler", {"fencing": False},
         lambda s: f"{s['counts'].get('lost', 0)} tick(s) lost in a failover, none re-run"),
    Cell("seed", "Horizontal scaling", "AsyncIOScheduler", {},
         lambda s: f"leader election, leader paused{' (fenced)' if param(s, 'fencing') else ''}"
                   f": {n(s, 'duplicated')}, {s.get('refused', 0)} refused"),
)


def build(p: dict[str, Any]) -> Experiment:
    if not 0 < p["pause_at"] < p["duration"]:
        raise BadInput("--pause-at must fall inside the run (0 < pause-at < duration)")
    if p["tick_seconds"] >= p["interval"]:
        raise BadInput("--tick-seconds must be shorter than --interval")
    return Experiment(
        name=NAME,
        topology=Topology(
            replicas={"api": p["replicas"]},
            settings={"scheduler_interval": p["interval"], "scheduler_guard": "leader",
                      "lease_seconds": p["lease"], "fencing": p["fencing"],
                      "tick_seconds": p["tick_seconds"]},
        ),
        workload=Workload(duration=p["duration"]),
        # The leader is whoever just finished a tick: pause it right then, before its
        # next tick starts. Paused mid-tick instead, APScheduler's max_instances=1 would
        # skip its first tick after the resume (the interrupted one still runs) and the
        # renewal would depose it before the next: no stale tick would run.
        faults=(FaultStep("pause", "api", at=p["pause_at"], on="between",
                          mechanism="apscheduler", duration=p["pause_seconds"]),),
        schedules=(Schedule("tick", p["interval"]),),
        drain=p["tick_seconds"] + 2.0,
    )


SPEC = ExperimentSpec(
    name=NAME,
    summary="a leader paused past its lease runs ticks the new leader also runs, unless fenced",
    params=PARAMS,
    build=build,
    judge=judge,
    measure=failover,
    cells=CELLS,
    quick={"duration": 8.0},
    variants=({"fencing": False}, {"fencing": True}),
)

# What removes this experiment's failure (said beside a run that lost or duplicated work).
FIXES = (Fix("fencing: the ledger refuses a deposed leader's effect", {"fencing": True},
             when={"fencing": False}),)
