"""Every experiment's judge and measure, on hand-written results and histories."""

from __future__ import annotations

from typing import Any

import pytest

from experiments import catalog
from experiments.checker import VERDICTS, Result, Schedule, Unit, check
from services.history import Event, scheduled_work_id


def mark(action: str = "kill", inflight: int | None = 1, t: float = 5.0,
         instance: str = "worker-1") -> Event:
    """A fault mark as the nemesis writes it to the ledger."""
    return Event(t, "fault", f"fault-{t}", action, instance, 1, 1, "",
                 {"inflight": inflight, "at": t}, "r")


def result(expected: int = 10, *, refused: int = 0, late: int = 0, extra: int = 0,
           marks: tuple[Event, ...] = (), **counts: int) -> Result:
    full = dict.fromkeys(VERDICTS, 0) | counts
    full["ok"] = full["ok"] or max(0, expected - sum(counts.values()))
    return Result(units={}, counts=full, expected=expected, executions=expected + extra,
                  extra_executions=extra, refused=refused, faults=len(marks), ignored=0,
                  late=late, marks=marks)


def units(*specs: tuple[str, int, int, bool, bool], marks: tuple[Event, ...] = ()) -> Result:
    """A result from units: (work_id, starts, finishes, acknowledged, due)."""
    made = {}
    for work_id, starts, finishes, acked, due in specs:
        verdict = ("duplicated" if finishes > 1 else "ok" if finishes else
                   "lost" if acked or due else "in_doubt")
        made[work_id] = Unit(work_id, verdict, finishes, starts, acked, due)
    counts = dict.fromkeys(VERDICTS, 0)
    for u in made.values():
        counts[u.verdict] += 1
    return Result(units=made, counts=counts,
                  expected=sum(u.acknowledged or u.due for u in made.values()),
                  executions=sum(u.finishes for u in made.values()),
                  extra_executions=sum(max(0, u.finishes - 1) for u in made.values()),
                  refused=0, faults=len(marks), ignored=0, late=0, marks=marks)


def ticks(*finishes: int, marks: tuple[Event, ...] = ()) -> Result:
    """Due ticks at 0, 1, 2, ... s, each finished that many times."""
    return units(*((f"tick@{i}.000", n, n, False, True) for i, n in enumerate(finishes)),
                 marks=marks)


def tasks(*starts: int) -> Result:
    return units(*((f"task-{i}", n, min(n, 1) if n < 2 else n, True, False)
                   for i, n in enumerate(starts)))


D, N, U = "demonstrated", "not_demonstrated", "untested"
KILL2 = (mark(inflight=2), mark(inflight=1, t=8.0))  # two kills, 3 tasks in flight
TERM = (mark("terminate", inflight=2), mark("terminate", inflight=2, t=8.0))
OUTAGE = (mark("broker-outage", None, 2.0, "broker"), mark("broker-back", None, 4.6, "broker"))
CUT = (mark("partition", 1, 2.0, "api-1"), mark("heal", None, 6.0, "api-1"))
UNGUARDED3 = {"guard": "none", "replicas": 3}

# (experiment, parameters, hand-written result, verdict). Each judge: the theory's
# number, the edge of its tolerance, and a case just outside it.
CASES: list[tuple[str, dict[str, Any], Result, str]] = [
    # unguarded: due with (N-1)*due extra; an edge tick at each end of the window
    ("scheduler-duplicates", UNGUARDED3, result(duplicated=10, extra=20), D),
    ("scheduler-duplicates", UNGUARDED3, result(duplicated=8, extra=16), D),
    ("scheduler-duplicates", UNGUARDED3, result(duplicated=7, extra=14), N),
    ("scheduler-duplicates", UNGUARDED3, result(duplicated=10, extra=15), N),
    ("scheduler-duplicates", UNGUARDED3, result(duplicated=1, lost=7, extra=2), N),
    ("scheduler-duplicates", {"guard": "none", "replicas": 1}, result(), D),
    ("scheduler-duplicates", {"guard": "none", "replicas": 1}, result(duplicated=1), N),
    # 1 -> 3 at 2 s of 10 ticks: theory 0*2 + 2*8 = 16 extra; at least 2 (one tick on all)
    ("scheduler-duplicates", {"guard": "none", "replicas": 1, "scale_to": 3, "scale_at": 2.0},
     result(duplicated=8, extra=16), D),
    ("scheduler-duplicates", {"guard": "none", "replicas": 1, "scale_to": 3, "scale_at": 2.0},
     result(duplicated=2, extra=4), D),
    ("scheduler-duplicates", {"guard": "none", "replicas": 1, "scale_to": 3, "scale_at": 2.0},
     result(duplicated=1, extra=1), N),
    ("scheduler-duplicates", {"guard": "none", "replicas": 1, "scale_to": 3, "scale_at": 2.0},
     result(duplicated=10, extra=19), N),
    ("scheduler-duplicates", {"guard": "redis-lock"}, result(lost=1), D),
    ("scheduler-duplicates", {"guard": "redis-lock"}, result(lost=2), N),
    ("scheduler-duplicates", {"guard": "leader"}, result(duplicated=1), N),
    ("scheduler-duplicates", {"scheduler": "arq"}, result(), D),
    ("scheduler-duplicates", {"scheduler": "arq"}, result(duplicated=1), N),
    # BackgroundTasks: lost >= in flight at the kills (3 here, less one per kill's moment)
    ("background-loss", {"mechanism": "background", "kills": 2}, result(lost=3, marks=KILL2), D),
    ("background-loss", {"mechanism": "background", "kills": 2}, result(lost=1, marks=KILL2), D),
    ("background-loss", {"mechanism": "background", "kills": 2}, result(marks=KILL2), N),
    ("background-loss", {"mechanism": "background", "kills": 2},
     result(lost=3, marks=(mark(inflight=0), mark(inflight=2))), U),
    ("background-loss", {"mechanism": "background", "kills": 0}, result(), D),
    ("background-loss", {"mechanism": "background", "kills": 0}, result(lost=1), N),
    ("background-loss", {"mechanism": "celery"}, result(), D),
    ("background-loss", {"mechanism": "celery"}, result(lost=1), N),
    # SIGTERM with a grace that covers the work: nothing lost
    ("background-loss", {"kill": "sigterm", "shutdown_grace": 5.0, "work_seconds": 1.0},
     result(20, marks=TERM), D),
    ("background-loss", {"kill": "sigterm", "shutdown_grace": 5.0, "work_seconds": 1.0},
     result(20, lost=1, marks=TERM), N),
    # shorter grace: at least the unit that triggered it, at most in flight + kills
    ("background-loss", {"kill": "sigterm"}, result(lost=2, marks=TERM), D),
    ("background-loss", {"kill": "sigterm"}, result(lost=6, marks=TERM), D),
    ("background-loss", {"kill": "sigterm"}, result(lost=7, marks=TERM), N),
    ("background-loss", {"kill": "sigterm"}, result(marks=TERM), N),
    # acks early: lost = tasks in flight at the kills (3), one either way per kill
    ("celery-kill", {"acks": "early"}, result(lost=3, marks=KILL2), D),
    ("celery-kill", {"acks": "early"}, result(lost=5, marks=KILL2), D),
    ("celery-kill", {"acks": "early"}, result(lost=6, marks=KILL2), N),
    ("celery-kill", {"acks": "early"}, result(marks=KILL2), N),
    ("celery-kill", {"acks": "early"}, result(lost=3, marks=(mark(inflight=0),) * 2), U),
    ("celery-kill", {"acks": "early", "kills": 0}, result(), D),
    ("celery-kill", {"acks": "early", "kills": 0}, result(lost=1), N),
    ("celery-kill", {"acks": "late", "kills": 0}, result(8), D),
    ("celery-kill", {"acks": "late", "kills": 0}, result(8, duplicated=1), N),
    # acks late: recovered = in flight at the kills
    ("celery-kill", {"acks": "late"}, result(recovered=3, marks=KILL2), D),
    ("celery-kill", {"acks": "late"}, result(recovered=2, duplicated=1, marks=KILL2), D),
    ("celery-kill", {"acks": "late"}, result(recovered=2, lost=1, marks=KILL2), N),
    ("celery-kill", {"acks": "late"}, result(recovered=6, marks=KILL2), N),
    ("celery-kill", {"acks": "late"}, result(marks=KILL2), N),
    # after the effect: duplicated = kills (1 here), up to one more per other pool process
    ("celery-kill", {"acks": "late", "kill_at": "after-effect", "kills": 1},
     result(duplicated=1, marks=(mark(inflight=0),)), D),
    ("celery-kill", {"acks": "late", "kill_at": "after-effect", "kills": 1},
     result(duplicated=2, marks=(mark(inflight=0),)), D),
    ("celery-kill", {"acks": "late", "kill_at": "after-effect", "kills": 1},
     result(duplicated=3, marks=(mark(inflight=0),)), N),
    ("celery-kill", {"acks": "late", "kill_at": "after-effect", "kills": 1},
     result(recovered=1, marks=(mark(inflight=0),)), N),
    ("celery-kill", {"acks": "late", "kill_at": "after-effect", "idempotent": True, "kills": 1},
     result(refused=1, recovered=1, marks=(mark(inflight=0),)), D),
    ("celery-kill", {"acks": "late", "kill_at": "after-effect", "idempotent": True, "kills": 1},
     result(refused=0, marks=(mark(inflight=0),)), N),
    ("celery-kill", {"acks": "late", "idempotent": True}, result(duplicated=1, marks=KILL2), N),
    # a task longer than the visibility timeout, no kill: every task runs twice
    ("celery-kill", {"acks": "late", "kills": 0, "task_seconds": 3.0,
                     "visibility_timeout": 1.5}, result(3, duplicated=3), D),
    ("celery-kill", {"acks": "late", "kills": 0, "task_seconds": 3.0,
                     "visibility_timeout": 1.5}, result(3, duplicated=2), D),
    ("celery-kill", {"acks": "late", "kills": 0, "task_seconds": 3.0,
                     "visibility_timeout": 1.5}, result(3, duplicated=1), N),
    # two beats: due duplicated, (N-1)*due extra
    ("beat-duplicates", {"guard": "none", "beat_replicas": 2}, result(duplicated=10, extra=10),
     D),
    ("beat-duplicates", {"guard": "none", "beat_replicas": 2}, result(duplicated=8, extra=8), D),
    ("beat-duplicates", {"guard": "none", "beat_replicas": 2}, result(duplicated=7, extra=7), N),
    ("beat-duplicates", {"guard": "none", "beat_replicas": 2}, result(), N),
    ("beat-duplicates", {"guard": "redbeat"}, result(lost=1), D),
    ("beat-duplicates", {"guard": "redbeat"}, result(lost=2), N),
    ("beat-duplicates", {"guard": "redbeat"}, result(duplicated=1), N),
    ("beat-duplicates", {"guard": "redbeat", "kill_holder": True, "lock_timeout": 3.0,
                         "interval": 1.0}, result(lost=6, marks=(mark(),)), D),
    ("beat-duplicates", {"guard": "redbeat", "kill_holder": True, "lock_timeout": 3.0,
                         "interval": 1.0}, result(lost=7, marks=(mark(),)), N),
    ("beat-duplicates", {"guard": "redbeat", "kill_holder": True, "lock_timeout": 3.0,
                         "interval": 1.0}, result(lost=3, marks=(mark(inflight=0),)), D),
    ("beat-duplicates", {"guard": "redbeat", "kill_holder": True, "lock_timeout": 3.0,
                         "interval": 1.0}, result(lost=3), U),
    ("loop-starvation", {"block_seconds": 1.5}, result(late=2), D),
    ("loop-starvation", {"block_seconds": 1.5}, result(lost=1), D),
    ("loop-starvation", {"block_seconds": 1.5}, result(), N),
    ("loop-starvation", {"block_seconds": 0.0}, result(), D),
    ("loop-starvation", {"block_seconds": 0.0}, result(late=1), N),
    ("restart-survival", {"mechanism": "background"}, result(lost=4), D),
    ("restart-survival", {"mechanism": "background"}, result(), N),
    ("restart-survival", {"mechanism": "celery"}, result(), D),
    ("restart-survival", {"mechanism": "celery"}, result(lost=1), N),
    ("leader-failover", {"fencing": False}, result(duplicated=2), D),
    ("leader-failover", {"fencing": False}, result(), N),
    ("leader-failover", {"fencing": True}, result(refused=2), D),
    ("leader-failover", {"fencing": True}, result(duplicated=1), N),
    # broker down 2.0..4.6 s: ticks at 2, 3, 4 run on both replicas, the others once
    ("broker-outage", {}, ticks(1, 1, 2, 2, 2, 1, 1, marks=OUTAGE), D),
    ("broker-outage", {}, ticks(1, 1, 1, 2, 1, 1, 1, marks=OUTAGE), D),
    ("broker-outage", {}, ticks(1, 1, 1, 1, 1, 1, 1, marks=OUTAGE), N),
    ("broker-outage", {}, ticks(2, 2, 2, 2, 2, 2, 2, marks=OUTAGE), N),
    ("broker-outage", {}, ticks(1, 0, 2, 2, 2, 0, 1, marks=OUTAGE), N),
    ("k8s-cronjob", {}, result(), D),
    ("k8s-cronjob", {}, result(duplicated=1), N),
    ("k8s-cronjob", {}, result(lost=1), N),
    ("workers-per-replica", {"replicas": 2, "workers": 2}, ticks(4, 4, 4), D),
    ("workers-per-replica", {"replicas": 2, "workers": 2}, ticks(2, 2, 2), N),
    ("workers-per-replica", {"replicas": 2, "workers": 2, "guard": "redis-lock"},
     ticks(1, 1, 1), D),
    ("workers-per-replica", {"replicas": 2, "workers": 2, "guard": "redis-lock"},
     ticks(1, 2, 1), N),
    ("eta-redelivery", {"countdown": 5.0, "visibility_timeout": 2.0}, tasks(3, 3, 3), D),
    ("eta-redelivery", {"countdown": 5.0, "visibility_timeout": 2.0}, tasks(1, 1, 1), N),
    ("eta-redelivery", {"countdown": 1.0, "visibility_timeout": 2.0}, tasks(1, 1), D),
    ("eta-redelivery", {"countdown": 5.0, "visibility_timeout": 9.0, "broker_apps": 2,
                        "other_visibility_timeout": 2.0}, tasks(3, 3), D),
    # short timeout, acks early: lost = the running task only; the reserved come back
    ("prefetch-loss", {"acks": "early"}, result(lost=1, marks=(mark(),)), D),
    ("prefetch-loss", {"acks": "early"}, result(lost=2, marks=(mark(),)), N),
    ("prefetch-loss", {"acks": "early"}, result(lost=4, marks=(mark(),)), N),
    ("prefetch-loss", {"acks": "early"}, result(marks=(mark(),)), N),
    ("prefetch-loss", {"acks": "early"}, result(lost=1, marks=(mark(inflight=0),)), U),
    ("prefetch-loss", {"acks": "late"}, result(recovered=1, marks=(mark(),)), D),
    ("prefetch-loss", {"acks": "late"}, result(lost=1, marks=(mark(),)), N),
    # long timeout: lost = running + reserved (1 + 4*1 - 1 = 4), one short allowed
    ("prefetch-loss", {"acks": "early", "visibility_timeout": 3600.0},
     result(lost=4, marks=(mark(),)), D),
    ("prefetch-loss", {"acks": "late", "visibility_timeout": 3600.0},
     result(lost=3, marks=(mark(),)), D),
    ("prefetch-loss", {"acks": "early", "visibility_timeout": 3600.0},
     result(lost=2, marks=(mark(),)), N),
    ("prefetch-loss", {"acks": "early", "visibility_timeout": 3600.0},
     result(lost=5, marks=(mark(),)), N),
    ("pool-child-kill", {"target": "child", "acks": "late"}, result(lost=1), D),
    ("pool-child-kill", {"target": "child", "acks": "late"}, result(recovered=1), N),
    ("pool-child-kill", {"target": "child", "acks": "late", "reject_on_worker_lost": True},
     result(recovered=1), D),
    ("pool-child-kill", {"target": "child", "acks": "late", "reject_on_worker_lost": True},
     result(lost=1), N),
    # cut off 2..6 s: the ticks at 2..6 run on both replicas
    ("partition", {"mechanism": "scheduler-lock"}, ticks(1, 1, 2, 2, 2, 2, 2, 1, marks=CUT), D),
    ("partition", {"mechanism": "scheduler-lock"}, ticks(1, 1, 2, 2, 2, 2, 1, 1, marks=CUT), D),
    ("partition", {"mechanism": "scheduler-lock"}, ticks(1, 1, 1, 2, 2, 2, 1, 1, marks=CUT), N),
    ("partition", {"mechanism": "scheduler-lock"}, ticks(1, 1, 1, 1, 1, 1, 1, marks=CUT), N),
    ("partition", {"mechanism": "scheduler-lock"}, result(duplicated=5), U),
    ("partition", {"mechanism": "redbeat"}, result(lost=3, marks=CUT), D),
    ("partition", {"mechanism": "redbeat"}, result(duplicated=1, lost=3, marks=CUT), N),
    ("partition", {"mechanism": "worker"}, result(duplicated=1, marks=CUT), D),
    ("partition", {"mechanism": "worker"}, result(duplicated=9, marks=CUT), D),
    ("partition", {"mechanism": "worker"}, result(duplicated=10, marks=CUT), N),
    ("partition", {"mechanism": "worker"}, result(marks=CUT), N),
    ("clock-skew", {"mechanism": "scheduler-lock", "skew": "api-1=2", "lock_ttl": 1.0},
     result(duplicated=3), D),
    ("clock-skew", {"mechanism": "scheduler-lock", "skew": "api-1=2", "lock_ttl": 1.0},
     result(), N),
    ("clock-skew", {"mechanism": "scheduler-lock", "skew": "api-1=2", "lock_ttl": 30.0},
     result(), D),
    ("clock-skew", {"mechanism": "scheduler-lock", "skew": "api-1=2", "lock_ttl": 30.0},
     result(duplicated=1), N),
    # planned = rate x duration; an eviction policy loses or refuses all but those run
    ("broker-eviction", {"policy": "allkeys-lru", "rate": 1.0, "duration": 3.0},
     tasks(1, 0, 0), D),
    ("broker-eviction", {"policy": "allkeys-lru", "rate": 60.0, "duration": 3.0},
     tasks(1), D),  # the routing key evicted: 179 of 180 submissions refused
    ("broker-eviction", {"policy": "allkeys-lru", "rate": 1.0, "duration": 3.0},
     tasks(1, 1, 1), N),
    ("broker-eviction", {"policy": "noeviction", "rate": 1.0, "duration": 2.0},
     units(("task-0", 1, 1, True, False), ("task-1", 0, 0, True, False),
           ("tick@0.000", 1, 1, False, True), ("tick@1.000", 2, 2, False, True)), D),
    ("broker-eviction", {"policy": "noeviction", "rate": 1.0, "duration": 2.0},
     units(("task-0", 1, 1, True, False), ("task-1", 0, 0, True, False),
           ("tick@0.000", 1, 1, False, True), ("tick@1.000", 1, 1, False, True)), D),
    ("broker-eviction", {"policy": "noeviction", "rate": 1.0, "duration": 2.0},
     tasks(1, 1), N),
    ("broker-eviction", {"policy": "noeviction", "rate": 60.0, "duration": 3.0},
     tasks(1), D),  # the first writes past the limit: 179 of 180 submissions refused
    ("disconnect-cancel", {}, tasks(1, 1, 1), D),
    ("disconnect-cancel", {}, tasks(1, 0, 1), N),
    # the Kubernetes-native ones: more cases in tests/unit/test_kubernetes_experiments.py
    ("singleton-scheduler", {"controller": "deployment"},
     ticks(1, 2, 2, 1, marks=(mark("restart", instance="api-1"),)), D),
    ("singleton-scheduler", {"controller": "deployment"},
     ticks(1, 1, 1, 1, marks=(mark("restart", instance="api-1"),)), N),
    ("singleton-scheduler", {"controller": "deployment"}, ticks(1, 2, 2, 1), U),
    ("drain", {"acks": "early"}, result(lost=2, marks=(mark("evict", inflight=2),
                                                        mark("evict", inflight=2, t=8.0))), D),
    ("drain", {"acks": "early"}, result(marks=(mark("evict", inflight=2),)), N),
    ("drain", {"acks": "early"}, result(lost=2, marks=(mark("evict", inflight=0),)), U),
    ("scale-in", {"deletion_cost": True}, result(marks=(mark("scale-down"),)), D),
    ("scale-in", {"deletion_cost": True}, result(recovered=1, marks=(mark("scale-down"),)), N),
    ("liveness-restart", {"liveness": "lenient"}, ticks(1, 1, 0), D),
    ("liveness-restart", {"liveness": "strict"}, ticks(1, 1, 0), N),
    ("oom-kill", {}, units(("task-0", 1, 1, True, False), ("task-1", 1, 0, True, False)), D),
    ("oom-kill", {}, units(("task-0", 1, 1, True, False), ("task-1", 1, 1, True, False)), N),
]


@pytest.mark.parametrize(("name", "given", "measured", "outcome"), CASES)
def test_judge(name: str, given: dict[str, Any], measured: Result, outcome: str) -> None:
    spec = catalog.get(name)
    verdict = spec.experiment(spec.values(given)).verdict(measured, {"intact": True,
                                                                      "reporting": 1,
                                                                      "found_in_ledger": 1,
                                                                      "reported_events": 1})
    assert verdict.outcome == outcome, verdict.sentence
    assert verdict.sentence


def test_every_experiment_has_judge_cases_demonstrated_and_not() -> None:
    for name in catalog.CATALOG:
        outcomes = {o for n, _, _, o in CASES if n == name}
        assert {D, N} <= outcomes, name


def test_a_judge_says_the_theorys_number_and_its_tolerance() -> None:
    spec = catalog.get("scheduler-duplicates")
    v = spec.experiment(spec.values(UNGUARDED3)).verdict(result(duplicated=7, extra=14), {})
    assert "duplicated 7 OUTSIDE (theory 10, allowed 8..10: a tick at each end" in v.sentence
    assert "lost 0 (theory 0)" in v.sentence


def ev(t: float, kind: str, work_id: str, instance: str = "worker-1", mechanism: str = "celery",
       exec_id: str = "", **detail: Any) -> Event:
    return Event(t, kind, work_id, mechanism, instance, 1, 1, exec_id, detail, "r")


def test_celery_kill_measures_kill_to_redelivery() -> None:
    history = [ev(1.0, "start", "task-1", exec_id="a"), ev(2.0, "fault", "f1", mechanism="kill"),
               ev(5.5, "start", "task-1", "worker-2", exec_id="b"),
               ev(6.0, "finish", "task-1", "worker-2", exec_id="b")]
    spec = catalog.get("celery-kill")
    figures = spec.measure(spec.defaults(), history, check(history))  # type: ignore[misc]
    assert figures["kill_to_redelivery_seconds"] == [3.5]
    assert figures["kill_to_redelivery_median"] == 3.5


def test_leader_failover_measures_the_leaderless_gap() -> None:
    history = [ev(t, "finish", scheduled_work_id("tick", t), "api-1", "apscheduler", f"x{t}")
               for t in (1.0, 1.5, 2.0)]
    history += [ev(5.0, "finish", scheduled_work_id("tick", 5.0), "api-2", "apscheduler", "y")]
    spec = catalog.get("leader-failover")
    figures = spec.measure(spec.defaults(), history, check(history))  # type: ignore[misc]
    assert figures["leaderless_seconds"] == 3.0 and figures["leaders"] == ["api-1", "api-2"]


def test_loop_starvation_measures_lateness() -> None:
    tick = scheduled_work_id("tick", 10.0)
    history = [ev(11.2, "start", tick, "api-1", "apscheduler", "a"),
               ev(11.3, "finish", tick, "api-1", "apscheduler", "a")]
    r = check(history, (9.9, 10.4), (Schedule("tick", 0.5),))
    spec = catalog.get("loop-starvation")
    figures = spec.measure(spec.defaults(), history, r)  # type: ignore[misc]
    assert figures["max_lateness_seconds"] == pytest.approx(1.2)
    assert figures["late_ticks"] == r.late == 1


def test_broker_outage_measures_what_happened_while_the_broker_was_down() -> None:
    t1, t2 = scheduled_work_id("tick", 3.0), scheduled_work_id("tick", 9.0)
    history = [ev(2.0, "fault", "f1", "broker", "broker-outage"),
               ev(3.0, "start", t1, "api-1", "apscheduler", "a"),
               ev(3.1, "finish", t1, "api-1", "apscheduler", "a"),
               ev(3.0, "start", t1, "api-2", "apscheduler", "b"),
               ev(3.1, "finish", t1, "api-2", "apscheduler", "b"),
               ev(5.0, "fault", "f2", "broker", "broker-back"),
               ev(9.0, "start", t2, "api-1", "apscheduler", "c"),
               ev(9.1, "finish", t2, "api-1", "apscheduler", "c"),
               ev(4.0, "intent", "task-1"), ev(4.5, "intent", "task-2"),
               ev(4.6, "start", "task-2", exec_id="d"), ev(4.7, "finish", "task-2", exec_id="d")]
    spec = catalog.get("broker-outage")
    figures = spec.measure(spec.defaults(), history, check(history))  # type: ignore[misc]
    assert figures == {"ticks_duplicated_during_outage": 1, "ticks_during_outage": 1,
                       "tasks_lost": 1, "tasks_acknowledged": 2}


def test_beat_duplicates_measures_missed_ticks() -> None:
    spec = catalog.get("beat-duplicates")
    figures = spec.measure(spec.defaults(), [], result(lost=3))  # type: ignore[misc]
    assert figures == {"missed_ticks": 3}


def test_a_run_whose_fault_did_not_happen_is_untested_whatever_its_counts() -> None:
    spec = catalog.get("celery-kill")
    experiment = spec.experiment(spec.values({"acks": "late", "idempotent": True,
                                              "kill_at": "after-effect", "kills": 1}))
    error = ("kill worker at 3s after an effect: no worker instance to kill had a finish "
             "event in time")
    # 0 lost, 0 duplicated is what the claim wants: without the kill it says nothing
    v = experiment.verdict(result(), {}, [error])
    assert v.outcome == "untested" and not v.demonstrated
    assert error in v.sentence and v.words == "untested"
    struck = result(refused=1, marks=(mark(inflight=0),))
    assert experiment.verdict(struck, {}, []).outcome == "demonstrated"
