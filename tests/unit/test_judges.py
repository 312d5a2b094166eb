"""Every experiment's judge and measure, on hand-written results and histories."""

from __future__ import annotations

from typing import Any

import pytest

from experiments import catalog
from experiments.checker import VERDICTS, Result, Schedule, Unit, check
from services.history import Event, scheduled_work_id


def result(expected: int = 10, *, refused: int = 0, late: int = 0, extra: int = 0,
           **counts: int) -> Result:
    full = dict.fromkeys(VERDICTS, 0) | counts
    full["ok"] = full["ok"] or max(0, expected - sum(counts.values()))
    return Result(units={}, counts=full, expected=expected, executions=expected + extra,
                  extra_executions=extra, refused=refused, faults=0, ignored=0, late=late)


def units(*specs: tuple[str, int, int, bool, bool]) -> Result:
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
                  refused=0, faults=0, ignored=0, late=0)


def ticks(*finishes: int) -> Result:
    return units(*((f"tick@{i}.000", n, n, False, True) for i, n in enumerate(finishes)))


def tasks(*starts: int) -> Result:
    return units(*((f"task-{i}", n, min(n, 1) if n < 2 else n, True, False)
                   for i, n in enumerate(starts)))


CASES: list[tuple[str, dict[str, Any], Result, bool]] = [
    ("scheduler-duplicates", {"guard": "none", "replicas": 3}, result(duplicated=5, extra=10),
     True),
    ("scheduler-duplicates", {"guard": "none", "replicas": 3}, result(), False),
    ("scheduler-duplicates", {"guard": "none", "replicas": 1}, result(), True),
    ("scheduler-duplicates", {"guard": "none", "replicas": 1, "scale_to": 3, "scale_at": 2.0},
     result(duplicated=2), True),
    ("scheduler-duplicates", {"guard": "redis-lock"}, result(lost=1), True),
    ("scheduler-duplicates", {"guard": "redis-lock"}, result(lost=2), False),
    ("scheduler-duplicates", {"guard": "leader"}, result(duplicated=1), False),
    ("background-loss", {"mechanism": "background", "kills": 2}, result(lost=3), True),
    ("background-loss", {"mechanism": "background", "kills": 2}, result(), False),
    ("background-loss", {"mechanism": "background", "kills": 0}, result(), True),
    ("background-loss", {"mechanism": "celery"}, result(), True),
    ("background-loss", {"mechanism": "celery"}, result(lost=1), False),
    ("celery-kill", {"acks": "early"}, result(lost=1), True),
    ("celery-kill", {"acks": "early"}, result(), False),
    ("celery-kill", {"acks": "early", "kills": 0}, result(), True),
    ("celery-kill", {"acks": "late"}, result(recovered=2), True),
    ("celery-kill", {"acks": "late"}, result(recovered=1, lost=1), False),
    ("celery-kill", {"acks": "late"}, result(), False),
    ("celery-kill", {"acks": "late", "kill_at": "after-effect"}, result(duplicated=1), True),
    ("celery-kill", {"acks": "late", "kill_at": "after-effect"}, result(recovered=1), False),
    ("celery-kill", {"acks": "late", "kill_at": "after-effect", "idempotent": True},
     result(recovered=1), True),
    ("celery-kill", {"acks": "late", "idempotent": True}, result(duplicated=1), False),
    ("celery-kill", {"acks": "late", "kills": 0, "task_seconds": 3.0,
                     "visibility_timeout": 1.5}, result(duplicated=2), True),
    ("beat-duplicates", {"guard": "none", "beat_replicas": 2}, result(duplicated=4), True),
    ("beat-duplicates", {"guard": "none", "beat_replicas": 2}, result(), False),
    ("beat-duplicates", {"guard": "redbeat"}, result(lost=1), True),
    ("beat-duplicates", {"guard": "redbeat"}, result(lost=2), False),
    ("beat-duplicates", {"guard": "redbeat", "kill_holder": True, "lock_timeout": 3.0,
                         "interval": 1.0}, result(lost=6), True),
    ("beat-duplicates", {"guard": "redbeat", "kill_holder": True, "lock_timeout": 3.0,
                         "interval": 1.0}, result(lost=7), False),
    ("loop-starvation", {"block_seconds": 1.5}, result(late=2), True),
    ("loop-starvation", {"block_seconds": 1.5}, result(lost=1), True),
    ("loop-starvation", {"block_seconds": 1.5}, result(), False),
    ("loop-starvation", {"block_seconds": 0.0}, result(), True),
    ("loop-starvation", {"block_seconds": 0.0}, result(late=1), False),
    ("restart-survival", {"mechanism": "background"}, result(lost=4), True),
    ("restart-survival", {"mechanism": "background"}, result(), False),
    ("restart-survival", {"mechanism": "celery"}, result(), True),
    ("restart-survival", {"mechanism": "celery"}, result(lost=1), False),
    ("leader-failover", {"fencing": False}, result(duplicated=2), True),
    ("leader-failover", {"fencing": False}, result(), False),
    ("leader-failover", {"fencing": True}, result(refused=2), True),
    ("leader-failover", {"fencing": True}, result(duplicated=1), False),
    ("broker-outage", {}, result(duplicated=3, lost=1), True),
    ("k8s-cronjob", {}, result(), True),
    ("k8s-cronjob", {}, result(duplicated=1), False),
    ("k8s-cronjob", {}, result(lost=1), False),
    ("workers-per-replica", {"replicas": 2, "workers": 2}, ticks(4, 4, 4), True),
    ("workers-per-replica", {"replicas": 2, "workers": 2}, ticks(2, 2, 2), False),
    ("workers-per-replica", {"replicas": 2, "workers": 2, "guard": "redis-lock"},
     ticks(1, 1, 1), True),
    ("workers-per-replica", {"replicas": 2, "workers": 2, "guard": "redis-lock"},
     ticks(1, 2, 1), False),
    ("eta-redelivery", {"countdown": 5.0, "visibility_timeout": 2.0}, tasks(3, 3, 3), True),
    ("eta-redelivery", {"countdown": 5.0, "visibility_timeout": 2.0}, tasks(1, 1, 1), False),
    ("eta-redelivery", {"countdown": 1.0, "visibility_timeout": 2.0}, tasks(1, 1), True),
    ("eta-redelivery", {"countdown": 5.0, "visibility_timeout": 9.0, "broker_apps": 2,
                        "other_visibility_timeout": 2.0}, tasks(3, 3), True),
    ("prefetch-loss", {"acks": "early"}, result(lost=1), True),
    ("prefetch-loss", {"acks": "early"}, result(), False),
    ("prefetch-loss", {"acks": "late"}, result(recovered=4), True),
    ("prefetch-loss", {"acks": "late"}, result(lost=1), False),
    ("pool-child-kill", {"target": "child", "acks": "late"}, result(lost=1), True),
    ("pool-child-kill", {"target": "child", "acks": "late"}, result(recovered=1), False),
    ("pool-child-kill", {"target": "child", "acks": "late", "reject_on_worker_lost": True},
     result(recovered=1), True),
    ("pool-child-kill", {"target": "child", "acks": "late", "reject_on_worker_lost": True},
     result(lost=1), False),
    ("partition", {"mechanism": "scheduler-lock"}, result(duplicated=4), True),
    ("partition", {"mechanism": "scheduler-lock"}, result(), False),
    ("partition", {"mechanism": "redbeat"}, result(lost=3), True),
    ("partition", {"mechanism": "redbeat"}, result(duplicated=1, lost=3), False),
    ("clock-skew", {"mechanism": "scheduler-lock", "skew": "api-1=2", "lock_ttl": 1.0},
     result(duplicated=3), True),
    ("clock-skew", {"mechanism": "scheduler-lock", "skew": "api-1=2", "lock_ttl": 1.0},
     result(), False),
    ("clock-skew", {"mechanism": "scheduler-lock", "skew": "api-1=2", "lock_ttl": 30.0},
     result(), True),
    ("clock-skew", {"mechanism": "scheduler-lock", "skew": "api-1=2", "lock_ttl": 30.0},
     result(duplicated=1), False),
    ("broker-eviction", {"policy": "allkeys-lru"}, tasks(1, 0, 0), True),
    ("broker-eviction", {"policy": "allkeys-lru"}, tasks(1, 1, 1), False),
    ("broker-eviction", {"policy": "noeviction"}, tasks(0, 1), True),
    ("disconnect-cancel", {}, tasks(1, 1, 1), True),
    ("disconnect-cancel", {}, tasks(1, 0, 1), False),
]


@pytest.mark.parametrize(("name", "given", "measured", "valid"), CASES)
def test_judge(name: str, given: dict[str, Any], measured: Result, valid: bool) -> None:
    spec = catalog.get(name)
    held, sentence = spec.judge(spec.values(given), measured)
    assert held is valid, sentence
    assert sentence


def test_every_experiment_has_judge_cases_that_hold_and_that_do_not() -> None:
    for name in catalog.CATALOG:
        outcomes = {valid for n, _, _, valid in CASES if n == name}
        # broker-outage states no expectation of its own: the ledger's integrity decides
        assert outcomes == ({True} if name == "broker-outage" else {True, False}), name


def test_an_experiment_that_needs_an_intact_ledger_fails_without_one() -> None:
    spec = catalog.get("broker-outage")
    experiment = spec.experiment(spec.defaults())
    intact = {"intact": True, "reporting": 3, "found_in_ledger": 9, "reported_events": 9}
    assert experiment.verdict(result(), intact)[0]
    assert not experiment.verdict(result(), {**intact, "intact": False})[0]
    assert not experiment.verdict(result(), {**intact, "reporting": 0})[0]


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
