"""scale-in: an autoscaler-style scale-down of Celery workers, some of them busy.

An autoscaler (HPA, KEDA) lowers the worker Deployment's replicas; the ReplicaSet
chooses which pods to delete, and nothing in its ranking knows which pods run a task:
unscheduled before scheduled, pending before running, not ready before ready, lower
``controller.kubernetes.io/pod-deletion-cost`` first, then the more recently Ready and
the newer ("ReplicaSet", "Pod deletion cost" in the Kubernetes docs). A deleted worker
gets SIGTERM, Celery's warm shutdown waits for its task, and kubelet's SIGKILL cuts a
task longer than the grace: with acks late its message comes back after the visibility
timeout and runs again (recovered); the work is done twice over, late.

The fix attempted: before the scale-down, annotate each worker pod with a deletion
cost of the tasks it runs (as an autoscaler that knows its workers could), so the idle
ones go first. The docs call the annotation best effort ("does not offer any
guarantees on pod deletion order"); the run measures how well it holds.

Each worker runs one task at a time (concurrency 1, prefetch 1, acks late: a busy
worker holds no second message), and ``--busy`` tasks are sent at the start, so that
many workers are busy when ``--workers`` is scaled to ``--to``. The local platform
picks which instances go by its own rule and has no deletion cost: the run is refused
there with the cost (``scale-in-by-cost`` needs Kubernetes); without it, it runs as
the local platform's scale-down, its analogue (it picks which instance goes by its own rule).
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
from experiments.tables import KUBERNETES
from experiments.theory import Expect, judged, struck
from services.history import Event, Kind

NAME = "scale-in"

PARAMS = (
    Param("workers", 4, "Celery worker pods before the scale-down", 2, 16),
    Param("to", 2, "worker pods after it", 1, 15),
    Param("busy", 2, "workers busy at the scale-down (one long task each)", 1, 15),
    Param("deletion_cost", False, "annotate each pod with a deletion cost of its running "
          "tasks before the scale-down"),
    Param("task_seconds", 10.0, "how long each task runs (longer than the grace: cut)",
          1, 600),
    Param("grace", 2.0, "terminationGracePeriodSeconds of the worker pods", 1, 600),
    Param("scale_at", 3.0, "seconds into the run of the scale-down", 1, 600),
    Param("visibility_timeout", 15.0, "Redis transport visibility timeout, seconds (longer "
          "than a task: no redelivery of a running one)", 2, 3600),
)


def cuttable(p: Params) -> int:
    """The most busy workers the scale-down can delete."""
    return int(min(p["busy"], p["workers"] - p["to"]))


def expectations(p: Params) -> list[Expect]:
    """Recovered is the cut tasks (each re-run once after the visibility timeout)."""
    removed = p["workers"] - p["to"]
    if p["deletion_cost"]:
        # the busy pods cost more: the idle ones go, as long as there are enough of them
        least = max(0, removed - (p["workers"] - p["busy"]))
        cut = Expect.exactly("recovered", least)
    else:
        # a pick that ignores the work: on average busy x removed / workers busy ones go
        cut = Expect("recovered", round(p["busy"] * removed / p["workers"]), 0, cuttable(p),
                     "the ReplicaSet's ranking ignores the work: any of the busy ones may go")
    return [cut, Expect.exactly("lost", 0), Expect.exactly("duplicated", 0)]


def bounds(p: Params) -> dict[str, tuple[int, int]]:
    return {e.what: (int(e.low), int(e.high)) for e in expectations(p)}


def judge(p: Params, r: Result) -> Verdict:
    how = "busy pods costlier to delete" if p["deletion_cost"] else "no deletion cost"
    head = (f"{p['workers']}->{p['to']} workers, {p['busy']} busy, {how} (recovered: cut by "
            "the scale-down, run again)")
    if not struck(r, ("scale-down",)):
        return Verdict.untested(f"{head}: no worker was scaled away")
    return judged(head, *((e, r.counts[e.what]) for e in expectations(p)))


def measure(p: Params, events: Sequence[Event], r: Result) -> dict[str, Any]:
    """Which workers were busy at the scale-down and which the ReplicaSet deleted."""
    running: dict[str, set[str]] = {}
    deleted: list[str] = []
    busy_then: list[str] = []
    for e in events:
        if e.kind == Kind.START:
            running.setdefault(e.instance, set()).add(e.exec_id)
        elif e.kind in (Kind.FINISH, Kind.REFUSED):
            running.get(e.instance, set()).discard(e.exec_id)
        elif e.kind == Kind.FAULT and e.mechanism == "scale-down":
            if not busy_then:
                busy_then = sorted(i for i, ex in running.items() if ex)
            deleted.append(e.instance)
    return {"busy_at_scale_down": busy_then, "deleted": deleted,
            "busy_deleted": len(set(busy_then) & set(deleted)),
            "expected": {k: list(v) for k, v in bounds(p).items()}}


def build(p: dict[str, Any]) -> Experiment:
    if not p["to"] < p["workers"]:
        raise BadInput("--to must be fewer workers than --workers")
    if p["busy"] > p["workers"]:
        raise BadInput("--busy must be at most --workers (one task per worker)")
    if p["task_seconds"] <= p["grace"] or p["task_seconds"] >= p["visibility_timeout"]:
        raise BadInput("--task-seconds must lie between --grace (cut by the SIGKILL) and "
                       "--visibility-timeout (no redelivery while it runs)")
    if p["scale_at"] >= p["task_seconds"]:
        raise BadInput("--scale-at must come before the busy tasks end (< --task-seconds)")
    step = FaultStep("scale-in-by-cost" if p["deletion_cost"] else "scale", "worker",
                     at=p["scale_at"], replicas=p["to"])
    return Experiment(
        name=NAME,
        topology=Topology(replicas={"worker": p["workers"]}, grace=p["grace"],
                          settings={"acks": "late", "worker_concurrency": 1,
                                    "prefetch_multiplier": 1,
                                    "visibility_timeout": p["visibility_timeout"]}),
        # ``busy`` tasks in the first second: one per worker (prefetch 1, acks late)
        workload=Workload(duration=1.0, tasks=TaskLoad(float(p["busy"]), p["task_seconds"])),
        faults=(step,),
        drain=p["visibility_timeout"] + 2 * p["task_seconds"] + 10.0,
        redelivers=True,
    )


TABLE = KUBERNETES.key


def _cell(s: Summary) -> str:
    params = s.get("parameters") or {}
    how = "deletion cost" if params.get("deletion_cost") else "no deletion cost"
    return f"{how}: {n(s, 'recovered')} cut and re-run, {n(s, 'lost')}"


CELLS = (Cell(TABLE, "Celery (+ beat)", "scale-in", {}, _cell),)

SPEC = ExperimentSpec(
    name=NAME,
    summary="busy workers scaled in: the ReplicaSet's pick ignores their tasks; a "
            "pod-deletion-cost, best effort, spares them",
    params=PARAMS,
    build=build,
    judge=judge,
    measure=measure,
    cells=CELLS,
    quick={"task_seconds": 5.0, "visibility_timeout": 8.0},
    variants=({"deletion_cost": False}, {"deletion_cost": True}),
)

FIXES = (
    Fix("pod-deletion-cost on the busy pods before the scale-down", {"deletion_cost": True},
        when={"deletion_cost": False}),
)
