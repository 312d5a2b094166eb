"""celery-kill: a Celery worker SIGKILLed while it runs a task.

Claim (the seed): Celery is "reliable execution". Measured: with Celery's default
(``--acks early``) the message is acknowledged before the task runs, so a task killed
mid-run is ``lost``. With ``--acks late`` (``task_acks_late`` +
``task_reject_on_worker_lost``) the broker redelivers it: ``recovered`` — and
``duplicated`` where the killed run's effect already happened, the three ways
at-least-once becomes twice:

- ``--kill-at after-effect``: the kill lands after the effect, before the ack;
- ``--task-seconds`` above ``--visibility-timeout`` (``--kills 0``): Redis redelivers
  a task still running, no fault at all;
- a redelivery racing a slow original (the same, with the original still running).

``--idempotent``: the task's effect carries an idempotency key, so a redelivery
does no second effect (it is ``refused`` at the ledger).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import replace
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
    TaskLoad,
    Verdict,
    Workload,
)
from experiments.summary import Summary, n, param, some
from experiments.theory import Expect, in_flight, judged, needs_work_in_flight, struck
from services.history import Event, Kind

NAME = "celery-kill"

PARAMS = (
    Param("workers", 2, "Celery worker instances (prefork)", 1, 16),
    Param("concurrency", 2, "pool processes per worker", 1, 16),
    Param("acks", "early", "when the message is acknowledged", choices=("early", "late")),
    Param("idempotent", False, "the task's effect carries an idempotency key"),
    Param("kill_at", "mid-job", "where the kill lands", choices=("mid-job", "after-effect")),
    Param("kills", 2, "worker kills", 0, 20),
    Param("first_kill", 2.0, "seconds into the run of the first kill", 0, 3600),
    Param("kill_every", 3.0, "seconds between kills", 0.5, 3600),
    Param("rate", 2.0, "tasks sent per second", 0.1, 200),
    Param("task_seconds", 1.5, "how long each task runs", 0, 600),
    Param("visibility_timeout", 6.0, "Redis transport visibility timeout, seconds", 1, 86400),
    Param("duration", 8.0, "seconds of submissions", 1, 3600),
)


def redelivery_seconds(events: Sequence[Event]) -> list[float]:
    """For each task killed in flight: seconds from the kill to its next start."""
    open_on: dict[str, dict[str, str]] = {}  # instance -> exec_id -> work_id
    waiting: dict[str, float] = {}  # work_id -> kill time
    found = []
    for e in events:
        if e.kind == Kind.START:
            if e.work_id in waiting:
                found.append(round(e.t - waiting.pop(e.work_id), 3))
            open_on.setdefault(e.instance, {})[e.exec_id] = e.work_id
        elif e.kind in (Kind.FINISH, Kind.REFUSED):
            open_on.get(e.instance, {}).pop(e.exec_id, None)
        elif e.kind == Kind.FAULT and e.mechanism == "kill":
            for work_id in open_on.pop(e.instance, {}).values():
                waiting.setdefault(work_id, e.t)
    return found


def measure(p: Params, events: Sequence[Event], result: Result) -> dict[str, Any]:
    times = redelivery_seconds(events)
    return {
        "kill_to_redelivery_seconds": times,
        "kill_to_redelivery_median": statistics.median(times) if times else None,
        "kill_to_redelivery_max": max(times) if times else None,
    }


MOMENT = ("the work in flight is counted a moment before the signal lands: a task may "
          "start or finish in that moment")


def judge(p: Params, r: Result) -> Verdict:
    overrun = p["task_seconds"] > p["visibility_timeout"]
    c, due = r.counts, r.expected
    head = (f"acks {p['acks']}{' idempotent' if p['idempotent'] else ''}, "
            f"{p['kills']} kill(s) {p['kill_at']}, {due} tasks")
    kills = p["kills"]
    if kills == 0:
        if p["acks"] == "late" and overrun and not p["idempotent"]:
            # Redis redelivers a task still running once the visibility timeout passes;
            # each copy outlives it too: every task runs more than once.
            return judged(head + f", task {p['task_seconds']:g} s > visibility timeout "
                          f"{p['visibility_timeout']:g} s",
                          (Expect.within("duplicated", due, 1, 0, "the last task sent may "
                                         "still run its first copy as the drain ends"),
                           c["duplicated"]),
                          (Expect.exactly("lost", 0), c["lost"]))
        return judged(head + ", no fault: each task once",
                      (Expect.exactly("lost", 0), c["lost"]),
                      (Expect.exactly("duplicated", 0), c["duplicated"]),
                      (Expect.exactly("ok", due), c["ok"]))
    marks = struck(r, ("kill",))
    after_effect = p["kill_at"] == "after-effect"
    if not after_effect:
        untested = needs_work_in_flight(r, ("kill",), kills, "a kill mid-task")
        if untested is not None:
            return untested
    running = in_flight(marks)
    interrupted = Expect.within("", running, kills, kills, MOMENT)
    if p["acks"] == "early":
        # acknowledged before it ran: every task running at a kill is lost
        return judged(head, (replace(interrupted, what="lost"), c["lost"]),
                      (Expect.exactly("duplicated", 0), c["duplicated"]))
    if after_effect:
        # each kill lands after one task's effect, before its ack: redelivered, run twice
        # (idempotent: the second effect is refused). Another pool process may be in the
        # same window.
        twice = Expect.within("duplicated", kills, 0, kills * (p["concurrency"] - 1),
                              "another pool process of the killed worker may be between "
                              "its task's effect and its ack too")
        if p["idempotent"]:
            return judged(head, (Expect.exactly("duplicated", 0), c["duplicated"]),
                          (Expect.exactly("lost", 0), c["lost"]),
                          (replace(twice, what="refused second effects"), r.refused))
        return judged(head, (twice, c["duplicated"]), (Expect.exactly("lost", 0), c["lost"]))
    # acks late, mid-task: every task running at a kill is redelivered and runs again
    # (recovered; duplicated where the kill fell between its effect and its ack).
    again = c["recovered"] + c["duplicated"]
    twice = (Expect("duplicated", 0, 0, due, "tasks outlive the visibility timeout")
             if overrun and not p["idempotent"] else
             Expect("duplicated", 0, 0, 0 if p["idempotent"] else kills,
                    "a kill may fall between a task's effect and its ack"))
    return judged(head, (replace(interrupted, what="recovered (or duplicated)"), again),
                  (Expect.exactly("lost", 0), c["lost"]), (twice, c["duplicated"]))


def _redelivered(s: Summary) -> str:
    median = (s.get("measured") or {}).get("kill_to_redelivery_median")
    return (f"acks late: {n(s, 'recovered')} by redelivery"
            + (f", median {median:.1f} s after the kill" if median is not None else ""))


def _after_effect(s: Summary) -> str:
    idempotent = " (idempotent)" if param(s, "idempotent") else ""
    return f"acks late, kill after the effect{idempotent}: {n(s, 'duplicated')}"


EARLY = {"acks": "early", "kill_at": "mid-job"}
LATE = {"acks": "late", "kill_at": "mid-job", "kills": some}
CELLS = (
    Cell("seed", "Survives restarts", "Celery", EARLY,
         lambda s: f"{n(s, 'lost')} on worker SIGKILL with default (early) acks"),
    Cell("seed", "Survives restarts", "Celery", LATE,
         lambda s: f"{n(s, 'lost')}, {n(s, 'recovered')} on worker SIGKILL with acks late"),
    Cell("seed", "Retries", "Celery", EARLY, lambda s: f"early acks: {n(s, 'recovered')}"),
    Cell("seed", "Retries", "Celery", LATE, _redelivered),
    Cell("seed", "Horizontal scaling", "Celery", {"acks": "late", "kill_at": "after-effect"},
         _after_effect),
    Cell("seed", "Horizontal scaling", "Celery", {"acks": "late", "kills": 0},
         lambda s: f"task longer than the visibility timeout: {n(s, 'duplicated')}"),
)


def build(p: dict[str, Any]) -> Experiment:
    if p["kills"] and p["first_kill"] + (p["kills"] - 1) * p["kill_every"] >= p["duration"]:
        raise BadInput("the kills must fall inside the run: first-kill + (kills-1) * "
                       "kill-every < duration")
    after_effect = p["kill_at"] == "after-effect"
    kill_window = 2.0 if after_effect else 0.0
    faults = tuple(
        FaultStep("kill", "worker", at=p["first_kill"] + i * p["kill_every"],
                  on="finish" if after_effect else "start", mechanism="celery")
        for i in range(p["kills"]))
    # kombu restores unacked messages after the visibility timeout; the worker's
    # periodic restore sweep must run often enough to see them (see services.worker).
    # With no kill, a task longer than the visibility timeout is redelivered again and
    # again (each copy outlives it too): the drain bounds how much of that is watched.
    drain = p["visibility_timeout"] + p["task_seconds"] * 2 + kill_window + (
        8 if p["kills"] else 2)
    return Experiment(
        name=NAME,
        topology=Topology(
            replicas={"worker": p["workers"]},
            settings={"acks": p["acks"], "idempotent": p["idempotent"],
                      "visibility_timeout": p["visibility_timeout"],
                      "worker_concurrency": p["concurrency"]},
        ),
        workload=Workload(duration=p["duration"],
                          tasks=TaskLoad(p["rate"], p["task_seconds"], kill_window)),
        faults=faults,
        drain=drain,
        redelivers=p["acks"] == "late",
    )


SPEC = ExperimentSpec(
    name=NAME,
    summary="a worker SIGKILLed mid-task: acks early loses it, acks late runs it again",
    params=PARAMS,
    build=build,
    judge=judge,
    measure=measure,
    cells=CELLS,
    quick={"duration": 5.0, "kills": 1},
    variants=({"acks": "early"},
              {"acks": "late"},
              {"acks": "late", "kill_at": "after-effect"},
              {"acks": "late", "kill_at": "after-effect", "idempotent": True},
              {"acks": "late", "kills": 0, "task_seconds": 3.0, "visibility_timeout": 1.5,
               "rate": 1.0, "duration": 3.0}),
)

# What removes this experiment's failure (said beside a run that lost or duplicated work).
FIXES = (
    Fix("acks late: the broker delivers it again", {"acks": "late"}, when={"acks": "early"}),
    Fix("an idempotency key in the task", {"idempotent": True}, when={"acks": "late"}),
)
