"""drain: Celery workers evicted as ``kubectl drain`` evicts a node's pods, mid-task.

``kubectl drain`` cordons a node and evicts its pods through the Eviction API, which
respects each pod's PodDisruptionBudget (a 429 while none may go; the lab's workers
allow one at a time, k8s/base/worker-pdb.yaml) and its terminationGracePeriodSeconds
("API-initiated Eviction", "Safely Drain a Node" in the Kubernetes docs). An evicted
worker gets SIGTERM — Celery's warm shutdown, which waits for the running tasks — and
SIGKILL when the grace runs out. Tasks longer than the grace are cut:

- acks early (Celery's default): each cut task was acknowledged when it started:
  lost.
- acks late: its message is still unacknowledged; with the worker SIGKILLed nobody
  rejects it, so it stays in kombu's unacked hash until another worker's restore sweep
  puts it back, ``visibility_timeout`` after its delivery: run again, late.
- the fix, Celery 5.5's soft shutdown (its workers guide, "Soft Shutdown"): with
  ``REMAP_SIGTERM=SIGQUIT`` in the worker's environment SIGTERM starts the cold
  shutdown, whose soft phase lets tasks run ``worker_soft_shutdown_timeout`` seconds
  (a little under the grace), then cancels the rest and puts their unacknowledged
  messages back at once: with acks late, run again within seconds, not after the
  visibility timeout; with acks early still lost (nothing is left unacknowledged).

On one node the lab evicts the worker pods without cordoning it (their replacements
must land somewhere); with a second node (k8s/node, ``NODES=2``) a drain is the same
evictions. The local platform has no Eviction API: the run is refused there (the
local analogue of a graceful stop past the grace is celery-kill's kill of a worker).
"""

from __future__ import annotations

import statistics
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
from experiments.tables import KUBERNETES
from experiments.theory import Expect, in_flight, judged, needs_work_in_flight, struck
from services.history import Event, Kind

NAME = "drain"
EVICTION = "evict"  # the mark the drain leaves on each evicted instance

PARAMS = (
    Param("workers", 2, "Celery worker pods (prefork)", 1, 8),
    Param("concurrency", 2, "pool processes per worker", 1, 8),
    Param("acks", "early", "when the message is acknowledged", choices=("early", "late")),
    Param("soft_shutdown", 0.0, "worker_soft_shutdown_timeout, seconds, with "
          "REMAP_SIGTERM=SIGQUIT (0: off, Celery's default)", 0, 600),
    Param("grace", 4.0, "terminationGracePeriodSeconds of the worker pods", 1, 600),
    Param("task_seconds", 8.0, "how long each task runs (longer than the grace: cut)",
          0.1, 600),
    Param("rate", 1.0, "tasks sent per second", 0.1, 50),
    Param("duration", 10.0, "seconds of submissions", 2, 3600),
    Param("drain_at", 4.0, "seconds into the run of the drain", 0.5, 3600),
    Param("visibility_timeout", 30.0, "Redis transport visibility timeout, seconds (kombu's "
          "default: 3600)", 1, 3600),
)


def cut_tasks(p: Params) -> int:
    """The most tasks a drain can cut: every pool process of every worker busy."""
    return int(p["workers"] * p["concurrency"])


def expectations(p: Params, in_flight_then: int) -> list[Expect]:
    """What the theory gives for the tasks in flight on the evicted workers: those with
    more than the grace left are cut — with start times spread evenly over a task's
    length, a fraction (task - grace) / task of them."""
    cut = in_flight_then * (p["task_seconds"] - p["grace"]) / p["task_seconds"]
    why = (f"{in_flight_then} in flight at the evictions, those within their last "
           f"{p['grace']:g} s finish in the warm shutdown")
    band = Expect(EARLY_CUT if p["acks"] == "early" else "recovered", round(cut), 1,
                  in_flight_then, why)
    if p["acks"] == "early":
        return [band, Expect.exactly("duplicated", 0)]
    # acks late: put back (at once, or after the visibility timeout) and run once more;
    # no effect happened before the cut (the effect is the task's end), so no duplicate.
    return [Expect.exactly("lost", 0), band, Expect.exactly("duplicated", 0)]


EARLY_CUT = "lost"


def bounds(p: Params) -> dict[str, tuple[int, int]]:
    """(low, high) per verdict, with every pool process busy at the evictions."""
    return {e.what: (int(e.low), int(e.high)) for e in expectations(p, cut_tasks(p))}


def judge(p: Params, r: Result) -> Verdict:
    soft = f", soft shutdown {p['soft_shutdown']:g}s" if p["soft_shutdown"] else ""
    head = (f"acks {p['acks']}{soft}, tasks of {p['task_seconds']:g}s past a "
            f"{p['grace']:g}s grace")
    untested = needs_work_in_flight(r, (EVICTION,), 1, "a drain cutting tasks")
    if untested is not None:
        return untested
    checks = expectations(p, in_flight(struck(r, (EVICTION,))))
    return judged(head, *((e, r.counts[e.what]) for e in checks))


def eviction_to_rerun(events: Sequence[Event]) -> list[float]:
    """For each task cut by an eviction: seconds from the eviction to its next start."""
    running: dict[str, dict[str, str]] = {}  # instance -> exec_id -> work_id
    cut_at: dict[str, float] = {}
    found = []
    for e in events:
        if e.kind == Kind.START:
            if e.work_id in cut_at:
                found.append(round(e.t - cut_at.pop(e.work_id), 3))
            running.setdefault(e.instance, {})[e.exec_id] = e.work_id
        elif e.kind in (Kind.FINISH, Kind.REFUSED):
            running.get(e.instance, {}).pop(e.exec_id, None)
        elif e.kind == Kind.FAULT and e.mechanism == EVICTION:
            for work_id in running.get(e.instance, {}).values():
                cut_at.setdefault(work_id, e.t)
    return found


def measure(p: Params, events: Sequence[Event], r: Result) -> dict[str, Any]:
    times = eviction_to_rerun(events)
    held_back = [float((e.detail or {}).get("budget_wait", 0.0)) for e in events
                 if e.kind == Kind.FAULT and e.mechanism == EVICTION]
    return {
        "eviction_to_rerun_seconds": times,
        "eviction_to_rerun_median": statistics.median(times) if times else None,
        "evictions": len(held_back),
        "held_back_by_budget_seconds": held_back,
        "expected": {k: list(v) for k, v in bounds(p).items()},
    }


def build(p: dict[str, Any]) -> Experiment:
    if p["task_seconds"] <= p["grace"]:
        raise BadInput(f"--task-seconds {p['task_seconds']:g} must be longer than --grace "
                       f"{p['grace']:g}: shorter tasks finish in the warm shutdown")
    if p["soft_shutdown"] and p["soft_shutdown"] >= p["grace"]:
        raise BadInput(f"--soft-shutdown {p['soft_shutdown']:g} must be under --grace "
                       f"{p['grace']:g}: kubelet's SIGKILL would cut it short")
    if p["rate"] * p["task_seconds"] < p["workers"] * p["concurrency"]:
        raise BadInput("--rate x --task-seconds must keep every pool process busy (at least "
                       "--workers x --concurrency tasks in flight)")
    if not p["drain_at"] < p["duration"]:
        raise BadInput("--drain-at must fall inside the run (drain-at < duration)")
    settings: dict[str, Any] = {"acks": p["acks"], "visibility_timeout": p["visibility_timeout"],
                                "worker_concurrency": p["concurrency"]}
    if p["soft_shutdown"]:
        settings["soft_shutdown_timeout"] = p["soft_shutdown"]
    return Experiment(
        name=NAME,
        topology=Topology(replicas={"worker": p["workers"]}, settings=settings,
                          grace=p["grace"]),
        workload=Workload(duration=p["duration"], tasks=TaskLoad(p["rate"], p["task_seconds"])),
        faults=(FaultStep("drain", "worker", at=p["drain_at"]),),
        # every eviction waits for the last one's replacement (the budget), then the
        # cut tasks come back after the visibility timeout and run once more
        drain=p["visibility_timeout"] + 2 * p["task_seconds"] + 20.0,
        redelivers=p["acks"] == "late",
    )


TABLE = KUBERNETES.key


def _cell(s: Summary) -> str:
    params = s.get("parameters") or {}
    soft = " + soft shutdown" if params.get("soft_shutdown") else ""
    median = (s.get("measured") or {}).get("eviction_to_rerun_median")
    rerun = f", re-run {median:.1f} s after" if median is not None else ""
    return f"acks {params.get('acks')}{soft}: {n(s, 'lost')}, {n(s, 'recovered')}{rerun}"


CELLS = (Cell(TABLE, "Celery (+ beat)", "drain", {}, _cell),)

SPEC = ExperimentSpec(
    name=NAME,
    summary="workers evicted as kubectl drain does while their tasks outlast the grace: "
            "acks early loses them, acks late re-runs them; soft shutdown re-runs them at once",
    params=PARAMS,
    build=build,
    judge=judge,
    measure=measure,
    cells=CELLS,
    quick={"duration": 8.0},
    variants=({"acks": "early"}, {"acks": "late"}, {"acks": "late", "soft_shutdown": 3.0}),
)

FIXES = (
    Fix("acks late: the cut task comes back", {"acks": "late"}, when={"acks": "early"}),
    Fix("Celery's soft shutdown under the grace (REMAP_SIGTERM=SIGQUIT): back at once",
        {"soft_shutdown": 3.0}, when={"acks": "late", "soft_shutdown": 0.0}),
)
