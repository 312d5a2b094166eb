"""The fast path judges exactly as the reference checker: the same Result, units in the
same order, on generated histories (and the same error on lines the codec rejects)."""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments import columns
from experiments.checker import Result, Schedule, check
from experiments.fastcheck import History, check_buffer, check_lines
from services.history import decode_line

JOBS = ("tick", "beat")
KINDS = ("intent", "start", "finish", "refused", "fault", "other")
MECHANISMS = ("celery", "scheduler", "background")
FAULT_MARKS = ("kill", "terminate", "restart", "scale-down", "pause", "resume")
INSTANCES = ("api-1", "api-2", "worker-1", "")
# "api-1:7:0" is the key the reference gives a start without exec_id: a collision case
EXEC_IDS = ("", "e1", "e2", "e3", "api-1:7:0",
            "0d6c1c3e-5a0b-4c47-9f0e-7f3a2b1c9d8e:1", "e" * 70)

scheduled_ids = st.builds(lambda job, k, step: f"{job}@{k * step:.3f}",
                          st.sampled_from(JOBS), st.integers(-2, 14),
                          st.sampled_from((0.5, 1.0, 2.5)))
work_ids = st.one_of(
    st.sampled_from(("a", "b", "c", "task-00000001", "task-00000002", "abcdefgh", "abcdefghi",
                     "0d6c1c3e-5a0b-4c47-9f0e-7f3a2b1c9d8e", "w" * 65)),
    scheduled_ids,
    st.sampled_from(("x@", "@1", "tick@nan", "tick@1e1", "tick@inf", "beat@-0.000")),
)
# small times, and the ledger's own (``%.6f`` of this century: 17 bytes, a point at 10)
times = st.one_of(st.floats(0, 20, allow_nan=False).map(lambda t: f"{t:.6f}"),
                  st.floats(1.7e9, 1.9e9).map(lambda t: f"{t:.6f}"))


@st.composite
def lines(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(KINDS))
    if kind == "fault":
        mechanism = draw(st.sampled_from(FAULT_MARKS))
        target = draw(st.sampled_from(INSTANCES))
        work_id = target
    else:
        mechanism = draw(st.sampled_from(MECHANISMS))
        target = draw(st.sampled_from(INSTANCES))
        work_id = draw(work_ids)
    fields = [draw(times), kind, work_id, mechanism, target,
              draw(st.sampled_from(("7", "8", "007", "1234567", "123456789"))),
              draw(st.sampled_from(("1", "2", "10"))),
              draw(st.sampled_from(EXEC_IDS)),
              draw(st.sampled_from(("", '{"a":1}', '{"s":"x\\ty"}'))), "run-1"]
    return "\t".join(fields)


schedules = st.lists(st.builds(Schedule, st.sampled_from(JOBS), st.sampled_from((0.5, 1.0, 2.5)),
                               st.sampled_from((0.0, 0.25)), st.booleans()), max_size=3)
windows = st.tuples(st.floats(-1, 10), st.floats(0, 25))  # the runner's are finite


def judged_alike(history: list[str], window: tuple[float, float], sched: list[Schedule],
                 late_after: float) -> Result:
    reference = check([decode_line(x) for x in history], window, sched, late_after)
    fast = check_lines([x.encode() for x in history], window, sched, late_after)
    # repr: the same units in the same order, and a NaN lateness (``tick@nan``) compares
    assert repr(fast) == repr(reference)
    return fast


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lines(), max_size=60), windows, schedules, st.sampled_from((0.0, 0.5, 2.0)))
def test_fast_path_gives_the_reference_result(history: list[str], window: tuple[float, float],
                                              sched: list[Schedule], late_after: float) -> None:
    judged_alike(history, window, sched, late_after)


@settings(max_examples=100, deadline=None)
@given(st.lists(lines(), min_size=1, max_size=20), st.integers(0, 19),
       st.sampled_from(("1e3", "+2.5", "1_0", " 1.5", ".", "x", "", "1.2.3", "\u00e9", "2\x01",
                        "1900000000.00010x", "190000000.0000100", "1900000000.000.10",
                        "19000000000000100", "1900000000.000100", "5.", ".5", "12345678")),
       st.sampled_from((0, 5, 6, 8)))
def test_a_field_the_fast_decode_cannot_vouch_for_is_judged_by_the_reference(
        history: list[str], at: int, odd: str, field: int) -> None:
    at %= len(history)
    fields = history[at].split("\t")
    fields[field] = odd
    history[at] = "\t".join(fields)
    try:
        expected: Result | type[Exception] = check([decode_line(x) for x in history])
    except ValueError as exc:
        expected = type(exc)
    if isinstance(expected, Result):
        assert repr(check_lines(history)) == repr(expected)
    else:
        with pytest.raises(expected):
            check_lines(history)


def test_a_killed_execution_recovered_elsewhere() -> None:
    history = ["1.000000\tintent\tw\tcelery\tharness\t1\t1\t\t\trun",
               "2.000000\tstart\tw\tcelery\tworker-1\t7\t1\tw:1\t\trun",
               "3.000000\tfault\tworker-1\tkill\tworker-1\t0\t1\t\t{\"action\":\"kill\"}\trun",
               "4.000000\tstart\tw\tcelery\tworker-2\t8\t1\tw:2\t\trun",
               "5.000000\tfinish\tw\tcelery\tworker-2\t8\t1\tw:2\t\trun"]
    result = judged_alike(history, (0.0, 10.0), [], 0.5)
    assert result.units["w"].verdict == "recovered"
    assert result.faults == 1


def test_a_tick_due_and_never_seen_is_lost_and_a_tick_outside_the_window_ignored() -> None:
    history = ["0.100000\tstart\ttick@0.000\tscheduler\tapi-1\t7\t1\te1\t\trun",
               "0.200000\tfinish\ttick@0.000\tscheduler\tapi-1\t7\t1\te1\t\trun",
               "1.100000\tstart\ttick@1.000\tscheduler\tapi-1\t7\t1\te2\t\trun",
               "1.200000\tfinish\ttick@1.000\tscheduler\tapi-1\t7\t1\te2\t\trun"]
    result = judged_alike(history, (1.0, 3.0), [Schedule("tick", 1.0)], 0.5)
    assert result.units["tick@1.000"].verdict == "ok"
    assert result.units["tick@2.000"].verdict == "lost"
    assert result.ignored == 1


def test_an_empty_history_an_open_window_and_a_buffer() -> None:
    assert check_buffer(b"", 0) == check([])
    assert check_lines(["1.0\tintent\tw\tcelery\tharness\t1\t1\t\t\trun"],
                       (-math.inf, math.inf)).counts["lost"] == 1
    line = b"1.0\tintent\tw\tcelery\tharness\t1\t1\t\t\trun"
    assert check_buffer(line, 1) == check([decode_line(line)])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lines(), max_size=60), windows, schedules,
       st.sampled_from((0, 1, 2, 3, 8, 12)))
def test_values_that_hash_alike_are_still_told_apart(history: list[str],
                                                     window: tuple[float, float],
                                                     sched: list[Schedule], bits: int) -> None:
    # every field's hash squeezed into a few values: collisions everywhere (with 8 or 12
    # bits, often only in the top bits the first sort uses, and not in the whole hash)
    hashed = columns.Field.hashed

    def squeezed(field: columns.Field) -> columns.Words:
        return hashed(field) & np.uint64((1 << bits) - 1)

    with mock.patch.object(columns.Field, "hashed", squeezed):
        judged_alike(history, window, sched, 0.5)


def test_equal_values_are_numbered_by_first_appearance_and_unequal_apart() -> None:
    buf = b"\n".join(f"1.0\tstart\t{w}\tc\ti\t1\t1\te\t\tr".encode()
                     for w in ("b", "a", "b", "abcdefghij", "abcdefghik", "a"))
    lines = columns.Lines(buf, 6)
    ids, first = columns.numbered(lines.field(2))
    assert ids.tolist() == [0, 1, 0, 2, 3, 1]
    assert first.tolist() == [0, 1, 3, 4]


def test_a_field_in_the_buffers_last_bytes_reads_whole() -> None:
    line = b"1.0\tstart\tw\tc\ti\t1\t1\te\t\trun-1"
    lines = columns.Lines(line, 1)
    starts, lengths = lines.bounds(9)
    assert lines.word(starts, lengths, 0).tolist() == [int.from_bytes(b"run-1", "little")]


def test_fields_wider_than_a_column_fall_back_to_the_reference() -> None:
    wide = "w" * (columns.PAD + 1)
    history = [f"1.000000\tintent\t{wide}\tcelery\t\t7\t1\t\t\trun-1",
               f"1.500000\tstart\t{wide}\tcelery\t{'i' * 700}\t7\t1\t{'x' * 600}\t\trun-1",
               f"2.000000\tfinish\t{wide}\tcelery\t{'i' * 700}\t7\t1\t{'x' * 600}\t\trun-1",
               "2.500000\tintent\tb\tcelery\tapi-1\t7\t1\t\t\trun-1"]
    r = judged_alike(history, (0.0, 10.0), [], 0.5)
    assert r.units[wide].verdict == "ok" and r.counts["lost"] == 1


def test_the_labs_history_is_judged_as_the_reference_judges_it() -> None:
    history = [f"{1 + i / 10:.6f}\t{kind}\ttask-{i // 3}\tcelery\tworker-1\t7\t1\te{i // 3}\t\t"
               "run-1" for i, kind in enumerate(["intent", "start", "finish"] * 4)]
    buf = "\n".join(history).encode()
    lab = History(memoryview(buf), len(history))
    reference = check([decode_line(x) for x in history], (0.0, 10.0))
    assert repr(lab.check((0.0, 10.0))) == repr(reference)
    assert lab.events() == [decode_line(x) for x in history]
    assert History(None, 0, []).check().counts == check([]).counts
