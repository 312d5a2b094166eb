"""restart-survival: what survives a rolling restart of every API instance.

Claim (the seed): "Survives restarts": BackgroundTasks no, Celery yes. Requests
hand work to BackgroundTasks (or to Celery with ``--mechanism celery``) while every
API instance is replaced, one at a time, gracefully — a deploy. Work still pending
in a BackgroundTasks queue when its instance's graceful shutdown runs out is lost.
"""

from __future__ import annotations

from typing import Any

from chaos.faults import FaultStep
from chaos.platform import Topology
from experiments.checker import Result
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
from experiments.summary import n

NAME = "restart-survival"

PARAMS = (
    Param("replicas", 2, "API replicas", 1, 16),
    Param("mechanism", "background", "who runs the work", choices=("background", "celery")),
    Param("restart_at", 1.0, "seconds into the run of the rolling restart", 0, 3600),
    Param("rate", 4.0, "requests per second", 0.1, 200),
    Param("work_seconds", 3.0, "how long each unit of work takes", 0.1, 60),
    Param("shutdown_grace", 1.0, "the API's graceful shutdown on SIGTERM, seconds", 0, 60),
    Param("duration", 8.0, "seconds of requests", 1, 3600),
)


def judge(p: Params, r: Result) -> Verdict:
    lost, due = r.counts["lost"], r.expected
    if p["mechanism"] == "celery":
        return Verdict.of(lost == 0,
                          f"celery through a rolling restart: lost {lost}/{due} (want 0)")
    return Verdict.of(lost > 0, f"BackgroundTasks through a rolling restart: lost {lost}/{due}")


CELLS = (
    Cell("seed", "Survives restarts", "BackgroundTasks", {"mechanism": "background"},
         lambda s: f"{n(s, 'lost')} in a rolling restart"),
    Cell("seed", "Survives restarts", "Celery", {"mechanism": "celery"},
         lambda s: f"{n(s, 'lost')} in a rolling restart of the API"),
)


def build(p: dict[str, Any]) -> Experiment:
    if not 0 <= p["restart_at"] < p["duration"]:
        raise BadInput("--restart-at must fall inside the run (restart-at < duration)")
    celery = p["mechanism"] == "celery"
    return Experiment(
        name=NAME,
        topology=Topology(
            replicas={"api": p["replicas"], "worker": 2 if celery else 0},
            settings={"scheduler_enabled": False, "shutdown_grace": p["shutdown_grace"],
                      "acks": "late", "worker_concurrency": 4},
            grace=p["shutdown_grace"] + 2.0,
        ),
        workload=Workload(duration=p["duration"], requests=(
            RequestLoad(f"/work/{p['mechanism']}", p["rate"], p["work_seconds"]),)),
        faults=(FaultStep("rolling-restart", "api", at=p["restart_at"]),),
        drain=p["work_seconds"] * 2 + 5,
    )


SPEC = ExperimentSpec(
    name=NAME,
    summary="a rolling restart of every API instance: BackgroundTasks work is lost, Celery's not",
    params=PARAMS,
    build=build,
    judge=judge,
    cells=CELLS,
    # Requests keep coming until every replica has been replaced, even on a busy machine
    # where a new replica takes seconds to start: the restart begins early.
    quick={"duration": 7.0, "restart_at": 1.0},
    variants=({"mechanism": "background"}, {"mechanism": "celery"}),
)

# What removes this experiment's failure (said beside a run that lost or duplicated work).
FIXES = (Fix("hand the work to Celery", {"mechanism": "celery"}, when={"mechanism": "background"}),)
