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
from experiments.model import BadInput, Experiment, ExperimentSpec, Param, Verdict, Workload
from services.ledger import Event

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


def lost_ticks(events: Sequence[Event], result: Result) -> dict[str, Any]:
    return {"missed_ticks": result.counts["lost"]}


def judge(p: dict[str, Any]) -> Any:
    guarded = p["guard"] == "redbeat" or p["beat_replicas"] == 1

    def verdict(r: Result) -> Verdict:
        dup, lost, due = r.counts["duplicated"], r.counts["lost"], r.expected
        text = (f"{p['beat_replicas']} beat(s), guard {p['guard']}: duplicated {dup}/{due}, "
                f"lost {lost}")
        if guarded:
            # a killed holder's ticks are missed until its lock expires: bounded, not zero
            bound = (p["lock_timeout"] / p["interval"] + 3) if p["kill_holder"] else 1
            return dup == 0 and lost <= bound, text + f" (want 0 duplicated, lost <= {bound:g})"
        return dup > 0, text + " (want duplicated > 0)"

    return verdict


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
        expectation=judge(p),
        drain=3.0,
        parameters=p,
        measure=lost_ticks,
    )


SPEC = ExperimentSpec(
    name=NAME,
    summary="two beat replicas send every periodic task twice; a redbeat lock sends it once",
    params=PARAMS,
    build=build,
    quick={"duration": 5.0},
    quick_variants=({"beat_replicas": 2, "guard": "none"},
                    {"beat_replicas": 2, "guard": "redbeat"}),
    variants=({"beat_replicas": 2, "guard": "none"},
              {"beat_replicas": 2, "guard": "redbeat"},
              {"beat_replicas": 2, "guard": "redbeat", "kill_holder": True}),
)
