"""The timeline, read back through its figure objects before it is saved."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from matplotlib.collections import PolyCollection

from experiments.checker import Schedule, check
from experiments.plot import NEVER_RAN, save_timeline, timeline
from services.history import Event, scheduled_work_id

T0 = 1_800_000_000.0


def ev(t: float, kind: str, work_id: str, instance: str, exec_id: str = "",
       mechanism: str = "background", **detail: Any) -> Event:
    return Event(T0 + t, kind, work_id, mechanism, instance, exec_id=exec_id, detail=detail)


def busy_run(instances: int = 20, per_instance: int = 150) -> list[Event]:
    """Requests on ``instances`` replicas, three units duplicated, a kill, a pause, a scale."""
    events: list[Event] = []
    for i in range(1, instances + 1):
        name = f"api-{i}"
        for k in range(per_instance):
            wid, x, t = f"req-{i}-{k}", f"{name}:{k}", 0.1 + k * 0.2 + i * 0.001
            events += [ev(t, "intent", wid, name), ev(t, "start", wid, name, x),
                       ev(t + 0.3, "finish", wid, name, x)]
    for k in range(3):  # run again elsewhere: duplicated
        wid, x = f"req-1-{k}", f"api-2:again-{k}"
        events += [ev(5 + k, "start", wid, "api-2", x), ev(5.2 + k, "finish", wid, "api-2", x)]
    # accepted by api-3, started, then api-3 is killed: lost, its bar cut at the kill
    events += [ev(10.0, "intent", "doomed", "api-3"),
               ev(10.1, "start", "doomed", "api-3", "api-3:doomed"),
               ev(10.5, "fault", "fault-1", "api-3", mechanism="kill", inflight=1),
               ev(12.0, "fault", "fault-2", "api-4", mechanism="pause", inflight=0),
               ev(14.0, "fault", "fault-3", "api-4", mechanism="resume"),
               ev(15.0, "fault", "fault-4", "api", mechanism="scale-up", replicas=20),
               ev(16.0, "fault", "fault-5", "broker", mechanism="broker-outage"),
               ev(17.0, "fault", "fault-6", "broker", mechanism="broker-back")]
    return events


def summary(end: float = 31.0) -> dict[str, Any]:
    return {"experiment": "background-loss", "window": {"start": T0, "end": T0 + end},
            "valid": True, "expectation": "lost 1/3001"}


def test_one_lane_per_instance_in_natural_order_and_every_execution_drawn() -> None:
    events = busy_run()
    result = check(events, (T0, T0 + 31))
    assert result.counts["duplicated"] == 3 and result.counts["lost"] == 1
    tl = timeline(summary(), events, result)

    expected_lanes = [f"api-{i}" for i in range(1, 21)]
    assert tl.model.lanes == expected_lanes
    (ax,) = tl.figure.axes
    assert [label.get_text() for label in ax.get_yticklabels()] == expected_lanes

    bars = {c.get_label(): len(c.get_paths()) for c in ax.collections
            if isinstance(c, PolyCollection) and not str(c.get_label()).startswith("_")}
    # 3000 executions ran once, except the 3 units that ran twice (6 bars), and the kill
    assert bars == {"ok": 3000 - 3, "duplicated": 6, "interrupted": 1}
    (cut,) = [b for b in tl.model.bars if b.category == "interrupted"]
    assert (cut.lane, round(cut.start, 3), round(cut.end, 3)) == ("api-3", 10.1, 10.5)
    assert [(lane, round(t, 3)) for lane, t, _ in tl.model.lost] == [("api-3", 10.0)]
    assert [(a, target) for a, target, _ in tl.faults] == [
        ("kill", "api-3"), ("pause", "api-4"), ("scale-up", "api"), ("broker-outage", "broker")]
    texts = {t.get_text().strip() for t in ax.texts}
    assert {"kill, 1 running", "paused", "scale-up api → 20", "broker outage"} <= texts


def test_the_png_is_valid_and_sized_for_twenty_lanes(tmp_path: Path) -> None:
    events = busy_run()
    tl = timeline(summary(), events, check(events, (T0, T0 + 31)))
    save_timeline(tl, tmp_path / "timeline.png")
    data = (tmp_path / "timeline.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1300
    assert height >= 20 * 30  # at least ~30 pixels per lane: labels do not collide


def test_due_ticks_never_run_get_their_own_lane_and_warmup_is_not_judged() -> None:
    wid = scheduled_work_id("tick", T0 + 1)
    events = [ev(-0.9, "finish", scheduled_work_id("tick", T0 - 1), "api-1", "w"),  # warm-up
              ev(0.0, "start", scheduled_work_id("tick", T0), "api-1", "a", "apscheduler"),
              ev(0.1, "finish", scheduled_work_id("tick", T0), "api-1", "a", "apscheduler")]
    result = check(events, (T0, T0 + 2), (Schedule("tick", 1.0),))
    assert result.units[wid].verdict == "lost"
    tl = timeline(summary(2.0), events, result)
    assert tl.model.lanes == ["api-1", NEVER_RAN]
    assert [(lane, round(t, 3)) for lane, t, _ in tl.model.lost] == [(NEVER_RAN, 1.0)]
    assert sorted(b.category for b in tl.model.bars) == ["ok", "outside"]


def test_an_execution_never_finished_nor_struck_is_in_doubt_to_the_end() -> None:
    events = [ev(0.5, "intent", "a", "api-1"), ev(0.5, "start", "a", "api-1", "x"),
              ev(3.0, "start", "b", "api-2", "y"), ev(3.5, "finish", "b", "api-2", "y")]
    tl = timeline(summary(4.0), events, check(events, (T0, T0 + 4)))
    (doubt,) = [b for b in tl.model.bars if b.category == "in_doubt"]
    assert (doubt.lane, doubt.start, doubt.end) == ("api-1", 0.5, 4.0)


def test_a_replacement_is_named_for_the_instance_it_replaced_and_intents_make_no_lane() -> None:
    from experiments import timeline as model

    events = [ev(0.1, "intent", "t1", "harness", mechanism="celery"),
              ev(0.2, "start", "t1", "worker-1", "a", "celery"),
              ev(0.3, "finish", "t1", "worker-1", "a", "celery"),
              ev(0.4, "intent", "t2", "harness", mechanism="celery"),
              ev(0.5, "start", "t2", "worker-2", "b", "celery"),
              ev(0.6, "finish", "t2", "worker-2", "b", "celery"),
              ev(1.0, "fault", "f1", "worker-1", mechanism="kill", inflight=0),
              ev(2.0, "intent", "t3", "harness", mechanism="celery"),
              ev(2.5, "start", "t3", "worker-3", "c", "celery"),
              ev(2.6, "finish", "t3", "worker-3", "c", "celery"),
              ev(3.0, "start", "t3b", "worker-4", "d", "celery"),
              ev(3.1, "finish", "t3b", "worker-4", "d", "celery")]
    t = model.build(events, check(events, (T0, T0 + 4)), (T0, T0 + 4), {"worker": 2})
    assert t.lanes == ["worker-1", "worker-2", "worker-3", "worker-4"]  # no empty harness lane
    assert [t.lane_label(lane) for lane in t.lanes] == [
        "worker-1", "worker-2", "worker-3 (for worker-1)", "worker-4 (added)"]
    tl = timeline({**summary(4.0), "topology": {"worker": 2}}, events,
                  check(events, (T0, T0 + 4)))
    (ax,) = tl.figure.axes
    assert "worker-3 (for worker-1)" in [x.get_text() for x in ax.get_yticklabels()]
