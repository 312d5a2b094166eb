"""liveness-restart: a blocked event loop fails the liveness probe; kubelet restarts the API.

A request whose handler blocks the event loop (loop-starvation's) keeps every endpoint
from answering — a no-op ``async`` health endpoint too, since the loop serves it. With
a strict liveness probe (three failures a second apart, as charts often set) kubelet
restarts the API container after ~3 s of it: in the same pod, under the same name
("Configure Liveness, Readiness and Startup Probes": the container is killed and
restarted per the pod's restartPolicy), stopped as a deleted pod is — SIGTERM, then
SIGKILL after the grace period. The scheduler's ticks are lost until the new container
runs; BackgroundTasks it acknowledged (202) are lost only if still unfinished at the
SIGKILL (measured on the node: none, they ended within the grace).

The fix measured beside it: a liveness probe that tolerates the longest block — the
lab's own (k8s/base/api.yaml: 6 failures 5 s apart) — with dependency checks left to
readiness, which only takes the pod out of the Service. The blocked loop still delays
ticks (loop-starvation counts those), but nothing acknowledged is lost. A no-op
liveness endpoint alone is not the fix for a blocked loop: the lab's ``/healthz`` is one.

The restarts are kubelet's: the run watches the API's containers and marks each restart
in the ledger with kubelet's reason (``watch-restarts``). The local platform has no
kubelet: the run is refused there; loop-starvation is its analogue.
"""

from __future__ import annotations

import math
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
    RequestLoad,
    Verdict,
    Workload,
)
from experiments.summary import Summary
from experiments.tables import KUBERNETES
from experiments.theory import Expect, judged, struck
from services.history import Event, Kind, parse_scheduled

NAME = "liveness-restart"
RESTART = "container-restart"  # the mark watch-restarts leaves
# A strict probe fails after three failures a second apart, each timing out after 1 s.
# One blocking request must outlast that: a readiness failure takes the pod out of the
# Service first, so no *further* request blocks it (measured: 2.5 s blocks every 2 s
# never got the container restarted), but the handler already running goes on.
STRICT_WINDOW = 4.0

PARAMS = (
    Param("liveness", "strict", "the API's liveness probe: strict (1 s apart, 3 failures) or "
          "lenient (the lab's: 5 s apart, 6 failures)", choices=("strict", "lenient")),
    Param("block_seconds", 6.0, "how long each blocking request holds the event loop", 0.5, 30),
    Param("block_rate", 0.2, "blocking requests per second", 0.05, 5),
    Param("background_rate", 2.0, "BackgroundTasks requests per second", 0.1, 20),
    Param("background_seconds", 2.0, "how long each BackgroundTask runs", 0.1, 30),
    Param("interval", 1.0, "seconds between the scheduler's ticks", 0.2, 60),
    Param("duration", 15.0, "seconds of the run window", 5, 3600),
)


def split(r: Result) -> dict[str, int]:
    """Lost ticks and lost BackgroundTasks, apart."""
    ticks = sum(1 for u in r.units.values()
                if u.verdict == "lost" and parse_scheduled(u.work_id) is not None)
    return {"ticks": ticks, "background": r.counts["lost"] - ticks}


def judge(p: Params, r: Result) -> Verdict:
    lost, restarts = split(r), len(struck(r, (RESTART,)))
    head = f"liveness {p['liveness']}, the loop blocked {p['block_seconds']:g}s at a time"
    if p["liveness"] == "lenient":
        return judged(head + " (late ticks are loop-starvation's)",
                      (Expect.exactly("container restarts", 0), restarts),
                      (Expect.exactly("BackgroundTasks lost", 0), lost["background"]))
    # kubelet stops a container that fails its liveness probe as it stops a deleted pod's:
    # SIGTERM, then SIGKILL after the grace period (measured: the BackgroundTasks in
    # flight finished in the API's shutdown, 0 lost); what the restart costs is the
    # scheduler's ticks until the new container runs (counted apart)
    most = p["background_rate"] * (p["background_seconds"] + p["block_seconds"])
    restart = Expect("container restarts", 1, 1, math.ceil(p["duration"] / STRICT_WINDOW),
                     f"a block past the strict probe's {STRICT_WINDOW:g} s, then a restart")
    per = Expect("BackgroundTasks lost", 0, 0, math.ceil(most),
                 "the restart is graceful: those that end within the grace finish, those "
                 "still queued behind the block at the SIGKILL are lost")
    return judged(head, (restart, restarts), (per, lost["background"]))


def measure(p: Params, events: Sequence[Event], r: Result) -> dict[str, Any]:
    reasons = [str((e.detail or {}).get("reason", "")) for e in events
               if e.kind == Kind.FAULT and e.mechanism == "container-restart"]
    return {"container_restarts": len(reasons), "restart_reasons": reasons,
            "lost_ticks": split(r)["ticks"], "lost_background": split(r)["background"]}


def build(p: dict[str, Any]) -> Experiment:
    if p["background_rate"] * p["background_seconds"] < 1:
        raise BadInput("--background-rate x --background-seconds must keep a BackgroundTask "
                       "in flight (at least 1)")
    if p["block_seconds"] <= STRICT_WINDOW:
        raise BadInput(f"--block-seconds must outlast the strict probe's {STRICT_WINDOW:g} s "
                       "(three failures a second apart)")
    return Experiment(
        name=NAME,
        topology=Topology(replicas={"api": 1},
                          settings={"liveness": p["liveness"],
                                    "scheduler_interval": p["interval"]}),
        workload=Workload(duration=p["duration"], requests=(
            RequestLoad("/block", p["block_rate"], p["block_seconds"], acknowledged=False),
            RequestLoad("/work/background", p["background_rate"], p["background_seconds"]),
        )),
        faults=(FaultStep("watch-restarts", "api", at=0.0, duration=p["duration"]),),
        schedules=(Schedule("tick", p["interval"]),),
        drain=p["block_seconds"] + p["background_seconds"] + 2.0,
    )


TABLE = KUBERNETES.key


def _cell(row: str) -> Any:
    def says(s: Summary) -> str:
        liveness = (s.get("parameters") or {}).get("liveness")
        measured = s.get("measured") or {}
        what = (f"{measured.get('lost_background', 0)} lost" if row == "background" else
                f"{measured.get('lost_ticks', 0)} ticks lost")
        return (f"liveness {liveness}: {measured.get('container_restarts', 0)} restart(s), "
                f"{what}")
    return says


CELLS = (
    Cell(TABLE, "BackgroundTasks for light work", "liveness restart", {}, _cell("background")),
    Cell(TABLE, "AsyncIOScheduler in a single instance", "liveness restart", {},
         _cell("ticks")),
)

SPEC = ExperimentSpec(
    name=NAME,
    summary="a blocked event loop fails a strict liveness probe: kubelet restarts the API, "
            "its BackgroundTasks and ticks are lost",
    params=PARAMS,
    build=build,
    judge=judge,
    measure=measure,
    cells=CELLS,
    variants=({"liveness": "strict"}, {"liveness": "lenient"}),
)

FIXES = (
    Fix("a liveness probe that outlasts the longest block; dependency checks in readiness",
        {"liveness": "lenient"}, when={"liveness": "strict"}),
)
