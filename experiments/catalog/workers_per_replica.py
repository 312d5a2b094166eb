"""workers-per-replica: ``uvicorn --workers W`` in each of R API replicas.

Users' most common report (APScheduler #218, fastapi #12010, uvicorn-gunicorn-fastapi-docker
#227): a scheduler started in the app's lifespan runs in every worker *process*, and
each API replica has W of them. Unguarded, every tick runs RxW times (RxW-1 extra);
the per-tick Redis lock (``--guard redis-lock``) brings it back to once. The ledger
keeps the replica's name on each event (what the platform and its faults know) and the
worker process's pid, so the summary counts the processes that ran ticks.

``--preload`` builds the app once and forks the workers from it, as gunicorn's
``--preload`` does: the scheduler starts in the lifespan, after the fork, so it still
runs in every worker (uvicorn-gunicorn-fastapi-docker #227).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

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
from experiments.summary import Summary, n
from services.history import Event, Kind

NAME = "workers-per-replica"

PARAMS = (
    Param("replicas", 2, "API replicas", 1, 8),
    Param("workers", 2, "uvicorn worker processes per replica (--workers)", 1, 8),
    Param("guard", "none", "scheduler guard", choices=("none", "redis-lock")),
    Param("preload", False, "build the app before forking the workers (gunicorn --preload)"),
    Param("interval", 1.0, "seconds between ticks", 0.2, 60),
    Param("duration", 6.0, "seconds of the run window", 2, 3600),
)


def measure(p: Params, events: Sequence[Event], result: Result) -> dict[str, Any]:
    """Executions per due tick, and which processes (replica, pid) ran ticks."""
    per_tick = [u.finishes for u in result.units.values() if u.due]
    ran = sorted({f"{e.instance}/{e.pid}" for e in events
                  if e.kind == Kind.FINISH and e.work_id.startswith("tick@")})
    return {
        "processes_expected": p["replicas"] * p["workers"],
        "processes_that_ran_ticks": ran,
        "executions_per_tick": per_tick,
        "executions_per_tick_median": statistics.median(per_tick) if per_tick else None,
    }


def judge(p: Params, r: Result) -> Verdict:
    processes = p["replicas"] * p["workers"]
    per_tick = [u.finishes for u in r.units.values() if u.due]
    median = statistics.median(per_tick) if per_tick else 0
    c = r.counts
    if p["guard"] == "none":
        held = (median == processes and c["lost"] == 0
                and (processes == 1 or c["duplicated"] > 0))
        preload = ", preloaded" if p["preload"] else ""
        return Verdict.of(held, (f"{p['replicas']} replicas x {p['workers']} workers{preload}, "
                                 f"unguarded: {median:g} executions per tick (want {processes}), "
                                 f"{c['duplicated']}/{r.expected} duplicated, "
                                 f"{r.extra_executions} extra"))
    held = c["duplicated"] == 0 and c["lost"] <= 1
    return Verdict.of(held, (f"{p['replicas']} replicas x {p['workers']} workers, per-tick lock: "
                             f"{c['duplicated']}/{r.expected} duplicated (want 0), {c['lost']} "
                             "lost (want at most 1)"))


def _unguarded(s: Summary) -> str:
    p, m = s["parameters"], s.get("measured") or {}
    median = m.get("executions_per_tick_median")
    return (f"{p['replicas']} replicas x {p['workers']} workers: "
            f"{median:g} executions per tick, {len(m.get('processes_that_ran_ticks', []))} "
            f"processes ran ticks" if median is not None else "no tick was due")


CELLS = (
    Cell("left-out", "Workers per replica", "AsyncIOScheduler", {"guard": "none"}, _unguarded),
    Cell("left-out", "Workers per replica", "AsyncIOScheduler", {"guard": "redis-lock"},
         lambda s: f"per-tick lock: {n(s, 'duplicated')}"),
)


def build(p: dict[str, Any]) -> Experiment:
    if p["duration"] < p["interval"] * 2:
        raise BadInput("--duration must hold at least two intervals")
    return Experiment(
        name=NAME,
        topology=Topology(
            replicas={"api": p["replicas"]},
            settings={"api_workers": p["workers"], "api_preload": p["preload"],
                      "scheduler_interval": p["interval"],
                      "scheduler_guard": p["guard"], "tick_seconds": 0.05,
                      "lock_ttl": max(30.0, p["interval"] * 10)},
        ),
        workload=Workload(duration=p["duration"]),
        schedules=(Schedule("tick", p["interval"]),),
        drain=2.0,
    )


SPEC = ExperimentSpec(
    name=NAME,
    summary="uvicorn --workers W in R replicas: every tick runs RxW times unguarded",
    params=PARAMS,
    build=build,
    judge=judge,
    measure=measure,
    cells=CELLS,
    quick={"duration": 4.0},
    variants=({"guard": "none"}, {"guard": "redis-lock"}, {"guard": "none", "preload": True}),
    quick_variants=({"guard": "none"}, {"guard": "redis-lock"}),
)

# What removes this experiment's failure (said beside a run that lost or duplicated work).
FIXES = (Fix("a Redis lock per tick", {"guard": "redis-lock"}, when={"guard": "none"}),)
