"""scheduler-duplicates: APScheduler embedded in every API replica runs each tick once per replica.

Claim (the seed): "Each instance executes the same scheduled job". With N replicas
and no guard, every due tick finishes N times; a per-tick Redis lock
(``--guard redis-lock``) brings it back to once. ``--scale-to M --scale-at S``
starts with N replicas and scales to M at S seconds: duplicates start only then.

``--scheduler`` swaps the mechanism for the fixes users reach for (the guards apply
to APScheduler 3 only): ``apscheduler4`` — APScheduler 4.0.0a6, a pre-release, in
every API replica, all on one PostgreSQL data store and a Redis event broker, whose
user guide claims the schedules are not processed more than once; ``arq`` — arq
workers with a ``cron`` job (``unique=True``), claimed to run "only once even if
multiple workers are running". ``--fault`` strikes while ticks run: ``kill`` or
``pause`` (``--fault-for`` seconds, past ``--lease``) the instance running a tick,
mid-job; a rolling restart; a broker or a data-store (PostgreSQL) outage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chaos.faults import FAULTS, FaultStep
from chaos.platform import Topology
from experiments.checker import Result, Schedule
from experiments.fault_options import fault_params, fault_step, settings_for
from experiments.findings import Fix
from experiments.model import (
    BadInput,
    Cell,
    Experiment,
    ExperimentSpec,
    Param,
    Params,
    Verdict,
    Workload,
)
from experiments.summary import n, param, processes, ran_in
from experiments.theory import Expect, judged

NAME = "scheduler-duplicates"


@dataclass(frozen=True)
class Scheduler:
    """A ``--scheduler``: what its ticks say in the ledger, which component runs them,
    and what it has that a fault can take away (a broker Redis, a PostgreSQL data store)."""

    label: str
    component: str
    mechanism: str
    broker: bool = True
    datastore: bool = False
    whole_seconds: bool = False  # a cron grid: the interval divides a minute
    beside: Mapping[str, int] = field(default_factory=dict)  # other components it runs with
    settings: Mapping[str, Any] = field(default_factory=dict)
    # its documentation says each instance runs each tick (the claim is duplicates)
    per_instance: bool = False


SCHEDULER = {
    "apscheduler3": Scheduler("APScheduler 3", "api", "apscheduler"),
    "apscheduler4": Scheduler("APScheduler 4.0.0a6 (pre-release)", "api", "apscheduler4",
                              datastore=True),
    "arq": Scheduler("arq cron", "arq", "arq", whole_seconds=True),
    "procrastinate": Scheduler("procrastinate periodic", "procrastinate", "procrastinate",
                               broker=False, datastore=True, whole_seconds=True),
    "rq": Scheduler("RQ scheduled jobs", "rq", "rq", whole_seconds=True),
    "huey": Scheduler("Huey periodic, every consumer", "huey", "huey", whole_seconds=True,
                      per_instance=True),
    "huey-one-periodic": Scheduler("Huey periodic, one consumer (others --no-periodic)",
                                   "huey", "huey", whole_seconds=True,
                                   beside={"huey-periodic": 1},
                                   settings={"huey_no_periodic": True}),
    "dramatiq": Scheduler("Dramatiq delayed messages", "dramatiq", "dramatiq",
                          whole_seconds=True),
}
SCHEDULERS = tuple(SCHEDULER)
# what each scheduler's ticks say in the ledger, and which component runs them
MECHANISM = {k: v.mechanism for k, v in SCHEDULER.items()}
COMPONENT = {k: v.component for k, v in SCHEDULER.items()}

PARAMS = (
    Param("replicas", 3, "API replicas (arq: arq workers), each with its own scheduler", 1, 32),
    Param("interval", 1.0, "seconds between ticks", 0.1, 60),
    Param("duration", 10.0, "seconds of the run window", 1, 3600),
    Param("guard", "none", "scheduler guard", choices=("none", "redis-lock", "leader")),
    Param("align", "aligned", "fire times on a common wall-clock grid, or per process",
          choices=("aligned", "per-instance")),
    Param("scale_to", 0, "scale the API to this many replicas (0: no scaling)", 0, 32),
    Param("scale_at", 0.0, "seconds into the run when to scale", 0, 3600),
    Param("tick_seconds", 0.05, "how long each tick's work takes", 0, 60),
    Param("scheduler", "apscheduler3", "what schedules the tick: APScheduler 3 in each API "
          "replica, APScheduler 4.0.0a6 (a pre-release) in each API replica on one "
          "PostgreSQL data store, or a task queue's workers with their periodic job (arq "
          "cron, procrastinate, RQ, Huey)", choices=SCHEDULERS),
    Param("stalled_retry", False, "--scheduler procrastinate: also run the documented "
          "\"Retry stalled jobs\" periodic task"),
    Param("fencing", False, "--guard leader: the ledger refuses a deposed leader's effect"),
    *fault_params(default_for=5.0, default_offset=2.0),
    Param("lease", 0.0, "lease seconds: apscheduler4's lease_duration, the leader guard's "
          "lease (0: the default, 30 and 3)", 0, 3600),
)


EDGE = "a tick at each end of the window may fire before a replica's scheduler or fall " \
    "past the drain"


def judge(p: Params, r: Result) -> Verdict:
    guard, most = p["guard"], max(p["replicas"], p["scale_to"])
    due, c, extra = r.expected, r.counts, r.extra_executions
    fault = p.get("fault", "none")
    under = "" if fault == "none" else f", {fault} at {p['fault_at']:g}s"
    if p.get("scheduler", "apscheduler3") != "apscheduler3":
        what = SCHEDULER[p["scheduler"]]
        if what.per_instance and most > 1:
            # its docs: every instance enqueues every tick, so N copies of each
            return judged(f"{what.label} with {most} replicas{under} (its docs: each one "
                          "enqueues every tick)",
                          (Expect.within("duplicated", due, 2, 0, EDGE), c["duplicated"]),
                          (Expect.within("extra executions", (most - 1) * due,
                                         2 * (most - 1), 0, EDGE), extra))
        return judged(f"{what.label} with {most} replicas{under} (its claim: each tick once)",
                      (Expect.exactly("duplicated", 0), c["duplicated"]))
    if guard != "none":
        return judged(f"guard {guard}, {most} replicas{under}",
                      (Expect.exactly("duplicated", 0), c["duplicated"]),
                      (Expect.within("lost", 0, 0, 1, "the tick due as the guard first takes "
                                     "its lock or lease may be missed"), c["lost"]))
    if p["align"] == "per-instance":
        # Each replica fires on its own phase: its ticks are its own units, so N series.
        runs = most * int(p["duration"] / p["interval"])
        return judged(f"unguarded, {most} replicas each on its own phase{under}",
                      (Expect.within("executions", runs, most, most, "each replica's series "
                                     "may have one tick more or fewer in the window"),
                       r.executions))
    if most == 1:
        return judged(f"one replica{under} runs each tick once",
                      (Expect.exactly("duplicated", 0), c["duplicated"]))
    # Every due tick runs once per replica: duplicated = due, (N-1) * due extra.
    replicas = p["replicas"]
    if p["scale_to"]:
        # N copies of each tick before the scale, M after it: (N-1)*before + (M-1)*after
        after_n = p["scale_to"]
        before = min(due, math.ceil(p["scale_at"] / p["interval"]))
        theory = (replicas - 1) * before + (after_n - 1) * (due - before)
        low, high = sorted(((replicas - 1) * due + (after_n - replicas), theory))
        return judged(f"unguarded, {replicas}→{after_n} replicas at {p['scale_at']:g}s{under}",
                      (Expect("extra executions", theory, low, high + abs(after_n - replicas),
                              f"ticks run {replicas} times until the new replicas' schedulers "
                              "start, which takes a few seconds; at least one tick runs on "
                              "all of them"), extra))
    if fault != "none":
        # one replica may be out for the fault's span: at least N-2 copies of each tick
        return judged(f"unguarded, {most} replicas{under}",
                      (Expect("extra executions", (most - 1) * due, (most - 2) * (due - 2),
                              (most - 1) * due, "the struck replica runs no tick while it is "
                              "out; " + EDGE), extra))
    return judged(f"unguarded, {most} replicas, each tick runs once per replica",
                  (Expect.within("duplicated", due, 2, 0, EDGE), c["duplicated"]),
                  (Expect.within("extra executions", (most - 1) * due, 2 * (most - 1), 0,
                                 EDGE), extra),
                  (Expect.exactly("lost", 0), c["lost"]))


def _unguarded(s: Any) -> str:
    scaled = f"→{param(s, 'scale_to')}" if param(s, "scale_to") else ""
    return (f"{param(s, 'replicas')}{scaled} replicas unguarded: {n(s, 'duplicated')}, "
            f"{s.get('extra_executions', 0)} extra runs")


# The seed's AsyncIOScheduler cells: APScheduler 3 runs with no fault (a run stored
# before --scheduler and --fault existed has neither parameter).
AS_SEEDED = {"scheduler": lambda v: v in (None, "apscheduler3"),
             "fault": lambda v: v in (None, "none")}
UNGUARDED = {"guard": "none", **AS_SEEDED}
CELLS = (
    Cell("seed", "Runs outside FastAPI", "AsyncIOScheduler", UNGUARDED, ran_in),
    Cell("seed", "Infrastructure needed", "AsyncIOScheduler", UNGUARDED, processes),
    Cell("seed", "Scheduling", "AsyncIOScheduler", UNGUARDED,
         lambda s: f"{s.get('expected', 0)} due ticks ran {s.get('executions', 0)} times"),
    Cell("seed", "Horizontal scaling", "AsyncIOScheduler", UNGUARDED, _unguarded),
    Cell("seed", "Horizontal scaling", "AsyncIOScheduler", {"guard": "redis-lock", **AS_SEEDED},
         lambda s: f"Redis lock per tick: {n(s, 'duplicated')}, {n(s, 'lost')}"),
)


def _check(p: dict[str, Any]) -> None:
    scheduler = p["scheduler"]
    if scheduler != "apscheduler3" and p["guard"] != "none":
        raise BadInput(f"--guard {p['guard']} applies to --scheduler apscheduler3 only "
                       f"(not {scheduler})")
    if scheduler != "apscheduler3" and p["align"] != "aligned":
        raise BadInput("--align per-instance applies to --scheduler apscheduler3 only")
    if p["fencing"] and p["guard"] != "leader":
        raise BadInput("--fencing needs --guard leader")
    what = SCHEDULER[scheduler]
    if what.whole_seconds:
        whole = int(p["interval"])
        if whole != p["interval"] or whole < 1 or 60 % whole:
            raise BadInput(f"--scheduler {scheduler}: --interval must be whole seconds "
                           f"dividing 60 (a cron grid), not {p['interval']:g}")
    if p["fault"] == "datastore-outage" and not what.datastore:
        raise BadInput(f"--fault datastore-outage: {scheduler} has no data store")
    if p["fault"] in ("broker-outage", "partition") and not what.broker:
        raise BadInput(f"--fault {p['fault']}: {scheduler} has no broker (its one store is "
                       "PostgreSQL: try --fault datastore-outage)")
    if p["stalled_retry"] and scheduler != "procrastinate":
        raise BadInput("--stalled-retry applies to --scheduler procrastinate only")
    if p["fault"] != "none" and not 0 <= p["fault_at"] < p["duration"]:
        raise BadInput("--fault-at must fall inside the run (0 <= fault-at < duration)")


def _faults(p: dict[str, Any]) -> tuple[FaultStep, ...]:
    component, mechanism = COMPONENT[p["scheduler"]], MECHANISM[p["scheduler"]]
    steps: list[FaultStep] = []
    if p["scale_to"]:
        steps.append(FAULTS["scale"].step(component, at=p["scale_at"],
                                           numbers={"replicas": p["scale_to"]}))
    # mid-job where the fault can strike there: the instance whose tick just started
    fault = fault_step(p, component, mechanism)
    return (*steps, fault) if fault else tuple(steps)


def build(p: dict[str, Any]) -> Experiment:
    _check(p)
    if p["scale_to"] and not 0 < p["scale_at"] < p["duration"]:
        raise BadInput("--scale-at must fall inside the run (0 < scale-at < duration)")
    if p["tick_seconds"] >= p["interval"] * 10:
        raise BadInput("--tick-seconds must be shorter than ten intervals")
    settings: dict[str, Any] = {
        "scheduler_interval": p["interval"],
        "scheduler_guard": p["guard"],
        "scheduler_align": p["align"],
        "tick_seconds": p["tick_seconds"],
        "lock_ttl": max(30.0, p["interval"] * 10),
    }
    if p["scheduler"] == "apscheduler4":
        settings["scheduler_library"] = "apscheduler4"
        if p["lease"]:
            settings["apscheduler4_lease"] = p["lease"]
    settings.update(SCHEDULER[p["scheduler"]].settings)
    if p["stalled_retry"]:
        settings["stalled_retry"] = True
    if p["guard"] == "leader":
        settings["fencing"] = p["fencing"]
        if p["lease"]:
            settings["lease_seconds"] = p["lease"]
    faults = _faults(p)
    settings.update(settings_for(faults))  # a proxy per instance, movable clocks
    topology = Topology(replicas={COMPONENT[p["scheduler"]]: p["replicas"],
                                  **SCHEDULER[p["scheduler"]].beside}, settings=settings)
    lasting = max((f.duration for f in faults), default=0.0)
    return Experiment(
        name=NAME,
        topology=topology,
        workload=Workload(duration=p["duration"]),
        faults=faults,
        schedules=(Schedule("tick", p["interval"], aligned=p["align"] == "aligned"),),
        drain=p["tick_seconds"] + 2.0 + lasting,
        # a task queue's worker polls its queue (arq every 0.5 s): a tick starts later
        late_after=1.0 if SCHEDULER[p["scheduler"]].whole_seconds else 0.5,
    )


SPEC = ExperimentSpec(
    name=NAME,
    summary="every API replica's AsyncIOScheduler runs each tick: N replicas, N executions",
    params=PARAMS,
    build=build,
    judge=judge,
    cells=CELLS,
    quick={"replicas": 3, "interval": 1.0, "duration": 5.0},
    variants=({"guard": "none"}, {"guard": "redis-lock"}),
)

# What removes this experiment's failure (said beside a run that lost or duplicated work).
FIXES = (
    Fix("a Redis lock per tick", {"guard": "redis-lock"},
        when={"guard": "none", "scheduler": "apscheduler3", "fault": "none"}),
    Fix("a fenced leader", {"guard": "leader", "fencing": True},
        when={"scheduler": "apscheduler3"}),
    Fix("APScheduler 3 with a Redis lock per tick",
        {"scheduler": "apscheduler3", "guard": "redis-lock"}),
)
