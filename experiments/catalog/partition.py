"""partition: one instance cut off the broker Redis for a while; the ledger still sees it.

A network partition is not a crash: the instance keeps running, keeps its state and
its beliefs, and only loses the broker (locally its own TCP proxy drops its
connections and refuses new ones; the ledger is never proxied, so every execution is
still observed). Three ways it turns into duplicates, by ``--mechanism``:

- ``scheduler-lock``: API replicas with the per-tick Redis lock. The cut-off replica
  cannot take the lock; the lab's guard fails open (as a lock whose TTL passed while
  its holder was away) and runs every tick the others run too.
- ``redbeat``: two beats behind celery-redbeat's lock; the holder is cut off past the
  lock timeout and the standby takes the lock. Users report the old holder sending on
  (celery-redbeat #127, #129); measured here with celery-redbeat 2.4.2, the holder's
  beat dies of the refused connection instead, and the ticks between its last send
  and the standby's first are missed — no duplicate.
- ``worker``: a Celery worker cut off mid-task with acks late: the task's effect
  happens, its ack cannot reach the broker, the visibility timeout passes and another
  worker runs it again.

``--partition TARGET`` picks who is cut off: a component (the nemesis picks one, seeded;
for ``redbeat`` and ``worker`` the one that just started work) or an instance name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chaos.faults import FaultStep
from chaos.platform import Topology
from experiments import fault_options
from experiments.checker import Result, Schedule
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
from experiments.theory import Expect, in_flight, judged, needs_work_in_flight, struck
from services.history import Event, Kind, parse_scheduled

NAME = "partition"

PARAMS = (
    Param("mechanism", "scheduler-lock", "what the partition hits",
          choices=("scheduler-lock", "redbeat", "worker")),
    Param("partition", "", "who is cut off: a component or an instance name (default: the "
          "mechanism's own: api, the redbeat lock holder, the worker running a task)"),
    Param("partition_at", 1.5, "seconds into the run when the partition begins", 0, 3600),
    Param("partition_for", 4.0, "seconds the partition lasts", 0.5, 600),
    Param("duration", 7.0, "seconds of the run window", 2, 3600),
)

COMPONENT = {"scheduler-lock": "api", "redbeat": "beat", "worker": "worker"}
REPLICAS = {"scheduler-lock": {"api": 2}, "redbeat": {"beat": 2, "worker": 1},
            "worker": {"worker": 2}}
INTERVAL = 0.5  # ticks and beat sends, seconds
LOCK_TIMEOUT = 2.0  # redbeat's lock: shorter than the partition
VISIBILITY_TIMEOUT = 2.0  # the worker variant: shorter than the partition


def check_target(p: Params) -> str:
    """The target named by ``--partition`` (a component of this mechanism's topology or
    one of its instances), or the mechanism's default; BadInput for anything else."""
    target = p["partition"] or COMPONENT[p["mechanism"]]
    return fault_options.parse_target(str(target), REPLICAS[p["mechanism"]], "--partition")


def partition_window(events: Sequence[Event]) -> tuple[float, float] | None:
    cut = next((e.t for e in events if e.kind == Kind.FAULT and e.mechanism == "partition"),
               None)
    healed = next((e.t for e in events if e.kind == Kind.FAULT and e.mechanism == "heal"), None)
    return (cut, healed) if cut is not None and healed is not None else None


def measure(p: Params, events: Sequence[Event], result: Result) -> dict[str, Any]:
    window = partition_window(events)
    victim = next((e.instance for e in events
                   if e.kind == Kind.FAULT and e.mechanism == "partition"), None)
    by_victim = [e for e in events if (e.kind == Kind.FINISH and e.instance == victim)
                 or (e.kind == Kind.START and e.detail.get("via") == victim)]
    return {
        "partitioned": victim,
        "partition_seconds": round(window[1] - window[0], 3) if window else None,
        "executions_by_partitioned_instance": sum(1 for e in by_victim if e.kind == Kind.FINISH)
        + sum(1 for e in by_victim if e.kind == Kind.START),
        "duplicated": result.counts["duplicated"],
        "extra_executions": result.extra_executions,
    }


EDGE = "a tick at each end of the partition may meet the broker still reachable"
RESERVE = 2 * 4  # the worker's prefetch: concurrency 2 x Celery's default multiplier 4


def judge(p: Params, r: Result) -> Verdict:
    c = r.counts
    target = p["partition"] or COMPONENT[p["mechanism"]]
    head = (f"{p['mechanism']}, {target} cut off for {p['partition_for']:g} s, "
            f"{r.expected} units")
    window = partition_window(r.marks)
    if window is None:
        return Verdict.untested(f"{head}; the partition was not recorded")
    if p["mechanism"] == "redbeat":
        # celery-redbeat's claim: one beat holds the lock, so each tick is sent once. What
        # the cut-off holder then does (send on, or die and leave ticks missed until its
        # lock expires) is what this celery-redbeat version did: an observation.
        verdict = judged(head + " (celery-redbeat's claim: each tick sent once)",
                         (Expect.exactly("duplicated", 0), c["duplicated"]))
        return Verdict(verdict.outcome, verdict.sentence + f" (observed, not claimed, with "
                       f"the celery-redbeat in the run's versions: {c['lost']} ticks missed)")
    if p["mechanism"] == "worker":
        untested = needs_work_in_flight(r, ("partition",), 1, "cutting off a worker mid-task")
        if untested is not None:
            return untested
        # acks late: the effect happens, the ack cannot be sent, the visibility timeout
        # passes and another worker runs it again; so too the tasks it had reserved
        running = in_flight(struck(r, ("partition",)))
        return judged(head, (Expect("duplicated", running, running, running + RESERVE,
                                    "the tasks the cut-off worker had reserved run twice "
                                    "as well"), c["duplicated"]),
                      (Expect.exactly("lost", 0), c["lost"]))
    # scheduler-lock: the cut-off replica cannot take the lock, fails open and runs every
    # tick the other replica runs too: every tick due during the partition, twice.
    cut, healed = window
    during = sum(1 for u in r.units.values()
                 if u.due and (fired := parse_scheduled(u.work_id)) and cut <= fired[1] <= healed)
    return judged(head, (Expect.within("duplicated", during, 1, 1, EDGE), c["duplicated"]),
                  (Expect.within("lost", 0, 0, 1, EDGE), c["lost"]))


def _says(s: Summary) -> str:
    p = s["parameters"]
    what = {"scheduler-lock": "per-tick lock, a replica cut off",
            "redbeat": "redbeat lock holder cut off",
            "worker": "worker cut off mid-task, acks late"}[p["mechanism"]]
    said = f"{what} for {p['partition_for']:g} s: {n(s, 'duplicated')}"
    if p["mechanism"] == "redbeat":
        version = (s.get("versions") or {}).get("celery-redbeat", "?")
        said += f"; observed with celery-redbeat {version}: {n(s, 'lost')} (not a claim)"
    return said


CELLS = (
    Cell("left-out", "Network partition", "AsyncIOScheduler", {"mechanism": "scheduler-lock"},
         _says),
    Cell("left-out", "Network partition", "Celery",
         {"mechanism": lambda m: m in ("redbeat", "worker")}, _says),
)


def build(p: dict[str, Any]) -> Experiment:
    target = check_target(p)
    if not 0 < p["partition_at"] < p["duration"]:
        raise BadInput("--partition-at must fall inside the run (0 < partition-at < duration)")
    mechanism = p["mechanism"]
    mid_job = mechanism != "scheduler-lock" and target == COMPONENT[mechanism]
    fault = FaultStep("partition", target, at=p["partition_at"], duration=p["partition_for"],
                      on="start" if mid_job else "",
                      mechanism={"redbeat": "beat", "worker": "celery"}.get(mechanism, ""))
    settings: dict[str, Any] = {"partitionable": True}
    schedules: tuple[Schedule, ...] = ()
    tasks = None
    drain = 3.0
    if mechanism == "scheduler-lock":
        settings |= {"scheduler_interval": INTERVAL, "scheduler_guard": "redis-lock",
                     "tick_seconds": 0.02}
        schedules = (Schedule("tick", INTERVAL),)
    elif mechanism == "redbeat":
        settings |= {"scheduler_enabled": False, "beat_interval": INTERVAL,
                     "beat_guard": "redbeat", "beat_lock_timeout": LOCK_TIMEOUT,
                     "worker_concurrency": 2}
        schedules = (Schedule("beat", INTERVAL),)
        drain = 4.0
    else:
        settings |= {"acks": "late", "visibility_timeout": VISIBILITY_TIMEOUT,
                     "unacked_restore_interval": 0.5, "worker_concurrency": 2}
        tasks = TaskLoad(1.0, 1.0)
        drain = p["partition_for"] + VISIBILITY_TIMEOUT + 10.0
    return Experiment(
        name=NAME,
        topology=Topology(replicas=REPLICAS[mechanism], settings=settings),
        workload=Workload(duration=p["duration"], tasks=tasks),
        faults=(fault,),
        schedules=schedules,
        drain=drain,
        redelivers=mechanism == "worker",
    )


SPEC = ExperimentSpec(
    name=NAME,
    summary="one instance cut off the broker (not the ledger): the per-tick lock, the redbeat "
            "lock, an ack that cannot be sent",
    params=PARAMS,
    build=build,
    judge=judge,
    measure=measure,
    cells=CELLS,
    variants=({"mechanism": "scheduler-lock"}, {"mechanism": "redbeat"},
              {"mechanism": "worker"}),
    quick_variants=({"mechanism": "scheduler-lock"}, {"mechanism": "worker"}),
)

# What removes this experiment's failure (said beside a run that lost or duplicated work).
FIXES = (
    Fix("a fenced leader instead of a lock that fails open",
        {"guard": "leader", "fencing": True, "fault": "partition"},
        when={"mechanism": "scheduler-lock"}, experiment="scheduler-duplicates"),
    Fix("an idempotency key in the task",
        {"acks": "late", "kill_at": "after-effect", "idempotent": True},
        when={"mechanism": "worker"}, experiment="celery-kill"),
)
