"""The pure rules of the failure-mode experiments, on hand-written histories."""

from __future__ import annotations

from typing import Any

import pytest

from experiments.catalog import clock_skew, eta_redelivery, partition, prefetch_loss
from experiments.model import BadInput
from services.history import Event


def ev(t: float, kind: str, work_id: str, instance: str = "worker-1", attempt: int = 1,
       mechanism: str = "celery", **detail: Any) -> Event:
    return Event(t, kind, work_id, mechanism, instance, 1, attempt, f"{work_id}:{t}", detail)


def test_prefetch_classify_tells_the_running_task_from_the_reserved_ones() -> None:
    history = [
        ev(0.0, "intent", "task-0", "harness"), ev(0.1, "intent", "task-1", "harness"),
        ev(0.2, "intent", "task-2", "harness"), ev(0.3, "intent", "task-3", "harness"),
        ev(0.4, "start", "task-0"), ev(1.4, "finish", "task-0"),  # done before the kill
        ev(1.5, "start", "task-1"),  # running at the kill
        ev(2.0, "fault", "fault-1", mechanism="kill"),
        ev(7.0, "start", "task-2", "worker-2", attempt=2),  # reserved, back after timeout
        ev(8.0, "finish", "task-2", "worker-2", attempt=2),
        # task-3: reserved, never seen again
    ]
    found = prefetch_loss.classify(history)
    assert found == {"running_lost": ["task-1"], "running_redelivered": [],
                     "reserved_lost": ["task-3"], "reserved_redelivered": ["task-2"]}


def test_eta_copies_follow_the_shortest_visibility_timeout() -> None:
    base = {"countdown": 5.0, "visibility_timeout": 2.0, "broker_apps": 1,
            "other_visibility_timeout": 2.0}
    assert eta_redelivery.expected_copies(base) == 3
    assert eta_redelivery.expected_copies({**base, "countdown": 1.0}) == 1
    other = {**base, "visibility_timeout": 3600.0, "broker_apps": 2}
    assert eta_redelivery.effective_timeout(other) == 2.0
    assert eta_redelivery.expected_copies(other) == 3


@pytest.mark.parametrize("target, ok", [("", True), ("api", True), ("api-2", True),
                                        ("api-3", False), ("beat", False), ("x", False)])
def test_partition_targets_are_components_or_instances_of_the_run(target: str,
                                                                  ok: bool) -> None:
    p = {"mechanism": "scheduler-lock", "partition": target}
    if ok:
        assert partition.check_target(p) in ("api", "api-2")
    else:
        with pytest.raises(BadInput, match="not in this run"):
            partition.check_target(p)


@pytest.mark.parametrize("raw, says", [("api-1=3601", "±3600"), ("api-1=-4000", "±3600"),
                                       ("api-1=nan", "TARGET=SECONDS"), ("=2", "TARGET"),
                                       ("worker-1=2", "not in this run")])
def test_a_skew_out_of_bounds_or_of_the_run_is_refused(raw: str, says: str) -> None:
    with pytest.raises(BadInput, match=says):
        clock_skew.parse_skew({"mechanism": "scheduler-lock", "skew": raw})


def test_the_skewed_instance_is_seen_early_on_the_ledger_clock() -> None:
    history = [
        ev(0.0, "fault", "fault-1", "api-1", mechanism="skew"),
        ev(5.0, "start", "tick@7.000", "api-1", mechanism="apscheduler"),
        ev(6.0, "start", "tick@8.000", "api-1", mechanism="apscheduler"),
        ev(7.0, "start", "tick@7.000", "api-2", mechanism="apscheduler"),
    ]
    assert clock_skew.early_by(history, "api-1") == 2.0
    assert clock_skew.parse_skew({"mechanism": "redbeat", "skew": ""}) == ("beat-1", 2.0)
