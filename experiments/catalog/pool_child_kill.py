"""pool-child-kill: SIGKILL of one prefork pool process (what the OOM killer does), or of
the worker itself.

With acks late, a task whose pool process dies is not simply redelivered: the worker's
parent sees ``WorkerLostError`` and, unless ``task_reject_on_worker_lost`` is on,
*acknowledges* the message as failed — the task is ``lost`` (celery #1628). With the
option on it is rejected and requeued at once: ``recovered`` (PR #3053). Killing the
worker's parent (``--target parent``; as a container runtime, the whole instance) leaves
the message unacknowledged until the visibility timeout: recovered later, either way.

``--poison``: one task SIGKILLs its own pool process every time it runs. Rejected on
worker loss it comes straight back and kills again: the redelivery loop (secator
#1199); the summary counts its executions in the run. Without the option it runs once
and is gone.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from experiments.summary import Summary, n
from services.history import Event, Kind

NAME = "pool-child-kill"
POISON = "task-1"  # the work_id of the poison task (the harness's second submission)

PARAMS = (
    Param("target", "child", "what is SIGKILLed: one pool process, or the worker's parent",
          choices=("child", "parent")),
    Param("acks", "late", "when the message is acknowledged", choices=("early", "late")),
    Param("reject_on_worker_lost", False, "task_reject_on_worker_lost (Celery's default: off)"),
    Param("poison", False, "one task SIGKILLs its own pool process every time (no fault)"),
    Param("visibility_timeout", 4.0, "Redis visibility timeout, seconds", 1, 3600),
    Param("rate", 1.0, "tasks sent per second", 0.1, 20),
    Param("duration", 4.0, "seconds of submissions", 2, 600),
)


def poison_starts(events: Sequence[Event]) -> int:
    return sum(1 for e in events if e.kind == Kind.START and e.work_id == POISON)


def measure(p: Params, events: Sequence[Event], result: Result) -> dict[str, Any]:
    if p["poison"]:
        return {"poison_work_id": POISON, "poison_executions": poison_starts(events),
                "poison_finished": any(e.kind == Kind.FINISH and e.work_id == POISON
                                       for e in events)}
    return {"lost": result.counts["lost"], "recovered": result.counts["recovered"]}


def judge(p: Params, r: Result) -> Verdict:
    c = r.counts
    if p["poison"]:
        # The checker sees the poison unit's executions; the loop is counted in `measure`,
        # and the judge reads it from the unit's starts.
        unit = r.units.get(POISON)
        starts = unit.starts if unit else 0
        finished = bool(unit and unit.finishes)
        loops = p["acks"] == "late" and p["reject_on_worker_lost"]
        text = (f"poison task, acks {p['acks']}, reject on worker lost "
                f"{'on' if p['reject_on_worker_lost'] else 'off'}: ran {starts} times, "
                f"never finished" if not finished else f"poison task finished ({starts} runs)")
        if loops:
            return Verdict.of(starts >= 2 and not finished, text + " (want it back again and "
                              "again: 2 or more runs, never finished)")
        return Verdict.of(starts == 1 and not finished, text + " (want one run, then gone)")
    text = (f"{p['target']} killed, acks {p['acks']}, reject on worker lost "
            f"{'on' if p['reject_on_worker_lost'] else 'off'}: lost {c['lost']}, recovered "
            f"{c['recovered']} of {r.expected}")
    if p["acks"] == "early" or (p["target"] == "child" and not p["reject_on_worker_lost"]):
        return Verdict.of(c["lost"] >= 1, text + " (want the killed task lost)")
    return Verdict.of(c["lost"] == 0 and c["recovered"] >= 1,
                      text + " (want it recovered, none lost)")


def _says(s: Summary) -> str:
    p, m = s["parameters"], s.get("measured") or {}
    reject = "reject on worker lost " + ("on" if p["reject_on_worker_lost"] else "off")
    if p["poison"]:
        return (f"poison task, {reject}: ran {m.get('poison_executions')} times in the run")
    return f"{p['target']} SIGKILLed, acks {p['acks']}, {reject}: {n(s, 'lost')}"


CELLS = (Cell("left-out", "Pool child killed", "Celery", {}, _says),)


def build(p: dict[str, Any]) -> Experiment:
    if p["poison"] and p["target"] != "child":
        raise BadInput("--poison kills its own pool process: it takes no --target parent")
    faults: tuple[FaultStep, ...] = ()
    if not p["poison"]:
        action = "kill-child" if p["target"] == "child" else "kill"
        faults = (FaultStep(action, "worker", at=1.5, on="start", mechanism="celery"),)
    back_later = p["target"] == "parent" and p["acks"] == "late"
    gone = p["target"] == "child" and not (p["acks"] == "late" and p["reject_on_worker_lost"])
    return Experiment(
        name=NAME,
        topology=Topology(
            # One pool process: the one killed is the one running the task.
            replicas={"worker": 1},
            settings={"acks": p["acks"], "reject_on_worker_lost": p["reject_on_worker_lost"],
                      "worker_concurrency": 1, "visibility_timeout": p["visibility_timeout"],
                      "unacked_restore_interval": 0.5,
                      "poison_work": POISON if p["poison"] else ""},
        ),
        workload=Workload(duration=p["duration"], tasks=TaskLoad(p["rate"], 0.8)),
        faults=faults,
        # A poison loop never settles, nor does a task acknowledged as failed: watch a few
        # seconds, no more; a redelivery needs the queue's work (and the timeout) done.
        drain=10.0 if p["poison"] else 6.0 if gone else 15.0 + (
            p["visibility_timeout"] if back_later else 0),
        redelivers=p["acks"] == "late",
    )


SPEC = ExperimentSpec(
    name=NAME,
    summary="SIGKILL one pool process: acks late loses the task unless it is rejected on "
            "worker loss; a poison task then loops",
    params=PARAMS,
    build=build,
    judge=judge,
    measure=measure,
    cells=CELLS,
    variants=({}, {"reject_on_worker_lost": True}, {"target": "parent"},
              {"poison": True, "reject_on_worker_lost": True}, {"poison": True}),
    quick_variants=({}, {"reject_on_worker_lost": True},
                    {"poison": True, "reject_on_worker_lost": True}),
)

# What removes this experiment's failure (said beside a run that lost or duplicated work).
FIXES = (
    Fix("task_reject_on_worker_lost", {"reject_on_worker_lost": True},
        when={"acks": "late", "reject_on_worker_lost": False, "poison": False}),
    Fix("acks early for a poison task (lose it once rather than loop)", {"acks": "early"},
        when={"poison": True}),
)
