"""scheduler-duplicates: APScheduler embedded in every API replica runs each tick once per replica.

Claim (the seed): "Each instance executes the same scheduled job". With N replicas
and no guard, every due tick finishes N times; a per-tick Redis lock
(``--guard redis-lock``) brings it back to once. ``--scale-to M --scale-at S``
starts with N replicas and scales to M at S seconds: duplicates start only then.
"""

from __future__ import annotations

from typing import Any

from chaos.faults import FaultStep
from chaos.platform import Topology
from experiments.checker import Result, Schedule
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
from experiments.summary import n, param, processes, ran_in

NAME = "scheduler-duplicates"

PARAMS = (
    Param("replicas", 3, "API replicas, each with its own AsyncIOScheduler", 1, 32),
    Param("interval", 1.0, "seconds between ticks", 0.1, 60),
    Param("duration", 10.0, "seconds of the run window", 1, 3600),
    Param("guard", "none", "scheduler guard", choices=("none", "redis-lock", "leader")),
    Param("align", "aligned", "fire times on a common wall-clock grid, or per process",
          choices=("aligned", "per-instance")),
    Param("scale_to", 0, "scale the API to this many replicas (0: no scaling)", 0, 32),
    Param("scale_at", 0.0, "seconds into the run when to scale", 0, 3600),
    Param("tick_seconds", 0.05, "how long each tick's work takes", 0, 60),
)


def judge(p: Params, r: Result) -> Verdict:
    guard, most = p["guard"], max(p["replicas"], p["scale_to"])
    due = r.expected
    if guard == "none" and most > 1:
        ok = r.counts["duplicated"] > 0
        return ok, (f"unguarded with {most} replicas, ticks run more than once: "
                    f"{r.counts['duplicated']}/{due} duplicated, "
                    f"{r.extra_executions} extra executions")
    if guard == "none":
        ok = r.counts["duplicated"] == 0
        return ok, f"one replica runs each tick once: {r.counts['duplicated']}/{due} duplicated"
    ok = r.counts["duplicated"] == 0 and r.counts["lost"] <= 1
    return ok, (f"guard {guard}: {r.counts['duplicated']}/{due} duplicated (want 0), "
                f"{r.counts['lost']} lost (want at most 1)")


def _unguarded(s: Any) -> str:
    scaled = f"→{param(s, 'scale_to')}" if param(s, "scale_to") else ""
    return (f"{param(s, 'replicas')}{scaled} replicas unguarded: {n(s, 'duplicated')}, "
            f"{s.get('extra_executions', 0)} extra runs")


UNGUARDED = {"guard": "none"}
CELLS = (
    Cell("seed", "Runs outside FastAPI", "AsyncIOScheduler", UNGUARDED, ran_in),
    Cell("seed", "Infrastructure needed", "AsyncIOScheduler", UNGUARDED, processes),
    Cell("seed", "Scheduling", "AsyncIOScheduler", UNGUARDED,
         lambda s: f"{s.get('expected', 0)} due ticks ran {s.get('executions', 0)} times"),
    Cell("seed", "Horizontal scaling", "AsyncIOScheduler", UNGUARDED, _unguarded),
    Cell("seed", "Horizontal scaling", "AsyncIOScheduler", {"guard": "redis-lock"},
         lambda s: f"Redis lock per tick: {n(s, 'duplicated')}, {n(s, 'lost')}"),
)


def build(p: dict[str, Any]) -> Experiment:
    if p["scale_to"] and not 0 < p["scale_at"] < p["duration"]:
        raise BadInput("--scale-at must fall inside the run (0 < scale-at < duration)")
    if p["tick_seconds"] >= p["interval"] * 10:
        raise BadInput("--tick-seconds must be shorter than ten intervals")
    topology = Topology(
        replicas={"api": p["replicas"]},
        settings={
            "scheduler_interval": p["interval"],
            "scheduler_guard": p["guard"],
            "scheduler_align": p["align"],
            "tick_seconds": p["tick_seconds"],
            "lock_ttl": max(30.0, p["interval"] * 10),
        },
    )
    faults: tuple[FaultStep, ...] = ()
    if p["scale_to"]:
        faults = (FaultStep("scale", "api", at=p["scale_at"], replicas=p["scale_to"]),)
    return Experiment(
        name=NAME,
        topology=topology,
        workload=Workload(duration=p["duration"]),
        faults=faults,
        schedules=(Schedule("tick", p["interval"], aligned=p["align"] == "aligned"),),
        drain=p["tick_seconds"] + 2.0,
    )


SPEC = ExperimentSpec(
    name=NAME,
    summary="every API replica's AsyncIOScheduler runs each tick: N replicas, N executions",
    params=PARAMS,
    build=build,
    judge=judge,
    cells=CELLS,
    quick={"replicas": 3, "interval": 1.0, "duration": 5.0},
    variants=({"guard": "none"}, {"guard": "redis-lock"}),
)
