"""The run store on hand-written runs: writing, reading, re-checking, and refusing bad files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments import store
from experiments.checker import Schedule, check
from experiments.model import BadInput
from experiments.report import markdown_summary
from services.history import Event, scheduled_work_id

T0 = 1_800_000_000.0  # a whole second, so the 1 s schedule fires at T0, T0+1, ...


def ticks(replicas: int, seconds: int) -> list[Event]:
    """Every replica runs every tick: scheduler-duplicates without a guard."""
    out = []
    for k in range(seconds):
        wid = scheduled_work_id("tick", T0 + k)
        for r in range(1, replicas + 1):
            x = f"api-{r}:{k}"
            out.append(Event(T0 + k + 0.001 * r, "start", wid, "apscheduler", f"api-{r}",
                             exec_id=x))
            out.append(Event(T0 + k + 0.05 + 0.001 * r, "finish", wid, "apscheduler",
                             f"api-{r}", exec_id=x))
    return out


def stored_run(directory: Path, replicas: int = 2, seconds: int = 5,
               drop_aligned: bool = False) -> dict[str, Any]:
    """A run of scheduler-duplicates as the runner stores it, from a hand-written history."""
    events = ticks(replicas, seconds)
    schedules = (Schedule("tick", 1.0),)
    result = check(events, (T0, T0 + seconds), schedules, 0.5)
    params = {"replicas": replicas, "interval": 1.0, "duration": float(seconds),
              "guard": "none", "align": "aligned", "scale_to": 0, "scale_at": 0.0,
              "tick_seconds": 0.05}
    schedules_json = store.schedules_to_json(schedules)
    if drop_aligned:
        del schedules_json[0]["aligned"]
    summary: dict[str, Any] = {
        "experiment": "scheduler-duplicates", "platform": "local", "seed": 3, "run_id": "r1",
        "parameters": params,
        "window": {"start": T0, "end": T0 + seconds, "duration": float(seconds)},
        "schedules": schedules_json, "late_after": 0.5, **result.to_json(), "measured": {},
        "faults": [], "valid": True, "expectation": "stored sentence",
    }
    store.write_run(directory, summary, events, result)
    return summary


def test_events_round_trip_through_jsonl(tmp_path: Path) -> None:
    events = [*ticks(2, 2), Event(T0 + 3, "fault", "fault-1", "kill", "api-1",
                                  detail={"inflight": 2, "at": 3.0})]
    store.write_events(tmp_path / "e.jsonl", events)
    assert store.read_events(tmp_path / "e.jsonl") == events


def test_write_run_stores_the_record_and_what_a_person_reads(tmp_path: Path) -> None:
    stored_run(tmp_path / "run")
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert names == {"summary.json", "events.jsonl", "summary.md", "timeline.png"}
    assert (tmp_path / "run" / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_recheck_reproduces_the_stored_counts_without_redis(tmp_path: Path) -> None:
    stored = stored_run(tmp_path / "run", replicas=3, seconds=4)
    r = store.recheck(tmp_path / "run")
    assert r.differences == []
    assert r.summary["counts"] == stored["counts"]
    assert r.summary["counts"]["duplicated"] == 4 and r.summary["extra_executions"] == 8
    assert r.summary["valid"] is True
    # the expectation was rebuilt from the parameters, not copied from the file
    assert r.summary["expectation"].startswith("unguarded, 3 replicas, each tick runs once")


def test_recheck_reports_where_the_stored_summary_disagrees(tmp_path: Path) -> None:
    stored_run(tmp_path / "run")
    path = tmp_path / "run" / "summary.json"
    s = json.loads(path.read_text())
    s["counts"]["duplicated"] = 1
    s["valid"] = False
    path.write_text(json.dumps(s))
    r = store.recheck(tmp_path / "run")
    assert "duplicated: stored 1, re-checked 5" in r.differences
    assert "verdict: stored not demonstrated, re-checked demonstrated" in r.differences


def test_older_summaries_without_aligned_take_it_from_the_experiment(tmp_path: Path) -> None:
    stored = stored_run(tmp_path / "run", drop_aligned=True)
    assert store.recheck(tmp_path / "run").summary["counts"] == stored["counts"]


def _write_lines(tmp_path: Path, lines: list[str], end: str = "\n") -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + end)
    return path


def good_lines(n: int = 3) -> list[str]:
    return [json.dumps(e.to_json()) for e in ticks(1, n)]


@pytest.mark.parametrize(("bad", "words"), [
    ('{"t": 1.0, "kind": "start", "work_id": "a", "inst', ["truncated"]),
    ("not json at all", ["corrupted"]),
    ("[1, 2, 3]", ["JSON object"]),
    ('{"t": 1.0, "kind": "start", "work_id": "a"}', ["'instance'"]),
    ('{"t": 1.0, "kind": "begin", "work_id": "a", "instance": "x"}', ["unknown event kind"]),
    ('{"t": NaN, "kind": "start", "work_id": "a", "instance": "x"}', ["finite number"]),
    ('{"t": "soon", "kind": "start", "work_id": "a", "instance": "x"}', ["finite number"]),
    ('{"t": 1, "kind": "start", "work_id": "a", "instance": "x", "pid": "p"}', ["malformed"]),
])
def test_a_bad_line_is_named_by_file_and_number(tmp_path: Path, bad: str,
                                                words: list[str]) -> None:
    lines = good_lines()
    path = _write_lines(tmp_path, [*lines[:2], bad, *lines[2:]])
    with pytest.raises(BadInput) as info:
        store.read_events(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: "), message
    for word in words:
        assert word in message


def test_a_truncated_last_line_is_named(tmp_path: Path) -> None:
    lines = good_lines(4)
    path = _write_lines(tmp_path, [*lines[:-1], lines[-1][: len(lines[-1]) // 2]], end="")
    with pytest.raises(BadInput, match=rf"{path}:8: .*truncated"):
        store.read_events(path)


def test_a_last_line_missing_only_its_newline_is_whole(tmp_path: Path) -> None:
    assert len(store.read_events(_write_lines(tmp_path, good_lines(4), end=""))) == 8


def test_blank_lines_are_skipped_and_bad_bytes_named(tmp_path: Path) -> None:
    lines = good_lines(2)
    assert len(store.read_events(_write_lines(tmp_path, [lines[0], "", lines[1]]))) == 2
    path = tmp_path / "events.jsonl"
    path.write_bytes(lines[0].encode() + b"\n\xff\xfe\n")
    with pytest.raises(BadInput, match=rf"{path}:2: not UTF-8"):
        store.read_events(path)


def test_a_bad_summary_is_named(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such run directory"):
        store.read_summary(tmp_path / "absent")
    with pytest.raises(BadInput, match="not a run directory"):
        store.read_summary(tmp_path)
    (tmp_path / "summary.json").write_text('{\n  "experiment": "x",\n  "parameters": {')
    with pytest.raises(BadInput, match=r"summary\.json:3: not valid JSON"):
        store.read_summary(tmp_path)
    (tmp_path / "summary.json").write_text('{"experiment": "x", "parameters": {}}')
    with pytest.raises(BadInput, match="lacks 'window'"):
        store.read_summary(tmp_path)


def test_a_run_without_events_is_refused(tmp_path: Path) -> None:
    stored_run(tmp_path / "run")
    (tmp_path / "run" / "events.jsonl").unlink()
    with pytest.raises(BadInput, match=r"events\.jsonl: missing"):
        store.recheck(tmp_path / "run")


def test_summary_md_says_what_ran_the_faults_and_the_verdict() -> None:
    summary = {
        "experiment": "background-loss", "platform": "local", "seed": 9, "run_id": "abc",
        "parameters": {"replicas": 3, "kill": "sigkill"},
        "window": {"start": 0, "end": 6, "duration": 6.0}, "wall_seconds": 11.0,
        "expected": 20, "executions": 13, "extra_executions": 0, "late": 0,
        "counts": {"ok": 13, "lost": 7, "duplicated": 0, "recovered": 0, "unexpected": 0,
                   "in_doubt": 0},
        "faults": [{"step": "kill api at 2s mid-job", "action": "kill", "target": "api-2",
                    "at": 2.015, "inflight": 4, "mid_job": True},
                   {"step": "scale api to 5 at 3s", "action": "scale-up", "target": "api",
                    "at": 3.0, "inflight": None, "mid_job": False, "replicas": 5}],
        "valid": False, "expectation": "background: lost 7/20 accepted units on 1 kill(s)",
    }
    md = markdown_summary(summary)
    assert ("**What happened to the work:** 20 units due or acknowledged, 13 executions: "
            "7 lost, 13 ok, 0 duplicated.") in md
    assert ("**The claim:** not demonstrated: background: lost 7/20 accepted units on "
            "1 kill(s).") in md
    # the work was lost: the summary ends with what removes it
    assert md.rstrip().endswith("`fix (hand the work to Celery): scalelab run background-loss "
                                "--mechanism celery`")
    assert "seed: 9" in md and "| replicas | 3 |" in md
    assert "| 2.02 | kill | api-2 | yes (4 running) | yes | kill api at 2s mid-job |" in md
    assert "| 3.00 | scale-up | api | n/a | no | scale api to 5 at 3s (replicas=5) |" in md
    assert "| lost | 7 |" in md
    assert "![timeline of the run](timeline.png)" in md


def test_recheck_says_which_rule_judged_the_run(tmp_path: Path) -> None:
    from experiments import catalog
    from experiments.model import rule_of

    stored_run(tmp_path / "old")  # stored by an older lab: no judge recorded
    old = store.recheck(tmp_path / "old")
    assert len(old.notes) == 1 and "does not record its judge" in old.notes[0]

    today = rule_of(catalog.get("scheduler-duplicates").judge)
    path = tmp_path / "old" / "summary.json"
    s = json.loads(path.read_text())
    path.write_text(json.dumps({**s, "judge": today}))
    assert store.recheck(tmp_path / "old").notes == []  # the same rule: nothing to say

    path.write_text(json.dumps({**s, "judge": {**today, "rule": "0123456789ab"}}))
    changed = store.recheck(tmp_path / "old").notes
    assert len(changed) == 1 and "today's rule differs" in changed[0]
    assert "0123456789ab" in changed[0] and today["rule"] in changed[0]
