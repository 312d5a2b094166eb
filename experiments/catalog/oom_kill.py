"""oom-kill: a Celery task allocates past its worker container's memory limit.

The container's memory cgroup is at its limit: the kernel's OOM killer ends a process
of it. Which one decides what is lost:

- cgroup v1 (and cgroup v2 with kubelet's ``singleProcessOOMKill``): one process, the
  one with the highest badness — the pool process holding the allocation. The worker
  lives; Celery sees its pool child die (``WorkerLostError``) and the container is not
  restarted (kubelet sees no OOMKilled container).
- cgroup v2 with kubelet 1.28 or later (kubernetes/kubernetes#117793): kubelet sets
  ``memory.oom.group``, the whole container is killed at once, kubelet restarts it
  (reason ``OOMKilled``): every task it ran is cut, not only the greedy one.

What happens to the greedy task then is Celery's choice: with acks early it was
acknowledged when it started, lost. With acks late Celery still acknowledges a task
whose worker process died — on purpose, so that a task that kills its process is not
run again and again (Celery's configuration reference, ``task_reject_on_worker_lost``)
— lost too; with ``task_reject_on_worker_lost`` the message goes back to the queue
and the task runs again, and again dies: a poison message, started once per delivery
until the run ends.

The run records which of the two the node does (``as_run``: cgroup, kubelet) and
watches the worker containers for kubelet restarts. The local platform has no memory
limit to hit: the run is refused there; pool-child-kill (a SIGKILL to a pool process)
is its analogue.
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
from experiments.summary import Summary
from experiments.tables import KUBERNETES
from experiments.theory import Expect, judged, struck
from services.history import Event, Kind

NAME = "oom-kill"
GREEDY = "task-1"  # the work_id of the task that allocates past the limit (the 2nd sent)

PARAMS = (
    Param("acks", "early", "when the message is acknowledged", choices=("early", "late")),
    Param("reject_on_worker_lost", False, "acks late: task_reject_on_worker_lost (requeue a "
          "task whose process died; Celery's default: off)"),
    Param("memory_mb", 256, "the worker container's memory limit, MiB", 64, 4096),
    Param("hog_mb", 512, "what the greedy task allocates, MiB (past the limit)", 16, 8192),
    Param("rate", 2.0, "tasks sent per second", 0.1, 50),
    Param("task_seconds", 1.0, "how long each task runs", 0, 60),
    Param("duration", 8.0, "seconds of submissions", 2, 3600),
)


def greedy(r: Result) -> tuple[str, int]:
    """The greedy task's verdict and how often it started."""
    unit = r.units.get(GREEDY)
    return (unit.verdict, unit.starts) if unit else ("absent", 0)


def judge(p: Params, r: Result) -> Verdict:
    verdict, starts = greedy(r)
    whole = bool(struck(r, ("container-restart",)))  # the group kill took the container
    others = r.counts["lost"] + r.counts["in_doubt"] - (verdict in ("lost", "in_doubt"))
    head = (f"acks {p['acks']}{', reject on worker lost' if p['reject_on_worker_lost'] else ''}"
            f", {p['hog_mb']} MiB past a {p['memory_mb']} MiB limit ("
            + ("the whole container killed" if whole else "one pool process killed")
            + f"; the greedy task {verdict.replace('_', ' ')})")
    if starts == 0:
        return Verdict.untested(f"{head}: the greedy task never started")
    done = Expect.exactly("greedy task finished", 0)
    finished = int(verdict not in ("lost", "in_doubt"))
    if p["acks"] == "late" and p["reject_on_worker_lost"]:
        # requeued after every death, it starts again and dies again: a poison message
        again = Expect("greedy task starts", 3, 2, float("inf"), "one per delivery until the "
                       "run ends, each one killed")
        return judged(head, (done, finished), (again, starts))
    # acknowledged (early), or acked on its process's death (late): started once, never done
    checks = [(done, finished), (Expect.exactly("greedy task starts", 1), starts)]
    if not whole:
        checks.append((Expect.exactly("other tasks lost", 0), others))
    return judged(head, *checks)


def measure(p: Params, events: Sequence[Event], r: Result) -> dict[str, Any]:
    reasons = [str((e.detail or {}).get("reason", "")) for e in events
               if e.kind == Kind.FAULT and e.mechanism == "container-restart"]
    verdict, starts = greedy(r)
    return {"greedy_verdict": verdict, "greedy_starts": starts,
            "killed": "the whole container" if reasons else "one pool process",
            "container_restart_reasons": reasons}


def build(p: dict[str, Any]) -> Experiment:
    if p["hog_mb"] <= p["memory_mb"]:
        raise BadInput(f"--hog-mb {p['hog_mb']} must exceed --memory-mb {p['memory_mb']}: "
                       "the task must allocate past the limit")
    if p["reject_on_worker_lost"] and p["acks"] != "late":
        raise BadInput("--reject-on-worker-lost applies with --acks late")
    if p["rate"] * p["duration"] < 2:
        raise BadInput("--rate x --duration must send at least 2 tasks (the 2nd is the greedy)")
    return Experiment(
        name=NAME,
        topology=Topology(replicas={"worker": 1}, settings={
            "acks": p["acks"], "reject_on_worker_lost": p["reject_on_worker_lost"],
            "worker_memory_mb": p["memory_mb"], "hog_work": GREEDY, "hog_mb": p["hog_mb"],
            "worker_concurrency": 2}),
        workload=Workload(duration=p["duration"], tasks=TaskLoad(p["rate"], p["task_seconds"])),
        faults=(FaultStep("watch-restarts", "worker", at=0.0, duration=p["duration"] + 10),),
        drain=15.0 + p["task_seconds"],
        redelivers=p["acks"] == "late",
    )


TABLE = KUBERNETES.key


def _cell(s: Summary) -> str:
    params, measured = s.get("parameters") or {}, s.get("measured") or {}
    reject = " + reject on worker lost" if params.get("reject_on_worker_lost") else ""
    return (f"acks {params.get('acks')}{reject}: {measured.get('killed', '?')} killed, the "
            f"task {measured.get('greedy_verdict', '?')} after "
            f"{measured.get('greedy_starts', '?')} start(s)")


CELLS = (Cell(TABLE, "Celery (+ beat)", "OOM kill", {}, _cell),)

SPEC = ExperimentSpec(
    name=NAME,
    summary="a task allocates past its worker's memory limit: the OOM killer ends its pool "
            "process (cgroup v1) or the container (cgroup v2); the task is lost, or a poison",
    params=PARAMS,
    build=build,
    judge=judge,
    measure=measure,
    cells=CELLS,
    variants=({"acks": "early"}, {"acks": "late", "reject_on_worker_lost": True}),
)

FIXES = (
    Fix("a task that needs less, or a limit that fits it: no requeue makes it fit",
        {"hog_mb": 128}, when={"acks": "early"}),
)
