"""scheduler-duplicates with --scheduler and --fault, and k8s-cronjob: built, judged, refused."""

from __future__ import annotations

from typing import Any

import pytest

from experiments import catalog
from experiments.checker import VERDICTS, Result
from experiments.model import BadInput, Verdict

SD = catalog.get("scheduler-duplicates")


def result(expected: int = 10, extra: int = 0, **counts: int) -> Result:
    full = dict.fromkeys(VERDICTS, 0) | counts
    full["ok"] = max(0, expected - sum(counts.values()))
    return Result(units={}, counts=full, expected=expected, executions=expected + extra,
                  extra_executions=extra, refused=0, faults=0, ignored=0, late=0)


def build(**given: Any) -> Any:
    return SD.experiment(SD.values(given))


@pytest.mark.parametrize(("given", "measured", "valid"), [
    ({"scheduler": "apscheduler4"}, result(), True),
    ({"scheduler": "apscheduler4"}, result(duplicated=1, extra=1), False),
    ({"scheduler": "apscheduler4", "fault": "kill"}, result(lost=6), True),  # claim: no dup
    ({"scheduler": "arq", "fault": "pause"}, result(duplicated=4, extra=4), False),
    ({"scheduler": "arq"}, result(), True),
])
def test_the_claim_judged_is_each_tick_once(given: dict[str, Any], measured: Result,
                                            valid: bool) -> None:
    verdict = SD.judge(SD.values(given), measured)
    assert isinstance(verdict, Verdict) and verdict.demonstrated is valid, verdict.sentence
    assert (given["scheduler"] in verdict.sentence
            or "APScheduler 4.0.0a6 (pre-release)" in verdict.sentence)


@pytest.mark.parametrize(("given", "message"), [
    ({"scheduler": "apscheduler4", "guard": "redis-lock"}, "applies to --scheduler apscheduler3"),
    ({"scheduler": "arq", "guard": "leader"}, "applies to --scheduler apscheduler3"),
    ({"scheduler": "arq", "align": "per-instance"}, "--align per-instance applies"),
    ({"fencing": True}, "--fencing needs --guard leader"),
    ({"scheduler": "arq", "interval": 0.5}, "whole seconds dividing 60"),
    ({"scheduler": "arq", "interval": 7}, "whole seconds dividing 60"),
    ({"scheduler": "arq", "fault": "datastore-outage"}, "arq has no data store"),
    ({"fault": "kill", "fault_at": 12.0, "duration": 10.0}, "--fault-at must fall inside"),
])
def test_bad_combinations_are_refused_in_one_line(given: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInput, match=message) as caught:
        build(**given)
    assert "\n" not in str(caught.value)


def test_each_scheduler_runs_as_its_own_component_with_its_settings() -> None:
    aps4 = build(scheduler="apscheduler4", lease=2.0)
    assert aps4.topology.replicas == {"api": 3}
    assert aps4.topology.settings["scheduler_library"] == "apscheduler4"
    assert aps4.topology.settings["apscheduler4_lease"] == 2.0
    arq = build(scheduler="arq", replicas=2)
    assert arq.topology.replicas == {"arq": 2} and arq.late_after == 1.0
    leader = build(guard="leader", fencing=True, lease=4.0)
    assert leader.topology.settings["fencing"] is True
    assert leader.topology.settings["lease_seconds"] == 4.0
    default = build()
    assert "scheduler_library" not in default.topology.settings  # APScheduler 3, as before
    assert default.faults == ()


@pytest.mark.parametrize(("fault", "action", "on"), [
    ("kill", "kill", "start"), ("pause", "pause", "start"), ("partition", "partition", "start"),
    ("clock-skew", "clock-skew", "start"), ("rolling-restart", "rolling-restart", ""),
    ("broker-outage", "broker-outage", ""),
])
def test_a_fault_strikes_the_instance_running_a_tick(fault: str, action: str, on: str) -> None:
    e = build(scheduler="arq", fault=fault, fault_at=2.0, fault_for=4.0, skew=3.0)
    [step] = e.faults
    assert (step.action, step.component, step.at, step.on) == (action, "arq", 2.0, on)
    if on:
        assert step.mechanism == "arq"  # only the tick's own start triggers it
    if fault in ("pause", "partition", "broker-outage"):
        assert step.duration == 4.0 and e.drain >= 4.0  # the run waits for the fault's end
    if fault == "clock-skew":
        assert step.offset == 3.0 and e.topology.settings["skewable"] is True
    if fault == "partition":
        assert e.topology.settings["partitionable"] is True


def test_the_data_store_outage_is_apscheduler4s() -> None:
    [step] = build(scheduler="apscheduler4", fault="datastore-outage", fault_for=2.0).faults
    assert (step.action, step.duration) == ("datastore-outage", 2.0)


def test_k8s_cronjob_judges_once_per_execution_time_and_stays_out_of_the_local_suite() -> None:
    spec = catalog.get("k8s-cronjob")
    values = spec.values({})
    experiment = spec.experiment(values)
    assert experiment.verdict(result(expected=5), {}).demonstrated
    assert not experiment.verdict(result(expected=5, duplicated=1, extra=1), {}).demonstrated
    assert not experiment.verdict(result(expected=5, lost=1), {}).demonstrated
    assert spec.suite_variants(quick=True) == () and spec.suite_variants(quick=False) == ()
    assert spec.experiment(values).topology.replicas == {"cronjob": 1}
