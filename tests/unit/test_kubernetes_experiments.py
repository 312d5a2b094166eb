"""The Kubernetes-native experiments without a cluster: what they build, what their
judges expect from each mechanism, on hand-written results."""

from __future__ import annotations

from typing import Any

import pytest

from experiments import catalog
from experiments.model import BadInput, Verdict
from tests.unit.test_judges import mark, result, ticks

ROLLED = (mark("restart", instance="api-1"),)  # the mark a rollout leaves

SINGLETON = catalog.get("singleton-scheduler")


def singleton(**given: Any) -> dict[str, Any]:
    return SINGLETON.values(given)


@pytest.mark.parametrize(("controller", "event", "fault"), [
    ("deployment", "rollout", "rollout"),
    ("lease", "rollout", "rollout"),
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
    v = SINGLETON.judge(p, result(40, duplicated=3, marks=ROLLED))
    assert isinstance(v, Verdict) and v.demonstrated, v.sentence
    assert v.sentence == (
        "deployment, rollout: an overlap: duplicated 3 (theory 3, allowed 1..8: two "
        "schedulers from the new one's start until the old one stops: Ready within 1 s, then "
        "preStop 0 s and shutdown 1 s, controllers reacting within 2 s); lost 0 (theory 0)")
    assert SINGLETON.judge(p, result(40, marks=ROLLED)).outcome == "not_demonstrated", \
        "one replica through a surge: a duplicate"
    assert not SINGLETON.judge(p, result(40, duplicated=2, lost=1, marks=ROLLED)).demonstrated
    assert SINGLETON.judge(p, result(40, duplicated=3)).outcome == "untested", "no rollout"


def test_judge_a_gap() -> None:
    p = singleton(controller="recreate", event="rollout")
    v = SINGLETON.judge(p, result(40, lost=8, marks=ROLLED))
    assert v.demonstrated and "lost 8 (theory 4, allowed 1..60" in v.sentence
    assert not SINGLETON.judge(p, result(40, lost=8, duplicated=1, marks=ROLLED)).demonstrated
    assert not SINGLETON.judge(p, result(40, marks=ROLLED)).demonstrated, \
        "a recreate with no gap: not its mechanism"
    assert not SINGLETON.judge(p, result(100, lost=61, marks=ROLLED)).demonstrated, \
        "longer than any pod start"


def test_judge_the_lease() -> None:
    p = singleton(controller="lease", event="delete")
    deleted = (mark("pod-delete", instance="api-1"),)
    v = SINGLETON.judge(p, result(40, lost=6, refused=2, marks=deleted))
    assert v.demonstrated and "(2 refused by the fence)" in v.sentence
    assert not SINGLETON.judge(p, result(40, duplicated=1, marks=deleted)).demonstrated


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
    evicted = (mark("evict", inflight=2), mark("evict", inflight=2, t=8.0))
    v = DRAIN.judge(early, result(10, lost=2, marks=evicted))
    assert v.demonstrated and v.sentence == (
        "acks early, tasks of 8s past a 4s grace: lost 2 (theory 2, allowed 1..4: 4 in "
        "flight at the evictions, those within their last 4 s finish in the warm shutdown); "
        "duplicated 0 (theory 0)")
    assert not DRAIN.judge(early, result(10, marks=evicted)).demonstrated, "nothing cut"
    assert not DRAIN.judge(early, result(10, lost=5, marks=evicted)).demonstrated, \
        "more than were in flight"
    assert DRAIN.judge(late, result(10, recovered=3, marks=evicted)).demonstrated
    assert not DRAIN.judge(late, result(10, recovered=3, lost=1, marks=evicted)).demonstrated
    assert not DRAIN.judge(late, result(10, recovered=2, duplicated=1,
                                        marks=evicted)).demonstrated
    idle = (mark("evict", inflight=0),)
    assert DRAIN.judge(early, result(10, lost=1, marks=idle)).outcome == "untested"


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
    down = (mark("scale-down", instance="w-3"), mark("scale-down", instance="w-4"))
    assert SCALE_IN.judge(plain, result(2, recovered=1, marks=down)).demonstrated
    assert SCALE_IN.judge(plain, result(2, marks=down)).demonstrated, \
        "the ranking may spare both busy workers"
    assert not SCALE_IN.judge(plain, result(2, lost=1, marks=down)).demonstrated
    costly = SCALE_IN.values({"deletion_cost": True})
    v = SCALE_IN.judge(costly, result(2, marks=down))
    assert v.demonstrated and v.sentence == (
        "4->2 workers, 2 busy, busy pods costlier to delete (recovered: cut by the "
        "scale-down, run again): recovered 0 (theory 0); lost 0 (theory 0); duplicated 0 "
        "(theory 0)")
    assert not SCALE_IN.judge(costly, result(2, recovered=1, marks=down)).demonstrated, \
        "a busy one went anyway"
    assert SCALE_IN.judge(costly, result(2)).outcome == "untested", "nothing scaled away"
    # more to delete than idle pods: the cost can spare only so many
    crowded = SCALE_IN.values({"deletion_cost": True, "workers": 4, "to": 1, "busy": 3})
    assert SCALE_IN.judge(crowded, result(3, recovered=2, marks=down)).demonstrated
    assert not SCALE_IN.judge(crowded, result(3, recovered=3, marks=down)).demonstrated


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


def with_units(lost_ticks: int, lost_background: int, restarts: int) -> Any:
    from tests.unit.test_judges import units

    return units(*[(f"tick@{i}.0", 0, 0, False, True) for i in range(lost_ticks)],
                 *[(f"req-{i}", 1, 0, True, False) for i in range(lost_background)],
                 ("tick@99.0", 1, 1, False, True),
                 marks=tuple(mark("container-restart", instance="api-1", t=5.0 + i)
                             for i in range(restarts)))


def test_a_liveness_run_watches_the_api_for_restarts_while_blocking_it() -> None:
    exp = LIVENESS.experiment(LIVENESS.values({}))
    (step,) = exp.faults
    assert (step.action, step.component, step.duration) == ("watch-restarts", "api", 15.0)
    assert exp.topology.settings["liveness"] == "strict"
    assert [r.path for r in exp.workload.requests] == ["/block", "/work/background"]


def test_judge_a_liveness_restart() -> None:
    strict, lenient = LIVENESS.values({}), LIVENESS.values({"liveness": "lenient"})
    v = LIVENESS.judge(strict, with_units(3, 2, 1))
    assert v.demonstrated and "container restarts 1 (theory 1" in v.sentence
    assert "BackgroundTasks lost 2 (theory 0, allowed 0..16" in v.sentence
    assert LIVENESS.judge(strict, with_units(3, 0, 1)).demonstrated, \
        "a graceful restart: BackgroundTasks within the grace finish"
    assert not LIVENESS.judge(strict, with_units(0, 0, 0)).demonstrated, "no restart"
    assert LIVENESS.judge(lenient, with_units(2, 0, 0)).demonstrated, \
        "late ticks are starvation's"
    assert not LIVENESS.judge(lenient, with_units(0, 1, 0)).demonstrated
    assert not LIVENESS.judge(lenient, with_units(0, 0, 1)).demonstrated


# --- oom-kill ------------------------------------------------------------------------------

OOM = catalog.get("oom-kill")


def oom_result(greedy_starts: int, greedy_finishes: int, others_lost: int = 0,
               restarts: int = 0) -> Any:
    from tests.unit.test_judges import units

    return units(("task-1", greedy_starts, greedy_finishes, True, False),
                 *[(f"task-{i}", 1, 1, True, False) for i in (0, 2, 3)],
                 *[(f"task-{i}", 1, 0, True, False) for i in range(4, 4 + others_lost)],
                 marks=tuple(mark("container-restart") for _ in range(restarts)))


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
    assert OOM.judge(early, oom_result(1, 0)).demonstrated, "one pool process: the task lost"
    assert not OOM.judge(early, oom_result(1, 0, others_lost=1)).demonstrated, \
        "cgroup v1 kills one process: no other task lost"
    assert OOM.judge(early, oom_result(1, 0, others_lost=1, restarts=1)).demonstrated, \
        "the group kill took the container and its other task"
    assert not OOM.judge(early, oom_result(1, 1)).demonstrated, "it fit: no OOM kill"
    assert OOM.judge(early, oom_result(0, 0)).outcome == "untested"
    poison = OOM.values({"acks": "late", "reject_on_worker_lost": True})
    assert OOM.judge(poison, oom_result(4, 0)).demonstrated
    assert not OOM.judge(poison, oom_result(1, 0)).demonstrated, "requeued: it starts again"


def test_a_local_run_of_a_cluster_fault_is_refused_in_one_line_before_anything_starts(
        capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    from experiments.cli import main

    # scale-in without the deletion cost is the local platform's scale-down: its analogue
    for args in (["singleton-scheduler"], ["drain"], ["scale-in", "--deletion-cost"],
                 ["liveness-restart"], ["oom-kill"]):
        with pytest.raises(SystemExit) as info:
            main(["run", *args, "--results", str(tmp_path)])
        name = args[0]
        assert info.value.code == 2, name
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "needs Kubernetes" in err, err
    assert not list(tmp_path.iterdir()), "nothing ran, nothing stored"


def test_a_local_suite_naming_a_cluster_experiment_is_refused_in_one_line(
        capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    from experiments.cli import main

    with pytest.raises(SystemExit) as info:
        main(["suite", "--quick", "--only", "drain", "--results", str(tmp_path)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot do drain" in err and "needs Kubernetes" in err
