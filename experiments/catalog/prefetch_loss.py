"""prefetch-loss: a worker SIGKILLed mid-task, with the tasks it had prefetched.

A Celery worker reserves ``prefetch multiplier * concurrency`` messages: one runs, the
rest wait in its memory (celery #7924, #3765). SIGKILL the worker mid-task and look at
both apart:

- the *running* task: with early acks (Celery's default) its message was acknowledged
  when the pool took it: ``lost``. With acks late it is still unacknowledged.
- the *reserved* tasks: never handed to the pool, so unacknowledged in either mode.

On the Redis transport an unacknowledged message sits in the ``unacked`` hash until a
worker's restore sweep finds it older than the visibility timeout, then it is
delivered again. So reserved tasks come back after ``--visibility-timeout`` whatever
the acks, and the running one too with acks late; with kombu's default timeout
(3600 s) all of them are gone for an hour — lost to any run shorter than that, which
is what #7924 reports. The summary counts the running and the reserved tasks apart.

Seen here besides, when the kill followed the task's start within milliseconds: the
early ack of the task just started frees a prefetch slot, so the worker was popping the
next message off the queue as the kill landed; kombu writes a message to the
``unacked`` hash only after the pop, so that one was gone for good (a reserved task
``lost``, not delayed). The kill now lands half a task in, after the early ack.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chaos.faults import FaultStep
from chaos.platform import Topology
from experiments.checker import Result
from experiments.findings import Fix
from experiments.model import (
    Cell,
    Experiment,
    ExperimentSpec,
    Param,
    Params,
    TaskLoad,
    Verdict,
    Workload,
)
from experiments.summary import Summary
from experiments.theory import Expect, in_flight, judged, needs_work_in_flight, struck
from services.history import Event, Kind

NAME = "prefetch-loss"
TASKS = 10  # sent in the first three seconds: more than the worker can reserve

PARAMS = (
    Param("prefetch_multiplier", 4, "worker_prefetch_multiplier", 1, 16),
    Param("acks", "early", "when the message is acknowledged", choices=("early", "late")),
    Param("concurrency", 1, "pool processes of the worker", 1, 4),
    Param("visibility_timeout", 4.0, "Redis visibility timeout, seconds (kombu's default: "
          "3600)", 1, 86400),
    Param("task_seconds", 1.0, "how long each task runs", 0.2, 60),
)


SHORT_TIMEOUT = 30.0  # a visibility timeout the run waits out; a longer one it does not


def comes_back(p: Params) -> bool:
    """Whether the killed worker's unacknowledged messages come back within the run."""
    return float(p["visibility_timeout"]) <= SHORT_TIMEOUT


def watched(p: Params) -> float:
    """At most this long after the workload: the queue's work, a replacement worker's
    start on a busy machine, and the timeout where the run waits it out."""
    work = TASKS * p["task_seconds"] / p["concurrency"] + 20.0
    return float(work + (p["visibility_timeout"] if comes_back(p) else 0.0))


def classify(events: Sequence[Event]) -> dict[str, list[str]]:
    """The killed worker's tasks: running at the kill or reserved by it, and what became
    of each (lost, or delivered again)."""
    kill = next((e for e in events if e.kind == Kind.FAULT and e.mechanism == "kill"), None)
    if kill is None:
        return {}
    acked: set[str] = set()
    started_before: dict[str, str] = {}  # work_id -> instance, first start before the kill
    later: dict[str, list[Event]] = {}  # work_id -> starts after the kill
    done_before: set[str] = set()  # finished before the kill: not the kill's loss
    finished: set[str] = set()
    for e in events:
        if e.kind == Kind.INTENT:
            acked.add(e.work_id)
        elif e.kind == Kind.START:
            if e.t < kill.t:
                started_before.setdefault(e.work_id, e.instance)
            else:
                later.setdefault(e.work_id, []).append(e)
        elif e.kind == Kind.FINISH:
            if e.t < kill.t:
                done_before.add(e.work_id)
            finished.add(e.work_id)
    running = [w for w, inst in started_before.items()
               if inst == kill.instance and w not in done_before]
    # Reserved: never started before the kill, and then started only as a redelivery
    # (the Redis transport marks it) or never at all — a message the killed worker had
    # just popped off the queue, before kombu wrote it to the unacked hash, is gone.
    reserved = [w for w in acked if w not in started_before
                and (not later.get(w) or all(s.attempt > 1 for s in later[w]))]
    return {
        "running_lost": sorted(w for w in running if w not in finished),
        "running_redelivered": sorted(w for w in running if w in finished),
        "reserved_lost": sorted(w for w in reserved if w not in finished),
        "reserved_redelivered": sorted(w for w in reserved if w in finished),
    }


def measure(p: Params, events: Sequence[Event], result: Result) -> dict[str, Any]:
    found = classify(events)
    return {**{k: len(v) for k, v in found.items()},
            "tasks": {k: v for k, v in found.items() if v},
            "reserved_at_most": p["prefetch_multiplier"] * p["concurrency"]
            - p["concurrency"]}


def judge(p: Params, r: Result) -> Verdict:
    c = r.counts
    head = (f"prefetch {p['prefetch_multiplier']}, acks {p['acks']}, visibility timeout "
            f"{p['visibility_timeout']:g} s, {r.expected} tasks")
    untested = needs_work_in_flight(r, ("kill",), 1, "killing the worker mid-task")
    if untested is not None:
        return untested
    running = in_flight(struck(r, ("kill",)))
    reserved = p["prefetch_multiplier"] * p["concurrency"] - p["concurrency"]  # at most
    if not comes_back(p):
        # Nothing the killed worker held comes back within the run, whatever the acks:
        # its running tasks and its whole reserve are lost.
        return judged(head + ", nothing comes back within the run",
                      (Expect.within("lost", running + reserved, 1, 0,
                                     f"the {TASKS} tasks keep the reserve full; the "
                                     "prefetch may not have refilled the slot the running "
                                     "task's ack freed"), c["lost"]))
    if p["acks"] == "early":
        # The running task was acknowledged: lost. The reserved ones come back.
        return judged(head + ", the reserved back after the timeout",
                      (Expect.exactly("lost", running), c["lost"]))
    return judged(head + ", all back after the timeout",
                  (Expect.exactly("lost", 0), c["lost"]),
                  (Expect.exactly("recovered", running), c["recovered"]))


def _says(s: Summary) -> str:
    p, m = s["parameters"], s.get("measured") or {}
    return (f"prefetch {p['prefetch_multiplier']}, acks {p['acks']}, timeout "
            f"{p['visibility_timeout']:g} s: running lost {m.get('running_lost', 0)}, "
            f"reserved lost {m.get('reserved_lost', 0)}, reserved back "
            f"{m.get('reserved_redelivered', 0)}")


CELLS = (Cell("left-out", "Prefetched tasks on a kill", "Celery", {}, _says),)


def build(p: dict[str, Any]) -> Experiment:
    burst = 3.0  # long enough for every send on a busy machine (the first one connects)
    return Experiment(
        name=NAME,
        topology=Topology(
            replicas={"worker": 1},
            settings={"acks": p["acks"], "prefetch_multiplier": p["prefetch_multiplier"],
                      "worker_concurrency": p["concurrency"],
                      "visibility_timeout": p["visibility_timeout"],
                      "unacked_restore_interval": 0.5},
        ),
        workload=Workload(duration=burst, tasks=TaskLoad(TASKS / burst, p["task_seconds"])),
        # Mid-job, once the burst is in: the worker holds a running task and its reserve.
        # Half a task into it, so an early ack (sent when the pool takes the task, through
        # the worker's busy event loop) has been made before the kill.
        faults=(FaultStep("kill", "worker", at=burst + 0.2, on="start", mechanism="celery",
                          delay=p["task_seconds"] / 2),),
        drain=watched(p),
        redelivers=True,
    )


SPEC = ExperimentSpec(
    name=NAME,
    summary="a worker SIGKILLed mid-task: its running and its prefetched tasks, counted apart",
    params=PARAMS,
    build=build,
    judge=judge,
    measure=measure,
    cells=CELLS,
    variants=({"acks": "early"}, {"acks": "late"}, {"acks": "early", "prefetch_multiplier": 1},
              {"acks": "early", "visibility_timeout": 3600.0},
              {"acks": "late", "visibility_timeout": 3600.0}),
    quick_variants=({"acks": "early"}, {"acks": "late"}),
)

# What removes this experiment's failure (said beside a run that lost or duplicated work).
FIXES = (Fix("acks late: the broker delivers them again", {"acks": "late"},
             when={"acks": "early"}),)
