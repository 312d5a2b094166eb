"""The checker on hand-written histories, and on generated ones against a plain recount."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.checker import Schedule, check, executions_by_component, ledger_integrity
from services.history import Event, scheduled_work_id

_clock = itertools.count(1)


def ev(kind: str, work_id: str, instance: str = "api-1", exec_id: str = "",
       t: float | None = None, mechanism: str = "m") -> Event:
    return Event(float(next(_clock)) if t is None else t, kind, work_id, mechanism, instance,
                 exec_id=exec_id)


def fault(action: str, instance: str, t: float | None = None) -> Event:
    return ev("fault", f"fault-{action}", instance, t=t, mechanism=action)


def test_acknowledged_and_finished_once_is_ok() -> None:
    r = check([ev("intent", "a"), ev("start", "a", exec_id="x"), ev("finish", "a", exec_id="x")])
    assert r.units["a"].verdict == "ok"
    assert r.counts["ok"] == 1 and r.expected == 1 and r.executions == 1


def test_acknowledged_never_started_is_lost() -> None:
    assert check([ev("intent", "a")]).units["a"].verdict == "lost"


def test_killed_mid_job_is_lost_not_in_doubt() -> None:
    h = [ev("intent", "a"), ev("start", "a", "api-1", "x"), fault("kill", "api-1")]
    assert check(h).units["a"].verdict == "lost"


def test_pause_does_not_end_an_execution() -> None:
    h = [ev("intent", "a"), ev("start", "a", "api-1", "x"), fault("pause", "api-1")]
    assert check(h).units["a"].verdict == "in_doubt"


def test_started_unfinished_without_fault_is_in_doubt() -> None:
    h = [ev("intent", "a"), ev("start", "a", "api-1", "x")]
    assert check(h).units["a"].verdict == "in_doubt"


def test_fault_before_the_start_does_not_interrupt_it() -> None:
    h = [ev("intent", "a"), fault("kill", "api-1"), ev("start", "a", "api-1", "x")]
    assert check(h).units["a"].verdict == "in_doubt"


def test_interrupted_then_finished_elsewhere_is_recovered() -> None:
    h = [ev("intent", "a"), ev("start", "a", "w-1", "x"), fault("kill", "w-1"),
         ev("start", "a", "w-2", "y"), ev("finish", "a", "w-2", "y")]
    r = check(h)
    assert r.units["a"].verdict == "recovered"
    assert r.extra_executions == 0


def test_two_finishes_are_duplicated_with_one_extra() -> None:
    h = [ev("intent", "a"), ev("start", "a", "w-1", "x"), ev("finish", "a", "w-1", "x"),
         fault("kill", "w-1"), ev("start", "a", "w-2", "y"), ev("finish", "a", "w-2", "y")]
    r = check(h)
    assert r.units["a"].verdict == "duplicated"
    assert r.extra_executions == 1 and r.executions == 2


def test_refused_second_effect_is_not_an_execution() -> None:
    h = [ev("intent", "a"), ev("start", "a", "w-1", "x"), ev("finish", "a", "w-1", "x"),
         fault("kill", "w-1"), ev("start", "a", "w-2", "y"), ev("refused", "a", "w-2", "y")]
    r = check(h)
    assert r.units["a"].verdict == "ok"
    assert r.refused == 1 and r.executions == 1


def test_finished_but_never_acknowledged_is_unexpected() -> None:
    r = check([ev("start", "z", exec_id="x"), ev("finish", "z", exec_id="x")])
    assert r.units["z"].verdict == "unexpected"
    assert r.expected == 0


def test_due_ticks_come_from_the_schedule_and_missing_ones_are_lost() -> None:
    s = Schedule("tick", 1.0, epoch=0.0)
    ran = scheduled_work_id("tick", 11.0)
    h = [ev("start", ran, "api-1", "x", t=11.0), ev("finish", ran, "api-1", "x", t=11.1)]
    r = check(h, window=(10.5, 14.0), schedules=[s])
    assert sorted(r.units) == [scheduled_work_id("tick", t) for t in (11.0, 12.0, 13.0)]
    assert r.counts["ok"] == 1 and r.counts["lost"] == 2 and r.expected == 3


def test_ticks_outside_the_window_are_ignored() -> None:
    s = Schedule("tick", 1.0, epoch=0.0)
    early = scheduled_work_id("tick", 9.0)
    h = [ev("start", early, exec_id="x", t=9.0), ev("finish", early, exec_id="x", t=9.1)]
    r = check(h, window=(10.0, 11.0), schedules=[s])
    assert early not in r.units and r.ignored == 1
    assert r.counts["lost"] == 1  # tick@10 was due and never ran


def test_a_tick_run_by_three_replicas_has_two_extra_executions() -> None:
    s = Schedule("tick", 1.0, epoch=0.0)
    w = scheduled_work_id("tick", 10.0)
    h = [e for i in (1, 2, 3) for e in (ev("start", w, f"api-{i}", f"x{i}", t=10.0 + i / 100),
                                        ev("finish", w, f"api-{i}", f"x{i}", t=10.1 + i / 100))]
    r = check(h, window=(10.0, 10.5), schedules=[s])
    assert r.units[w].verdict == "duplicated" and r.extra_executions == 2
    assert r.units[w].lateness is not None and math.isclose(r.units[w].lateness, 0.01)


def test_late_ticks_are_counted() -> None:
    s = Schedule("tick", 1.0, epoch=0.0)
    w = scheduled_work_id("tick", 10.0)
    h = [ev("start", w, exec_id="x", t=10.9), ev("finish", w, exec_id="x", t=11.0)]
    assert check(h, window=(10.0, 11.0), schedules=[s], late_after=0.5).late == 1


def test_fire_times_are_half_open_and_grid_aligned() -> None:
    s = Schedule("tick", 0.5, epoch=100.0)
    assert s.fire_times(100.2, 101.5) == [100.5, 101.0]
    assert s.fire_times(100.0, 100.5) == [100.0]


# --- generated histories against a plain recount ---------------------------------------


@dataclass
class Execution:
    instance: str
    outcome: str  # finish | refused | killed | open


@dataclass
class UnitPlan:
    acknowledged: bool
    executions: list[Execution]


executions = st.builds(Execution, st.sampled_from(["i-1", "i-2", "i-3"]),
                       st.sampled_from(["finish", "refused", "killed", "open"]))
plans = st.lists(st.builds(UnitPlan, st.booleans(), st.lists(executions, max_size=4)),
                 max_size=30)


def expected_verdict(plan: UnitPlan) -> str | None:
    finishes = sum(x.outcome == "finish" for x in plan.executions)
    killed = sum(x.outcome == "killed" for x in plan.executions)
    still_open = sum(x.outcome == "open" for x in plan.executions)
    if finishes >= 2:
        return "duplicated"
    if not plan.acknowledged:
        return "unexpected" if finishes else ("in_doubt" if still_open else None)
    if still_open:
        return "in_doubt"
    if finishes == 1:
        return "recovered" if killed else "ok"
    return "lost"


def render(plan_list: list[UnitPlan]) -> list[Event]:
    """A killed execution is followed by its instance's kill, which also ends what else
    was still open there (those become ``killed`` in the plan, the ground truth)."""
    t = itertools.count(1)
    history = []
    open_on: dict[str, list[Execution]] = {}
    for u, plan in enumerate(plan_list):
        w = f"w{u}"
        if plan.acknowledged:
            history.append(Event(float(next(t)), "intent", w, "m", "harness"))
        for k, x in enumerate(plan.executions):
            xid = f"{w}:{k}"
            history.append(Event(float(next(t)), "start", w, "m", x.instance, exec_id=xid))
            if x.outcome == "open":
                open_on.setdefault(x.instance, []).append(x)
            if x.outcome in ("finish", "refused"):
                history.append(Event(float(next(t)), x.outcome, w, "m", x.instance, exec_id=xid))
            elif x.outcome == "killed":
                history.append(Event(float(next(t)), "fault", f"f{u}:{k}", "kill", x.instance))
                for y in open_on.pop(x.instance, []):
                    y.outcome = "killed"
                # the replacement of a killed instance gets a new name, as a ReplicaSet does
                for later in plan_list[u + 1:]:
                    for y in later.executions:
                        if y.instance == x.instance:
                            y.instance = f"{y.instance}r"
                for y in plan.executions[k + 1:]:
                    if y.instance == x.instance:
                        y.instance = f"{y.instance}r"
    return history


@settings(max_examples=300, deadline=None)
@given(plans)
def test_generated_histories_match_a_plain_recount(plan_list: list[UnitPlan]) -> None:
    history = render(plan_list)
    truth = {f"w{u}": expected_verdict(p) for u, p in enumerate(plan_list)}
    finishes = [sum(x.outcome == "finish" for x in p.executions) for p in plan_list]
    r = check(history)
    assert {w: u.verdict for w, u in r.units.items()} == {
        w: v for w, v in truth.items() if v is not None}
    assert r.executions == sum(finishes)
    assert r.extra_executions == sum(max(0, f - 1) for f in finishes)
    assert sum(r.counts.values()) == len(r.units)
    assert r.expected == sum(1 for p in plan_list if p.acknowledged)


def test_each_event_counts_against_the_instance_that_wrote_it() -> None:
    # background-loss: the harness writes the intent under the replica that acknowledged
    # it, and the fault mark under its target; api-1 itself wrote one start, one finish
    h = [ev("intent", "a", "api-1"), ev("start", "a", "api-1", "x"),
         ev("finish", "a", "api-1", "x"), fault("terminate", "api-1"),
         ev("intent", "b", "api-2"), ev("start", "b", "api-2", "y")]
    healthy = ledger_integrity(h, {"api-1": 2})
    assert healthy["intact"] and healthy["found_in_ledger"] == 2
    short = ledger_integrity(h, {"api-1": 3})  # it says it wrote one more than the ledger has
    assert not short["intact"] and short["mismatched"] == {"api-1": 1}


def test_executions_by_component_leaves_ignored_ticks_out() -> None:
    warm_up, due = scheduled_work_id("tick", 1.0), scheduled_work_id("tick", 5.0)
    h = [ev("start", warm_up, "api-1", "w", t=1.0), ev("finish", warm_up, "api-1", "w", t=1.1),
         ev("start", due, "api-1", "d", t=5.0), ev("finish", due, "api-1", "d", t=5.1),
         ev("start", due, "api-2", "e", t=5.0), ev("finish", due, "api-2", "e", t=5.1),
         ev("intent", "t"), ev("start", "t", "worker-1-abc", "t"),
         ev("finish", "t", "worker-1-abc", "t")]
    r = check(h, (4.0, 10.0), (Schedule("tick", 5.0),))
    assert r.ignored == 1
    assert executions_by_component(h, r) == {"api": 2, "worker": 1}
