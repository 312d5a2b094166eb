"""loop-starvation: the embedded scheduler shares the event loop with the requests.

Claim (the seed): AsyncIOScheduler "shares the event loop with API requests".
Requests whose handlers block the loop (a sync call in an ``async def``) hold up the
scheduler's ticks: they start late, and a tick more than ``misfire_grace_time`` late
(APScheduler 3 default: 1 s) is skipped; with ``coalesce=True`` (the default) the
ticks missed while blocked collapse into one. Late and missing ticks are counted.
``--block-seconds 0`` is the control.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chaos.platform import Topology
from experiments.checker import Result, Schedule
from experiments.findings import Fix
from experiments.model import (
    Cell,
    Experiment,
    ExperimentSpec,
    Param,
    Params,
    RequestLoad,
    Verdict,
    Workload,
)
from experiments.summary import param
from services.history import Event

NAME = "loop-starvation"

PARAMS = (
    Param("replicas", 1, "API replicas", 1, 8),
    Param("interval", 0.5, "seconds between ticks", 0.1, 60),
    Param("block_seconds", 1.5, "how long each request blocks the event loop", 0, 30),
    Param("block_rate", 0.5, "blocking requests per second", 0.05, 10),
    Param("misfire_grace", 1.0, "APScheduler misfire_grace_time, seconds", 0.1, 3600),
    Param("duration", 10.0, "seconds of the run window", 2, 3600),
)


def lateness(p: Params, events: Sequence[Event], result: Result) -> dict[str, Any]:
    late = [u.lateness for u in result.units.values() if u.due and u.lateness is not None]
    return {"max_lateness_seconds": round(max(late), 3) if late else None,
            "missing_ticks": result.counts["lost"], "late_ticks": result.late}


def judge(p: Params, r: Result) -> Verdict:
    hurt = r.late + r.counts["lost"]
    text = (f"blocking {p['block_seconds']:g}s requests: {r.late} late and "
            f"{r.counts['lost']} missing of {r.expected} ticks")
    if p["block_seconds"] == 0:
        return Verdict.of(hurt == 0, text + " (control: want none)")
    return Verdict.of(hurt > 0, text + " (want some)")


def _starved(s: Any) -> str:
    if not param(s, "block_seconds"):
        return f"no blocking: {s.get('late', 0)}/{s.get('expected', 0)} ticks late"
    return (f"requests blocking the loop {param(s, 'block_seconds')} s: {s.get('late', 0)}/"
            f"{s.get('expected', 0)} ticks late, {s['counts'].get('lost', 0)} missed")


CELLS = (Cell("seed", "Heavy tasks", "AsyncIOScheduler", {}, _starved),)


def build(p: dict[str, Any]) -> Experiment:
    blocking = p["block_seconds"] > 0
    return Experiment(
        name=NAME,
        topology=Topology(
            replicas={"api": p["replicas"]},
            settings={"scheduler_interval": p["interval"], "misfire_grace": p["misfire_grace"],
                      "tick_seconds": 0.01},
        ),
        workload=Workload(duration=p["duration"], requests=(
            RequestLoad("/block", p["block_rate"], p["block_seconds"], acknowledged=False),
        ) if blocking else ()),
        schedules=(Schedule("tick", p["interval"]),),
        drain=p["block_seconds"] + 2.0,
        late_after=min(0.5, p["interval"] / 2),
    )


SPEC = ExperimentSpec(
    name=NAME,
    summary="requests that block the event loop make the embedded scheduler late or skip ticks",
    params=PARAMS,
    build=build,
    judge=judge,
    measure=lateness,
    cells=CELLS,
    quick={"duration": 5.0},
    quick_variants=({"block_seconds": 1.5},),
    variants=({"block_seconds": 0.0}, {"block_seconds": 1.5}),
)

# What removes this experiment's failure (said beside a run that lost or duplicated work).
FIXES = (Fix("no blocking call in the event loop (run it in a thread)", {"block_seconds": 0.0}),)
