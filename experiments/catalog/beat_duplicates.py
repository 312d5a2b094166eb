"""beat-duplicates: two Celery beat replicas send every periodic task twice.

Claim (the seed): run "Celery (optionally with Celery Beat for scheduling)". Beat
is a singleton: with ``--beat-replicas 2`` every due tick is sent, and run, twice.
``--guard redbeat`` (celery-redbeat's lock in the broker Redis) lets one beat send.
``--kill-holder`` SIGKILLs the beat that holds the lock: ticks are missed until
its lock expires (``--lock-timeout``) and the standby takes over.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chaos.faults import FaultStep
from chaos.platform import Topology
from experiments.checker import Result, Schedule
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
from experiments.summary import n, param
from experiments.theory import Expect, judged, struck
from services.history import Event

NAME = "beat-duplicates"

PARAMS = (
    Param("beat_replicas", 2, "Celery beat replicas", 1, 8),
    Param("guard", "none", "beat guard", choices=("none", "redbeat")),
    Param("interval", 1.0, "seconds between periodic sends", 0.2, 60),
    Param("kill_holder", False, "SIGKILL the beat that holds the lock, mid-run"),
    Param("kill_at", 3.0, "seconds into the run of the kill", 0, 3600),
    Param("lock_timeout", 3.0, "redbeat lock timeout, seconds", 1, 600),
    Param("duration", 10.0, "seconds of the run window", 2, 3600),
)


def lost_ticks(p: Params, events: Sequence[Event], result: Result) -> dict[str, Any]:
    return {"missed_ticks": result.counts["lost"]}


EDGE = "a tick at each end of the window may be sent before a beat starts or run past the " \
    "drain"


def judge(p: Params, r: Result) -> Verdict:
    beats = p["beat_replicas"]
    dup, lost, due = r.counts["duplicated"], r.counts["lost"], r.expected
    head = f"{beats} beat(s), guard {p['guard']}"
    if p["kill_holder"]:
        # the holder is struck when a tick it sent starts on the worker; the tick runs
        # there, not on the beat, so the kill needs no work in flight on the beat itself
        if not struck(r, ("kill",)):
            return Verdict.untested(f"{head}: the lock holder was never killed")
        head += f", lock holder killed at {p['kill_at']:g}s"
    if p["guard"] == "redbeat" or beats == 1:
        # one sender: no duplicate. A killed holder's ticks are missed until its lock
        # expires (lock_timeout / interval ticks), and the standby's next sweep.
        missed = p["lock_timeout"] / p["interval"] if p["kill_holder"] else 0
        return judged(head, (Expect.exactly("duplicated", 0), dup),
                      (Expect("lost", missed, 0, missed + (3 if p["kill_holder"] else 1),
                              "ticks while the lock expires, plus the standby's poll "
                              "and an edge tick" if p["kill_holder"] else EDGE), lost))
    # Every beat sends every tick: duplicated = due, (N-1) * due extra.
    if p["kill_holder"]:
        return judged(head, (Expect("extra executions", (beats - 1) * due,
                                    (beats - 2) * due, (beats - 1) * due,
                                    "the killed beat sends nothing until it is replaced"),
                             r.extra_executions))
    return judged(head, (Expect.within("duplicated", due, 2, 0, EDGE), dup),
                  (Expect.within("extra executions", (beats - 1) * due, 2 * (beats - 1), 0,
                                 EDGE), r.extra_executions),
                  (Expect.within("lost", 0, 0, 1, EDGE), lost))


UNGUARDED = {"guard": "none"}
CELLS = (
    Cell("seed", "Survives restarts", "Celery", {"kill_holder": True},
         lambda s: f"{s['counts'].get('lost', 0)} tick(s) missed when the lock-holding beat "
                   "was killed"),
    Cell("seed", "Scheduling", "Celery", UNGUARDED,
         lambda s: f"{param(s, 'beat_replicas')} beats: {s.get('expected', 0)} due ticks ran "
                   f"{s.get('executions', 0)} times"),
    Cell("seed", "Scheduling", "Celery", {"guard": "redbeat", "kill_holder": False},
         lambda s: f"redbeat lock: {n(s, 'duplicated')}"),
    Cell("seed", "Horizontal scaling", "Celery", UNGUARDED,
         lambda s: f"{param(s, 'beat_replicas')} beat replicas: {n(s, 'duplicated')}"),
)


def build(p: dict[str, Any]) -> Experiment:
    if p["kill_holder"] and not 0 < p["kill_at"] < p["duration"]:
        raise BadInput("--kill-at must fall inside the run (0 < kill-at < duration)")
    faults: tuple[FaultStep, ...] = ()
    if p["kill_holder"]:
        # the holder is the beat that sent the tick a worker just started
        faults = (FaultStep("kill", "beat", at=p["kill_at"], on="start", mechanism="beat"),)
    return Experiment(
        name=NAME,
        topology=Topology(
            replicas={"worker": 1, "beat": p["beat_replicas"]},
            settings={"beat_interval": p["interval"], "beat_guard": p["guard"],
                      "beat_lock_timeout": p["lock_timeout"], "worker_concurrency": 2},
            replace_delay=30.0 if p["kill_holder"] else 1.0,  # let the standby take over
        ),
        workload=Workload(duration=p["duration"]),
        faults=faults,
        schedules=(Schedule("beat", p["interval"]),),
        drain=3.0,
    )


SPEC = ExperimentSpec(
    name=NAME,
    summary="two beat replicas send every periodic task twice; a redbeat lock sends it once",
    params=PARAMS,
    build=build,
    judge=judge,
    measure=lost_ticks,
    cells=CELLS,
    quick={"duration": 5.0},
    quick_variants=({"beat_replicas": 2, "guard": "none"},
                    {"beat_replicas": 2, "guard": "redbeat"}),
    variants=({"beat_replicas": 2, "guard": "none"},
              {"beat_replicas": 2, "guard": "redbeat"},
              {"beat_replicas": 2, "guard": "redbeat", "kill_holder": True}),
)

# What removes this experiment's failure (said beside a run that lost or duplicated work).
FIXES = (
    Fix("a celery-redbeat lock", {"guard": "redbeat"}, when={"guard": "none"}),
    Fix("one beat replica", {"beat_replicas": 1, "guard": "none", "kill_holder": False}),
)
