"""The nemesis against the in-memory platform: routing, marks, mid-job picks, seeding."""

from __future__ import annotations

import random
import threading
import time

import pytest

from chaos.faults import ENDING, FAULTS, MARKS, FaultStep
from chaos.nemesis import Nemesis
from chaos.platform import Topology
from chaos.stub import MemoryLedger, StubPlatform
from experiments.checker import check
from experiments.runner import settled
from services.history import Kind


def lab(**replicas: int) -> tuple[StubPlatform, MemoryLedger]:
    platform = StubPlatform()
    platform.deploy(Topology(replicas=replicas))
    return platform, MemoryLedger()


def run(platform: StubPlatform, ledger: MemoryLedger, steps: list[FaultStep], seed: int = 1,
        timeout: float = 5.0) -> Nemesis:
    nemesis = Nemesis(platform, ledger, ledger.run, steps, random.Random(seed), time.monotonic(),
                      mid_job_timeout=2.0)
    nemesis.start()
    deadline = time.monotonic() + timeout
    while not nemesis.done and time.monotonic() < deadline:
        time.sleep(0.005)
    nemesis.stop()
    assert nemesis.done
    return nemesis


def marks(ledger: MemoryLedger) -> list[tuple[str, str]]:
    return [(e.mechanism, e.instance) for e in ledger.events if e.kind == Kind.FAULT]


def test_every_fault_is_one_entry_whose_marks_are_declared_once() -> None:
    for name, fault in FAULTS.items():
        assert fault.marks, name
        assert FaultStep(name).describe()
    assert set(MARKS) >= {"kill", "terminate", "pause", "resume", "scale-down", "restart"}
    assert {"kill", "terminate", "restart-in-place", "scale-down", "restart"} <= ENDING
    assert not ENDING & {"pause", "resume", "scale-up", "broker-outage", "broker-back"}
    with pytest.raises(ValueError, match="unknown fault 'explode'"):
        FaultStep("explode")


def test_a_timed_kill_strikes_a_seeded_choice_and_is_recorded() -> None:
    chosen = []
    for _ in range(2):
        platform, ledger = lab(api=4)
        run(platform, ledger, [FaultStep("kill", "api")], seed=7)
        chosen.append(platform.calls[-1])
    assert chosen[0] == chosen[1] and chosen[0][0] == "kill"
    assert marks(ledger) == [("kill", chosen[0][1])]
    assert len(platform.instances("api")) == 4 and chosen[0][1] not in {
        i.name for i in platform.instances("api")}


def test_a_mid_job_kill_strikes_the_instance_that_started_work() -> None:
    platform, ledger = lab(worker=3)
    target = platform.instances("worker")[2].name
    threading.Timer(0.1, ledger.start, args=("task-1", target)).start()
    nemesis = run(platform, ledger, [FaultStep("kill", "worker", on="start")])
    assert ("kill", target) in platform.calls
    assert nemesis.records[0].inflight == 1 and nemesis.records[0].mid_job


def test_a_between_jobs_pause_skips_a_finish_whose_next_job_already_started() -> None:
    platform, ledger = lab(api=2)
    first, second = (i.name for i in platform.instances("api"))

    def ticks() -> None:
        # ``first`` finishes a tick and starts the next before the nemesis looks:
        # not between jobs. ``second`` then finishes with nothing open: between.
        a = ledger.start("tick@1", first, "apscheduler")
        ledger.record(Kind.FINISH, "tick@1", "apscheduler", first, exec_id=a)
        ledger.start("tick@2", first, "apscheduler")
        b = ledger.start("tick@2", second, "apscheduler")
        ledger.record(Kind.FINISH, "tick@2", "apscheduler", second, exec_id=b)

    threading.Timer(0.1, ticks).start()
    nemesis = run(platform, ledger, [FaultStep("pause", "api", on="between",
                                               mechanism="apscheduler", duration=0.05)])
    assert [c for c in platform.calls if c[0] == "pause"] == [("pause", second)]
    assert nemesis.records[0].inflight == 0 and not nemesis.errors


def test_a_pause_stopped_early_still_resumes_and_records_it() -> None:
    platform, ledger = lab(api=1)
    nemesis = Nemesis(platform, ledger, ledger.run, [FaultStep("pause", "api", duration=60)],
                      random.Random(1), time.monotonic())
    nemesis.start()
    while not platform.paused:
        time.sleep(0.005)
    nemesis.stop()
    assert not platform.paused
    assert [m for m, _ in marks(ledger)] == ["pause", "resume"]


def test_a_scale_down_marks_each_instance_it_removed_and_their_work_is_interrupted() -> None:
    platform, ledger = lab(api=3)
    names = [i.name for i in platform.instances("api")]
    ledger.start("job-1", names[2], "background")
    ledger.record(Kind.INTENT, "job-1", "background", "harness")
    run(platform, ledger, [FaultStep("scale", "api", replicas=1)])
    assert sorted(marks(ledger)) == [("scale-down", names[1]), ("scale-down", names[2])]
    assert check(ledger.events).units["job-1"].verdict == "lost"  # not "in doubt"


def test_a_rolling_restart_marks_every_instance_and_replaces_them_all() -> None:
    platform, ledger = lab(api=2)
    before = {i.name for i in platform.instances("api")}
    run(platform, ledger, [FaultStep("rolling-restart", "api")])
    assert {t for _, t in marks(ledger)} == before
    assert not before & {i.name for i in platform.instances("api")}


def test_a_fault_that_finds_no_target_is_an_error_not_a_crash() -> None:
    platform, ledger = lab(worker=1)
    nemesis = run(platform, ledger, [FaultStep("kill", "worker", on="start"),
                                     FaultStep("broker-outage", "broker", at=0.01)])
    assert nemesis.errors and "had a start event in time" in nemesis.errors[0]
    assert [m for m, _ in marks(ledger)] == ["broker-outage", "broker-back"]


def test_the_drain_waits_for_acknowledged_work_to_start_or_finish() -> None:
    ledger = MemoryLedger()
    ledger.record(Kind.INTENT, "task-1", "celery", "harness")
    assert not settled(ledger.events, redelivers=False)
    ledger.start("task-1", "worker-1")
    assert not settled(ledger.events, redelivers=False)  # running: in doubt
    ledger.record(Kind.FAULT, "f1", "kill", "worker-1")
    assert settled(ledger.events, redelivers=False)  # killed: it will not finish
    assert not settled(ledger.events, redelivers=True)  # it may be delivered again
    ledger.start("task-1", "worker-2")
    ledger.record(Kind.FINISH, "task-1", "celery", "worker-2", exec_id="worker-2:task-1")
    assert settled(ledger.events, redelivers=True)


def test_a_kill_after_an_effect_names_the_unit_and_the_drain_waits_for_its_redelivery() -> None:
    platform, ledger = lab(worker=2)
    target = platform.instances("worker")[1].name
    nemesis = Nemesis(platform, ledger, ledger.run,
                      [FaultStep("kill", "worker", on="finish", mechanism="celery")],
                      random.Random(1), time.monotonic(), mid_job_timeout=5.0)
    nemesis.start()
    # Effects, one after another, until one of them is struck (the nemesis looks only
    # at what happens after it started looking).
    for k in range(200):
        if nemesis.records:
            break
        work = f"task-{k}"
        ledger.record(Kind.INTENT, work, "celery", "harness")
        ledger.record(Kind.FINISH, work, "celery", target, exec_id=ledger.start(work, target))
        time.sleep(0.02)
    nemesis.stop()
    (record,) = nemesis.records
    struck = record.detail["after_effect_of"]
    assert struck.startswith("task-")
    events = [e for e in ledger.events if e.kind != Kind.INTENT or e.work_id == struck]
    events = [e for e in events if e.work_id in (struck, "fault-1")]
    # The effect is in the ledger, but the message was not acknowledged: with
    # redelivery the unit is not settled until it has started again.
    assert settled(events, redelivers=False)
    assert not settled(events, redelivers=True)
    again = ledger.start(struck, "worker-3")
    assert not settled([*events, ledger.events[-1]], redelivers=True)  # running: in doubt
    ledger.record(Kind.FINISH, struck, "celery", "worker-3", exec_id=again)
    assert settled([*events, *ledger.events[-2:]], redelivers=True)


def test_a_step_the_run_ended_before_is_an_error_not_silence() -> None:
    platform, ledger = lab(worker=1)
    nemesis = Nemesis(platform, ledger, ledger.run, [FaultStep("kill", "worker", at=60.0)],
                      random.Random(1), time.monotonic())
    nemesis.start()
    nemesis.stop()
    assert nemesis.records == []
    assert nemesis.errors == ["kill worker at 60s: not applied, the run ended first"]
