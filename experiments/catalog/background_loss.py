"""background-loss: accepted BackgroundTasks work dies with its API replica.

Claim (the seed): BackgroundTasks "dies if the server restarts". Requests hand work
(``--work-seconds`` long) to FastAPI BackgroundTasks; mid-job, an API replica is
killed (``--kill sigkill``) or terminated with a graceful shutdown shorter than the
remaining work (``--kill sigterm``). Work that was acknowledged (202) and never
finishes is ``lost``. ``--mechanism celery`` sends the same work through Celery:
the replica only enqueues it, so killing the replica loses nothing.
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
from experiments.summary import n, param, processes, ran_in
from experiments.theory import Expect, in_flight, judged, needs_work_in_flight, struck

NAME = "background-loss"

PARAMS = (
    Param("replicas", 3, "API replicas", 1, 32),
    Param("mechanism", "background", "who runs the work", choices=("background", "celery")),
    Param("kill", "sigkill", "how the replica dies", choices=("sigkill", "sigterm")),
    Param("kills", 2, "replicas killed mid-job, one after another", 0, 20),
    Param("kill_at", 2.0, "seconds into the run of the first kill", 0, 3600),
    Param("kill_every", 3.0, "seconds between kills", 0.5, 3600),
    Param("rate", 5.0, "requests per second", 0.1, 200),
    Param("work_seconds", 2.0, "how long each unit of work takes", 0.1, 60),
    Param("shutdown_grace", 0.5, "the API's graceful shutdown on SIGTERM, seconds", 0, 60),
    Param("workers", 2, "Celery workers (mechanism celery)", 1, 16),
    Param("duration", 10.0, "seconds of requests", 1, 3600),
)


def judge(p: Params, r: Result) -> Verdict:
    mechanism, kills = p["mechanism"], p["kills"]
    lost, due = r.counts["lost"], r.expected
    how = "SIGKILL" if p["kill"] == "sigkill" else f"SIGTERM ({p['shutdown_grace']:g} s grace)"
    head = f"{mechanism}, {kills} replica(s) ended by {how}, {due} accepted units"
    none_lost = (Expect.exactly("lost", 0), lost)
    if mechanism == "celery" or kills == 0:
        # the replica only enqueued the work (or nothing was ended): the broker holds it
        return judged(head, none_lost)
    untested = needs_work_in_flight(r, ("kill", "terminate"), kills,
                                    "ending a replica mid-job")
    if untested is not None:
        return untested
    running = in_flight(struck(r, ("kill", "terminate")))
    if p["kill"] == "sigterm" and p["shutdown_grace"] >= p["work_seconds"]:
        # the graceful shutdown waits for running BackgroundTasks: the grace covers them
        return judged(head + f", work {p['work_seconds']:g} s within the grace", none_lost)
    if p["kill"] == "sigterm":
        # only the work with more than the grace left dies: at least the unit whose start
        # triggered the terminate (it had all its work left)
        return judged(head, (Expect("lost", running, 1, running + kills,
                                    "work with less than the grace left finishes; a unit "
                                    "accepted as the signal lands dies too"), lost))
    # SIGKILL: everything running on the replica dies with it, and any accepted unit
    # whose background task had not started yet
    return judged(head, (Expect.within("lost", running, kills, float("inf"),
                                       "units accepted but not yet started die too; the work "
                                       "in flight is counted a moment before the signal"),
                         lost))


BACKGROUND = {"mechanism": "background"}
CELERY = {"mechanism": "celery"}
CELLS = (
    Cell("seed", "Runs outside FastAPI", "BackgroundTasks", BACKGROUND, ran_in),
    Cell("seed", "Runs outside FastAPI", "Celery", CELERY, ran_in),
    Cell("seed", "Infrastructure needed", "BackgroundTasks", BACKGROUND, processes),
    Cell("seed", "Infrastructure needed", "Celery", CELERY,
         lambda s: processes(s) + " broker"),
    Cell("seed", "Survives restarts", "BackgroundTasks", {**BACKGROUND, "kill": "sigkill"},
         lambda s: f"{n(s, 'lost')} on SIGKILL of {param(s, 'kills')} replica(s)"),
    Cell("seed", "Survives restarts", "BackgroundTasks", {**BACKGROUND, "kill": "sigterm"},
         lambda s: f"{n(s, 'lost')} on SIGTERM ({param(s, 'shutdown_grace')} s grace)"),
    Cell("seed", "Survives restarts", "Celery", CELERY,
         lambda s: f"{n(s, 'lost')} when API replicas were killed"),
    Cell("seed", "Retries", "BackgroundTasks", BACKGROUND,
         lambda s: f"{n(s, 'recovered')} after {param(s, 'kill')} (none retried)"),
    Cell("seed", "Horizontal scaling", "BackgroundTasks", {**BACKGROUND, "kill": "sigkill"},
         lambda s: f"{param(s, 'replicas')} replicas: {n(s, 'duplicated')}"),
)


def build(p: dict[str, Any]) -> Experiment:
    if p["kills"] and p["kill_at"] + (p["kills"] - 1) * p["kill_every"] >= p["duration"]:
        raise BadInput("the kills must fall inside the run: kill-at + (kills-1) * kill-every "
                       "< duration")
    celery = p["mechanism"] == "celery"
    action = "kill" if p["kill"] == "sigkill" else "terminate"
    faults = tuple(
        # BackgroundTasks: strike the replica the moment it starts a job. Celery: the
        # replica runs no job, so strike a (seeded) random replica at the same times.
        FaultStep(action, "api", at=p["kill_at"] + i * p["kill_every"],
                  on="" if celery else "start", mechanism="background",
                  grace=p["shutdown_grace"] + 2.0)
        for i in range(p["kills"]))
    return Experiment(
        name=NAME,
        topology=Topology(
            replicas={"api": p["replicas"], "worker": p["workers"] if celery else 0},
            settings={"scheduler_enabled": False, "shutdown_grace": p["shutdown_grace"],
                      "acks": "late", "worker_concurrency": 4},
        ),
        workload=Workload(duration=p["duration"], requests=(
            RequestLoad(f"/work/{p['mechanism']}", p["rate"], p["work_seconds"]),)),
        faults=faults,
        drain=p["work_seconds"] * 2 + 5,
    )


SPEC = ExperimentSpec(
    name=NAME,
    summary="BackgroundTasks work accepted (202) dies with its replica; Celery's does not",
    params=PARAMS,
    build=build,
    judge=judge,
    cells=CELLS,
    quick={"duration": 5.0, "rate": 4.0, "kills": 1},
    variants=({"mechanism": "background", "kill": "sigkill"},
              {"mechanism": "background", "kill": "sigterm"},
              {"mechanism": "celery", "kill": "sigkill"}),
    quick_variants=({"mechanism": "background", "kill": "sigkill"},
                    {"mechanism": "celery", "kill": "sigkill"}),
)

# What removes this experiment's failure (said beside a run that lost or duplicated work).
FIXES = (Fix("hand the work to Celery", {"mechanism": "celery"}, when={"mechanism": "background"}),)
