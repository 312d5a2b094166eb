"""The task queues of the fixes matrix, each run for real on the local platform: their
workers (and schedulers) as processes, the tick on the lab's grid, faults that land."""

from __future__ import annotations

import collections
import time
from typing import Any

import pytest

from chaos.local import LocalPlatform
from chaos.platform import PlatformError, Topology
from chaos.processes import lab_processes
from services.ledger import Ledger, parse_scheduled
from tests.conftest import wait_for
from tests.integration.test_fix_schedulers import on_grid, platform, run_until

__all__ = ["platform"]  # the fixture, shared with the other schedulers' tests

pytestmark = pytest.mark.slow


def events_of(ledger: Ledger, run: str, kind: str) -> dict[str, list[Any]]:
    """work_id -> its events of this kind, for scheduled ticks."""
    found: dict[str, list[Any]] = collections.defaultdict(list)
    for e in ledger.history(run):
        if e.kind == kind and parse_scheduled(e.work_id):
            found[e.work_id].append(e)
    return found


def twice(ticks: dict[str, list[Any]]) -> dict[str, list[str]]:
    return {w: [e.instance for e in es] for w, es in ticks.items() if len(es) > 1}


def test_procrastinate_workers_defer_each_tick_once(platform: LocalPlatform,
                                                     lab_tag: str) -> None:
    platform.deploy(Topology(replicas={"procrastinate": 3}, settings={
        "scheduler_interval": 1.0, "tick_seconds": 0.05}))
    assert platform.datastore_server is not None and platform.datastore_server.group
    assert platform.datastore_server.group.pid in {pid for pid, _ in lab_processes(lab_tag)}
    ticks = run_until(platform, "procrastinate", 5, timeout=40)
    assert {e.mechanism for es in ticks.values() for e in es} == {"procrastinate"}
    assert all(on_grid(w, 1.0) for w in ticks), sorted(ticks)
    # every worker defers every tick; the unique key keeps one
    assert not twice(ticks), f"procrastinate ran ticks twice with no fault: {twice(ticks)}"
    assert len({e.instance for es in ticks.values() for e in es}) >= 1


def test_procrastinate_killed_job_stays_doing_without_the_stalled_retry(
        platform: LocalPlatform) -> None:
    platform.deploy(Topology(replicas={"procrastinate": 2}, settings={
        "scheduler_interval": 1.0, "tick_seconds": 3.0}))
    ledger = platform.ledger
    ledger.begin_run("stalled")
    try:
        started = lambda: events_of(ledger, "stalled", "start")  # noqa: E731
        wait_for(lambda: bool(started()), 30, "a tick started")
        [(work_id, [first])] = list(started().items())[:1]
        [victim] = [i for i in platform.instances("procrastinate") if i.name == first.instance]
        platform.kill(victim)
        # the others go on running later ticks; the killed one's never finishes
        wait_for(lambda: len(events_of(ledger, "stalled", "finish")) >= 2, 40,
                 "later ticks finished elsewhere")
        time.sleep(1.0)
    finally:
        ledger.end_run()
    assert work_id not in events_of(ledger, "stalled", "finish")


def test_a_task_queue_not_installed_is_one_line_and_nothing_starts(
        platform: LocalPlatform, lab_tag: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from chaos import task_queues

    missing = task_queues.TaskQueue("services.procrastinate_worker", "scalelab_no_such_lib",
                                    datastore=True)
    monkeypatch.setitem(task_queues.TASK_QUEUES, "procrastinate", missing)
    with pytest.raises(PlatformError) as caught:
        platform.deploy(Topology(replicas={"procrastinate": 2}))
    assert "scalelab_no_such_lib is not installed" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not lab_processes(lab_tag)


def test_rq_workers_with_their_schedulers_run_each_scheduled_tick_once(
        platform: LocalPlatform) -> None:
    platform.deploy(Topology(replicas={"rq": 3}, settings={"scheduler_interval": 1.0}))
    ticks = run_until(platform, "rq", 4, timeout=40)
    assert {e.mechanism for es in ticks.values() for e in es} == {"rq"}
    assert all(on_grid(w, 1.0) for w in ticks), sorted(ticks)
    # three schedulers, one lock: each scheduled job is moved to the queue once
    assert not twice(ticks), f"RQ ran scheduled ticks twice with no fault: {twice(ticks)}"


def test_every_huey_consumer_enqueues_the_periodic_tick(platform: LocalPlatform) -> None:
    platform.deploy(Topology(replicas={"huey": 2}, settings={"scheduler_interval": 1.0}))
    ticks = run_until(platform, "huey", 3, timeout=40)
    full = {w: es for w, es in ticks.items() if len(es) >= 2}
    assert full, f"no tick ran on both consumers: {ticks}"
    assert all(len(es) <= 2 for es in ticks.values())  # once per consumer, no more


def test_one_periodic_huey_consumer_enqueues_each_tick_once(platform: LocalPlatform) -> None:
    platform.deploy(Topology(replicas={"huey": 2, "huey-periodic": 1},
                             settings={"scheduler_interval": 1.0, "huey_no_periodic": True}))
    announced = platform.ledger.instances()
    assert [announced[i.name]["periodic"] for i in platform.instances("huey")] == [False] * 2
    assert announced[platform.instances("huey-periodic")[0].name]["periodic"] is True
    ticks = run_until(platform, "huey1", 4, timeout=40)
    assert all(on_grid(w, 1.0) for w in ticks), sorted(ticks)
    assert not twice(ticks), f"one periodic consumer, ticks twice: {twice(ticks)}"


def test_dramatiq_workers_run_each_delayed_tick_once(platform: LocalPlatform) -> None:
    platform.deploy(Topology(replicas={"dramatiq": 3}, settings={"scheduler_interval": 1.0}))
    ticks = run_until(platform, "dramatiq", 4, timeout=40)
    assert {e.mechanism for es in ticks.values() for e in es} == {"dramatiq"}
    assert all(on_grid(w, 1.0) for w in ticks), sorted(ticks)
    assert not twice(ticks), f"Dramatiq ran delayed ticks twice with no fault: {twice(ticks)}"
