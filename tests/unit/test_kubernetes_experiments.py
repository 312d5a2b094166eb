"""The Kubernetes-native experiments without a cluster: what they build, what their
judges expect from each mechanism, on hand-written results."""

from __future__ import annotations

from typing import Any

import pytest

from experiments import catalog
from experiments.model import BadInput
from tests.unit.test_judges import result, ticks

SINGLETON = catalog.get("singleton-scheduler")


def singleton(**given: Any) -> dict[str, Any]:
    return SINGLETON.values(given)


@pytest.mark.parametrize(("controller", "event", "fault"), [
    ("deployment", "rollout", "rolling-restart"),  # surges: the local platform's too
    ("lease", "rollout", "rolling-restart"),
    ("recreate", "rollout", "rollout"),  # only a cluster's controller does these
    ("statefulset", "rollout", "rollout"),
    ("deployment-surge0", "rollout", "rollout"),
    ("deployment", "delete", "pod-delete"),
    ("statefulset", "force-delete", "force-delete"),
])
def test_each_event_is_the_fault_its_controller_needs(controller: str, event: str,
                                                      fault: str) -> None:
    exp = SINGLETON.experiment(singleton(controller=controller, event=event))
    (step,) = exp.faults
    assert (step.action, step.component, step.at) == (fault, "api", 5.0)
    assert exp.topology.count("api") == 1
    settings = exp.topology.settings
    assert settings["api_controller"] == ("deployment" if controller == "lease" else controller)
    assert (settings.get("scheduler_guard"), settings.get("fencing")) == (
        ("leader", True) if controller == "lease" else (None, None))


def test_the_lease_fix_runs_with_fencing_and_its_lease() -> None:
    exp = SINGLETON.experiment(singleton(controller="lease", lease=4.0))
    assert exp.topology.settings["lease_seconds"] == 4.0


def test_a_prestop_longer_than_the_grace_is_refused() -> None:
    with pytest.raises(BadInput, match="--prestop 10 must be shorter than --grace 10"):
        SINGLETON.experiment(singleton(prestop=10.0, grace=10.0))
    exp = SINGLETON.experiment(singleton(prestop=5.0, grace=10.0))
    assert exp.topology.settings["prestop_seconds"] == 5.0 and exp.topology.grace == 10.0


@pytest.mark.parametrize(("controller", "event", "prestop", "shape"), [
    ("deployment", "rollout", 0.0, "overlap"),
    ("deployment", "delete", 0.0, "gap"),  # replaced at once, but starting takes longer
    ("deployment", "delete", 5.0, "overlap"),  # ... than a preStop sleep
    ("deployment-surge0", "rollout", 0.0, "gap"),
    ("deployment-surge0", "rollout", 5.0, "overlap"),  # kubernetes/kubernetes#99513
    ("recreate", "rollout", 5.0, "gap"),  # whatever the preStop: gone before the new one
    ("statefulset", "rollout", 5.0, "gap"),
    ("statefulset", "force-delete", 0.0, "either"),
])
def test_the_mechanism_says_overlap_or_gap(controller: str, event: str, prestop: float,
                                           shape: str) -> None:
    from experiments.catalog import singleton_scheduler as s

    p = singleton(controller=controller, event=event, prestop=prestop)
    assert s.shape(p) == shape
    want = s.bounds(p)
    if shape == "overlap":
        assert want["lost"] == (0, 0) and want["duplicated"][0] == 1
    elif shape == "gap":
        assert want["duplicated"] == (0, 0) and want["lost"][0] == 1
    else:  # two at once for at most kubelet's force grace (and the shutdown)
        assert want == {"duplicated": (0, 7), "lost": (0, 60)}


def test_judge_an_overlap() -> None:
    p = singleton(controller="deployment", event="rollout")  # interval 0.5
    held, said = SINGLETON.judge(p, result(40, duplicated=3))
    assert held, said
    assert said == ("deployment, rollout: an overlap: 3 duplicated (expected 1-8), "
                    "0 lost (expected 0)")
    assert not SINGLETON.judge(p, result(40))[0], "one replica through a surge: a duplicate"
    assert not SINGLETON.judge(p, result(40, duplicated=2, lost=1))[0]


def test_judge_a_gap() -> None:
    p = singleton(controller="recreate", event="rollout")
    assert SINGLETON.judge(p, result(40, lost=8)) == (
        True, "recreate, rollout: a gap: 0 duplicated (expected 0), 8 lost (expected 1-60)")
    assert not SINGLETON.judge(p, result(40, lost=8, duplicated=1))[0]
    assert not SINGLETON.judge(p, result(40))[0], "a recreate with no gap: not its mechanism"
    assert not SINGLETON.judge(p, result(100, lost=61))[0], "longer than any pod start"


def test_judge_the_lease() -> None:
    p = singleton(controller="lease", event="delete")
    held, said = SINGLETON.judge(p, result(40, lost=6, refused=2))
    assert held and said.endswith("6 lost (expected 0-66), 2 refused by the fence")
    assert not SINGLETON.judge(p, result(40, duplicated=1))[0]


def test_measure_gives_the_overlap_and_the_gap_in_seconds() -> None:
    p = singleton(controller="deployment", event="rollout", interval=1.0)
    r = ticks(1, 2, 2, 2, 1, 0, 0, 1)
    figures = SINGLETON.measure(p, [], r)  # type: ignore[misc]
    assert figures["overlap_s"] == 3.0 and figures["gap_s"] == 2.0
    assert figures["expected"] == {"duplicated": [1, 4], "lost": [0, 0]}


# --- drain ---------------------------------------------------------------------------------

DRAIN = catalog.get("drain")


def drain(**given: Any) -> dict[str, Any]:
    return DRAIN.values(given)


def test_a_drain_evicts_the_workers_with_their_grace_and_shutdown() -> None:
    exp = DRAIN.experiment(drain(acks="late", soft_shutdown=3.0))
    (step,) = exp.faults
    assert (step.action, step.component, step.at) == ("drain", "worker", 4.0)
    assert exp.topology.grace == 4.0 and exp.topology.count("worker") == 2
    assert exp.topology.settings["soft_shutdown_timeout"] == 3.0
    assert exp.redelivers and exp.workload.tasks is not None
    assert exp.workload.tasks.seconds == 8.0
    assert "soft_shutdown_timeout" not in DRAIN.experiment(drain()).topology.settings


@pytest.mark.parametrize(("given", "said"), [
    ({"task_seconds": 4.0}, "--task-seconds 4 must be longer than --grace 4"),
    ({"soft_shutdown": 4.0}, "--soft-shutdown 4 must be under --grace 4"),
    ({"rate": 0.2}, "must keep every pool process busy"),
])
def test_a_drain_that_could_not_cut_a_task_is_refused(given: dict[str, Any], said: str) -> None:
    with pytest.raises(BadInput, match=said):
        DRAIN.experiment(drain(**given))


def test_judge_a_drain() -> None:
    early, late = drain(acks="early"), drain(acks="late", soft_shutdown=3.0)
    assert DRAIN.judge(early, result(10, lost=2)) == (
        True, "acks early, tasks of 8s past a 4s grace: 2 lost (expected 1-4), "
              "0 duplicated (expected 0)")
    assert not DRAIN.judge(early, result(10))[0], "nothing cut: no drain happened"
    assert not DRAIN.judge(early, result(10, lost=5))[0], "more than the pools ran"
    assert DRAIN.judge(late, result(10, recovered=3))[0]
    assert not DRAIN.judge(late, result(10, recovered=3, lost=1))[0]
    assert not DRAIN.judge(late, result(10, recovered=2, duplicated=1))[0]


def test_the_rerun_is_timed_from_the_eviction() -> None:
    from experiments.catalog.drain import eviction_to_rerun
    from services.history import Event

    events = [
        Event(10.0, "start", "a", "celery", "w1", exec_id="x1"),
        Event(10.5, "start", "b", "celery", "w2", exec_id="y1"),
        Event(12.0, "fault", "evict", "evict", "w1"),
        Event(13.0, "start", "a", "celery", "w2", exec_id="y2"),  # put back at once
        Event(14.0, "finish", "b", "celery", "w2", exec_id="y1"),
        Event(15.0, "fault", "evict", "evict", "w2"),  # nothing running there then
    ]
    assert eviction_to_rerun(events) == [1.0]


# --- scale-in ------------------------------------------------------------------------------

SCALE_IN = catalog.get("scale-in")


def test_a_scale_in_sends_one_task_per_busy_worker_then_scales_down() -> None:
    plain = SCALE_IN.experiment(SCALE_IN.values({}))
    (step,) = plain.faults
    assert (step.action, step.replicas, step.at) == ("scale", 2, 3.0)
    assert plain.topology.settings["worker_concurrency"] == 1
    assert plain.topology.settings["acks"] == "late"
    assert plain.workload.tasks is not None and plain.workload.tasks.rate == 2.0
    costly = SCALE_IN.experiment(SCALE_IN.values({"deletion_cost": True}))
    assert costly.faults[0].action == "scale-in-by-cost"


def test_judge_a_scale_in() -> None:
    plain = SCALE_IN.values({})
    assert SCALE_IN.judge(plain, result(2, recovered=1))[0]
    assert SCALE_IN.judge(plain, result(2))[0], "the ranking may spare both busy workers"
    assert not SCALE_IN.judge(plain, result(2, lost=1))[0]
    costly = SCALE_IN.values({"deletion_cost": True})
    assert SCALE_IN.judge(costly, result(2)) == (
        True, "4->2 workers, 2 busy, busy pods costlier to delete: 0 recovered (expected 0), "
              "0 lost (expected 0), 0 duplicated (expected 0) (recovered: cut by the "
              "scale-down, run again)")
    assert not SCALE_IN.judge(costly, result(2, recovered=1))[0], "a busy one went anyway"
    # more to delete than idle pods: the cost can spare only so many
    crowded = SCALE_IN.values({"deletion_cost": True, "workers": 4, "to": 1, "busy": 3})
    assert SCALE_IN.judge(crowded, result(3, recovered=2))[0]
    assert not SCALE_IN.judge(crowded, result(3, recovered=3))[0]


def test_the_scale_in_measure_names_the_busy_pods_deleted() -> None:
    from services.history import Event

    events = [Event(1.0, "start", "a", "celery", "w1", exec_id="x"),
              Event(1.1, "start", "b", "celery", "w2", exec_id="y"),
              Event(3.0, "fault", "scale", "scale-down", "w2"),
              Event(3.0, "fault", "scale", "scale-down", "w4")]
    figures = SCALE_IN.measure(SCALE_IN.values({}), events, result(2))  # type: ignore[misc]
    assert figures["busy_at_scale_down"] == ["w1", "w2"]
    assert figures["deleted"] == ["w2", "w4"] and figures["busy_deleted"] == 1


# --- liveness-restart ----------------------------------------------------------------------

LIVENESS = catalog.get("liveness-restart")


def with_units(lost_ticks: int, lost_background: int, faults: int) -> Any:
    from tests.unit.test_judges import units

    r = units(*[(f"tick@{i}.0", 0, 0, False, True) for i in range(lost_ticks)],
              *[(f"req-{i}", 1, 0, True, False) for i in range(lost_background)],
              ("tick@99.0", 1, 1, False, True))
    r.faults = faults
    return r


def test_a_liveness_run_watches_the_api_for_restarts_while_blocking_it() -> None:
    exp = LIVENESS.experiment(LIVENESS.values({}))
    (step,) = exp.faults
    assert (step.action, step.component, step.duration) == ("watch-restarts", "api", 15.0)
    assert exp.topology.settings["liveness"] == "strict"
    assert [r.path for r in exp.workload.requests] == ["/block", "/work/background"]


def test_judge_a_liveness_restart() -> None:
    strict, lenient = LIVENESS.values({}), LIVENESS.values({"liveness": "lenient"})
    held, said = LIVENESS.judge(strict, with_units(3, 2, 1))
    assert held and "1 container restart(s), 2 BackgroundTasks and 3 ticks lost" in said
    assert not LIVENESS.judge(strict, with_units(3, 0, 1))[0], "a restart loses what it held"
    assert not LIVENESS.judge(strict, with_units(0, 0, 0))[0], "no restart: not this mechanism"
    assert LIVENESS.judge(lenient, with_units(2, 0, 0))[0], "late ticks are starvation's"
    assert not LIVENESS.judge(lenient, with_units(0, 1, 0))[0]
    assert not LIVENESS.judge(lenient, with_units(0, 0, 1))[0]


# --- oom-kill ------------------------------------------------------------------------------

OOM = catalog.get("oom-kill")


def oom_result(greedy_starts: int, greedy_finishes: int, others_lost: int = 0,
               restarts: int = 0) -> Any:
    from tests.unit.test_judges import units

    r = units(("task-1", greedy_starts, greedy_finishes, True, False),
              *[(f"task-{i}", 1, 1, True, False) for i in (0, 2, 3)],
              *[(f"task-{i}", 1, 0, True, False) for i in range(4, 4 + others_lost)])
    r.faults = restarts
    return r


def test_an_oom_run_limits_the_worker_and_names_the_greedy_task() -> None:
    exp = OOM.experiment(OOM.values({}))
    settings = exp.topology.settings
    assert (settings["worker_memory_mb"], settings["hog_mb"], settings["hog_work"]) == (
        256, 512, "task-1")
    assert exp.faults[0].action == "watch-restarts" and exp.faults[0].component == "worker"
    with pytest.raises(BadInput, match="must exceed --memory-mb"):
        OOM.experiment(OOM.values({"hog_mb": 200}))
    with pytest.raises(BadInput, match="applies with --acks late"):
        OOM.experiment(OOM.values({"reject_on_worker_lost": True}))


def test_judge_an_oom_kill() -> None:
    early = OOM.values({})
    assert OOM.judge(early, oom_result(1, 0))[0], "one pool process killed: the task lost"
    assert not OOM.judge(early, oom_result(1, 0, others_lost=1))[0], \
        "cgroup v1 kills one process: no other task lost"
    assert OOM.judge(early, oom_result(1, 0, others_lost=1, restarts=1))[0], \
        "the group kill took the container and its other task"
    assert not OOM.judge(early, oom_result(1, 1))[0], "it fit: no OOM kill"
    poison = OOM.values({"acks": "late", "reject_on_worker_lost": True})
    assert OOM.judge(poison, oom_result(4, 0))[0]
    assert not OOM.judge(poison, oom_result(1, 0))[0], "requeued: it starts again"
