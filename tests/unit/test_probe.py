"""The probe's pure parts: what was due, the workload file, faults, slots, the verdicts per job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.checker import Schedule, check
from experiments.model import BadInput, Verdict
from experiments.probe import due, requests, spec
from services.history import Event
from services.probe import unit
from services.probe.scheduler_hooks import slot


def test_interval_jobs_are_due_per_period_and_cron_jobs_when_they_fired() -> None:
    announced = {
        "api-1": {"component": "api", "jobs": [
            {"job": "report", "trigger": "interval", "interval": 2.0},
            {"job": "nightly", "trigger": "cron", "says": "cron[hour='3']"}]},
        "api-2": {"component": "api", "jobs": [
            {"job": "report", "trigger": "interval", "interval": 5.0}]},  # the first one wins
        "worker-1": {"component": "worker"},
    }
    assert due.schedules(announced) == (Schedule("nightly", 1.0, aligned=False),
                                        Schedule("report", 2.0))


def test_an_interval_runs_slot_is_its_period_on_the_epoch_grid() -> None:
    # three replicas' phases inside one period name the same slot
    assert {slot({"interval": 2.0}, t) for t in (100.0, 100.4, 101.999)} == {100.0}
    assert slot({"interval": 2.0}, 102.0) == 102.0
    assert slot({"trigger": "cron"}, 7.25) == 7.25


def test_a_workload_file_is_kept_as_canonical_json(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("requests:\n  - {method: put, path: /orders/1, body: {a: 1}, rate: 3}\n")
    text = requests.read(path)
    assert json.loads(text) == {"requests": [{"method": "put", "path": "/orders/1",
                                              "body": {"a": 1}, "rate": 3}]}
    assert requests.publishes(text) == ()
    (load,) = requests.loads(text)
    assert (load.method, load.path, load.body, load.rate, load.own, load.acknowledged) == (
        "PUT", "/orders/1", {"a": 1}, 3.0, False, False)


@pytest.mark.parametrize(("content", "says"), [
    ("requests: [{path: orders}]", "path must be a string starting with '/'"),
    ("requests: [{path: /o, rate: 0}]", "rate must be a number"),
    ("requests: [{path: /o, rate: .inf}]", "rate must be a number"),
    ("requests: [{path: /o, method: FETCH}]", "method 'FETCH' is not one of"),
    ("requests: [{path: /o, verb: POST}]", "unknown key 'verb'"),
    ("orders: []", "expected a mapping of 'requests' and/or 'tasks'"),
    ("tasks: [{task: '', rate: 1}]", "task must be the task's registered name"),
    ("tasks: [{task: t, args: {a: 1}}]", "args must be a list and kwargs a mapping"),
    ("tasks: [{task: t, queue: q}]", "unknown key 'queue'"),
    ("requests: {path: /o}", "'requests' must be a list"),
    ("requests: [: :", "is not YAML or JSON"),
])
def test_a_bad_workload_file_says_what_is_wrong(tmp_path: Path, content: str, says: str) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(content)
    with pytest.raises(BadInput, match=says):
        requests.read(path)


def _values(**given: object) -> dict[str, object]:
    return spec.SPEC.values({"asgi": "shop.main:app", "celery": "shop.tasks:app", **given})


def test_faults_are_spread_over_the_run_and_mid_job_where_they_end_work() -> None:
    steps = spec.parse_faults("kill,rolling-restart,kill-child,terminate:api",
                              _values(duration=10.0))
    assert [(s.action, s.component, round(s.at, 3), s.on) for s in steps] == [
        ("kill", "worker", 2.0, "start"), ("rolling-restart", "api", 4.0, ""),
        ("kill-child", "worker", 6.0, "start"), ("terminate", "api", 8.0, "start")]


@pytest.mark.parametrize(("faults", "says"), [
    ("explode", "unknown fault"),
    ("partition", "unknown fault"),  # a lab must be started behind proxies for it
    ("kill:beat", "this probe runs no beat instance"),
    ("kill:db", "this probe runs no db instance"),
])
def test_a_fault_the_probe_cannot_strike_is_refused(faults: str, says: str) -> None:
    with pytest.raises(BadInput, match=says):
        spec.SPEC.experiment(_values(faults=faults))


def test_the_verdict_and_the_counts_per_job_task_and_function() -> None:
    def e(t: float, kind: str, work: str, mechanism: str, instance: str,
          **detail: object) -> Event:
        return Event(t, kind, work, mechanism, instance, exec_id=f"{instance}/{work}",
                     detail=dict(detail))

    history = [
        # a report period run by two replicas
        e(10.0, "start", "report@10.000", "apscheduler", "api-1"),
        e(10.1, "finish", "report@10.000", "apscheduler", "api-1"),
        e(10.2, "start", "report@10.000", "apscheduler", "api-2"),
        e(10.3, "finish", "report@10.000", "apscheduler", "api-2"),
        # an email task published, started, its worker killed
        e(11.0, "intent", "t1", "celery", "api-1", task="shop.send"),
        e(11.1, "start", "t1", "celery", "worker-1", task="shop.send"),
        e(11.2, "fault", "fault-1", "kill", "worker-1"),
        # a webhook acknowledged and done
        e(12.0, "intent", "req-1/notify", "backgroundtasks", "api-1"),
        e(12.1, "start", "req-1/notify", "backgroundtasks", "api-1"),
        e(12.2, "finish", "req-1/notify", "backgroundtasks", "api-1"),
    ]
    result = check(history, (10.0, 13.0), (Schedule("report", 2.0),))
    assert spec.judge({}, result) == Verdict.of(
        False, "nothing lost or run twice? 1 duplicated (1 extra executions), 2 lost, 0 in "
        "doubt of 4 units of work")
    assert spec.measure({}, history, result) == {"by_what": {
        "apscheduler report": {"duplicated": 1, "lost": 1},  # the 12.0 period never ran
        "backgroundtasks notify": {"ok": 1},
        "celery shop.send": {"lost": 1}}}


def test_unit_outside_a_probe_only_calls_the_function(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCALELAB_PROBE", raising=False)
    calls = []

    @unit(key="email:{order_id}")
    def send(order_id: int, copy: bool = False) -> int:
        calls.append((order_id, copy))
        return order_id * 2

    assert send(21) == 42 and calls == [(21, False)]


def test_a_workload_file_publishes_tasks_by_name(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("tasks:\n  - {task: shop.send, args: [7], kwargs: {copy: true}, rate: 2}\n")
    text = requests.read(path)
    assert requests.loads(text) == ()
    (load,) = requests.publishes(text)
    assert (load.task, load.args, dict(load.kwargs), load.rate) == (
        "shop.send", (7,), {"copy": True}, 2.0)
    with pytest.raises(BadInput, match="a workload of tasks needs Celery workers"):
        spec.SPEC.experiment(spec.SPEC.values({"asgi": "a:app", "workload": text}))
