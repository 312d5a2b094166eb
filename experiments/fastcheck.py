"""The fast path of the checker: a ledger history judged as columns, not as events.

``check`` in ``experiments.checker`` is the reference: one ``Event`` per line, one
Python step per event. That costs ~8 µs an event (a million-event history: 8 s), most
of it building objects the verdicts never look at. Here the history stays one byte
buffer (the ledger's lines joined by newlines; ``read_buffer`` joins each LRANGE slice
as it arrives, so per-line objects live only as long as one slice); ``Lines``
(``experiments.columns``) locates its fields and numbers work_ids, executions and
instances without a Python object per line, and the verdicts come from group-bys over
those numbers. What stays per unit is the Result itself.

It gives exactly the reference's ``Result`` — the same units in the same order, the
same counts — which ``tests/unit/test_fastcheck.py`` checks on generated histories:

- a buffer the fast decode does not vouch for (a byte outside printable ASCII, a line
  without exactly ten fields, a number or a detail the reference would parse
  differently or reject) is judged by the reference itself, which then also raises
  what it raises;
- two different values whose hashes agree are numbered again by sorting the values;
- a unit with a ``start`` that has no exec_id (the reference keys it by instance, pid
  and position) is replayed through the reference's own per-unit code, and so are the
  few lines whose instance or time a verdict reads (faults, unfinished starts).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import redis

from experiments.checker import (
    VERDICTS,
    Result,
    Schedule,
    Unit,
    _Acc,
    _Endings,
    _verdict,
    check,
    paused_gc,
)
from experiments.columns import (
    Bools,
    Buffer,
    Collision,
    Field,
    Ints,
    Lines,
    Unvouched,
    groups,
    numbered,
    numbered_exactly,
)
from services import keys
from services.history import Event, decode_line, parse_scheduled, scheduled_work_id
from services.ledger import Ledger

_CHUNK = 50_000  # lines per Redis call, as Ledger.history reads

# kinds, by code; anything else is _OTHER (a unit is made, nothing else)
_KINDS = ("intent", "start", "finish", "refused", "fault")
_INTENT, _START, _FINISH, _REFUSED, _FAULT = range(5)
_OTHER = len(_KINDS)
_KIND_WORDS = [int.from_bytes(k.encode(), "little") for k in _KINDS]

# verdict codes, in VERDICTS order; -1: neither expected nor effective (ignored)
_OK, _LOST, _DUP, _REC, _UNEXP, _DOUBT = range(6)
_NONE = -1


# --- reading ------------------------------------------------------------------------------
def read_buffer(client: redis.Redis, run: str, start: int = 0) -> tuple[Buffer, int] | None:
    """The run's history from list index ``start`` as one newline-joined buffer, and how
    many lines it holds; None if an element holds a newline itself (then only a
    line-by-line read keeps it whole). Each slice of lines is joined and copied into
    one buffer as soon as it arrives, so the per-line objects of only one slice are
    alive at a time, and the buffer is sized from the first slice (no final join)."""
    key = keys.events(run)
    out = bytearray()
    size = 0
    index = start
    while lines := cast(list[bytes], client.lrange(key, index, index + _CHUNK - 1)):
        part = _joined(lines)
        if part.count(b"\n") != len(lines) - 1:
            return None
        if index == start:  # room for all (grown below if the lines get longer)
            total = cast(int, client.llen(key)) - start
            out = bytearray(int((len(part) + 1) / len(lines) * max(total, len(lines)) * 1.05))
        else:
            size += 1  # the newline between slices (the buffer is zeros: set below)
        end = size + len(part)
        if end > len(out):
            out.extend(bytes(max(end - len(out), len(out) // 4)))
        if index != start:
            out[size - 1] = 10
        out[size:end] = part
        size = end
        index += len(lines)
    return memoryview(out)[:size], index - start


def read_and_check(
    client: redis.Redis,
    run: str,
    window: tuple[float, float] = (-math.inf, math.inf),
    schedules: Sequence[Schedule] = (),
    late_after: float = 0.5,
) -> Result:
    """Read a run's history from the ledger and judge it (what ``check`` would say)."""
    read = read_buffer(client, run)
    if read is None:
        return check(Ledger(client).history(run), window, schedules, late_after)
    return check_buffer(*read, window, schedules, late_after)


class History:
    """A run's history as the lab reads it: one buffer, judged by the fast path (the
    reference where the fast decode does not vouch for a line), decoded into events
    only once something asks for them (the store, the experiment's figures, the plot)."""

    def __init__(self, buffer: Buffer | None, count: int,
                 events: list[Event] | None = None) -> None:
        self.buffer, self.count, self._events = buffer, count, events

    def check(self, window: tuple[float, float] = (-math.inf, math.inf),
              schedules: Sequence[Schedule] = (), late_after: float = 0.5) -> Result:
        if self.buffer is None:
            return check(self.events(), window, schedules, late_after)
        return check_buffer(self.buffer, self.count, window, schedules, late_after)

    def events(self) -> list[Event]:
        if self._events is None:
            assert self.buffer is not None
            with paused_gc():
                self._events = list(_events(self.buffer)) if self.count else []
        return self._events


def read_history(ledger: Ledger, run: str) -> History:
    """A run's history read from the ledger in LRANGE slices joined into one buffer (the
    events one by one where an element holds a newline)."""
    read = read_buffer(ledger.client, run)
    if read is None:
        return History(None, 0, ledger.read_history(run))
    return History(*read)


def check_lines(
    lines: Sequence[bytes | str],
    window: tuple[float, float] = (-math.inf, math.inf),
    schedules: Sequence[Schedule] = (),
    late_after: float = 0.5,
) -> Result:
    """Judge ledger lines (as LRANGE returns them)."""
    buf = _joined(lines)
    if buf.count(b"\n") != max(0, len(lines) - 1):  # a line holding a newline: one by one
        return check([decode_line(x) for x in lines], window, schedules, late_after)
    return check_buffer(buf, len(lines), window, schedules, late_after)


def _joined(lines: Sequence[bytes | str]) -> bytes:
    try:
        return b"\n".join(lines)  # type: ignore[arg-type]  # str lines: below
    except TypeError:
        return b"\n".join(x.encode() if isinstance(x, str) else x for x in lines)


def check_buffer(
    buf: Buffer,
    count: int,
    window: tuple[float, float] = (-math.inf, math.inf),
    schedules: Sequence[Schedule] = (),
    late_after: float = 0.5,
) -> Result:
    """Judge ``count`` ledger lines joined by newlines."""
    if count == 0:
        return check([], window, schedules, late_after)
    # float arithmetic as Python's: inf - inf is NaN, without a warning
    with paused_gc(), np.errstate(invalid="ignore", over="ignore"):
        try:
            lines = Lines(buf, count)
        except Unvouched:
            return check(_events(buf), window, schedules, late_after)
        # What the reference parses but no verdict reads is checked on the other core
        # (numpy lets go of the GIL), while the verdicts are worked out here; the
        # verdicts count only if the whole buffer is vouched for.
        failed: list[BaseException] = []
        checking = threading.Thread(target=_vouch, args=(lines, failed),
                                    name="fastcheck-vouch")
        checking.start()
        try:
            result = _Judge(lines).result(window, schedules, late_after)
        except Exception as exc:
            checking.join()
            if isinstance(exc, Unvouched) or any(isinstance(e, Unvouched) for e in failed):
                # judged lines the reference reads otherwise: its turn, and its errors
                return check(_events(buf), window, schedules, late_after)
            raise
        checking.join()
        if any(isinstance(e, Unvouched) for e in failed):
            return check(_events(buf), window, schedules, late_after)
        if failed:
            raise failed[0]
        return result


def _vouch(lines: Lines, failed: list[BaseException]) -> None:
    try:
        lines.check_times()
        lines.check_numbers()
        lines.check_details()
    except BaseException as exc:  # the caller's to raise
        failed.append(exc)


def _events(buf: Buffer) -> Iterable[Event]:
    return (decode_line(line) for line in bytes(buf).split(b"\n"))


def _numbered(lines: Lines, k: int, rows: Ints, also: Ints | None = None,
              ordered: bool = True) -> tuple[Ints, Ints]:
    """Field ``k`` of ``rows`` numbered in order of first appearance (see
    ``columns.numbered``), exactly even when two values hash alike."""
    return _numbered_field(lines, k, rows, also, ordered)[:2]


def _numbered_field(lines: Lines, k: int, rows: Ints, also: Ints | None = None,
                    ordered: bool = True) -> tuple[Ints, Ints, Field | None]:
    """``_numbered``, and the field's words if it was numbered by them."""
    field = None
    try:
        field = lines.field(k, rows)
        return (*numbered(field, also, ordered), field)
    except Collision:
        starts, lengths = lines.bounds(k, rows)
        ids, first = numbered_exactly(lines.column(starts, lengths))
        if also is None:
            return ids, first, field
        both = also * max(1, first.size) + ids
        _, first2, inverse = np.unique(both, return_index=True, return_inverse=True)
        return inverse.ravel().astype(np.int64), first2.astype(np.int64), field


class _Judge:
    """The reference's verdicts, as group-bys over the numbered columns."""

    def __init__(self, lines: Lines) -> None:
        self.lines = lines
        starts, lengths = lines.bounds(1)
        word = lines.word(starts, lengths, 0)
        code = np.full(lines.count, _OTHER, dtype=np.int8)
        for c, (name, w) in enumerate(zip(_KINDS, _KIND_WORDS, strict=True)):
            code[(word == np.uint64(w)) & (lengths == len(name))] = c
        fault = code == _FAULT
        self.faults = [decode_line(lines.line(r)) for r in np.flatnonzero(fault).tolist()]
        self.endings = _Endings(self.faults)
        self.rows = np.flatnonzero(~fault)  # every other line makes or adds to a unit
        self.kind = code[self.rows]

    def result(self, window: tuple[float, float], schedules: Sequence[Schedule],
               late_after: float) -> Result:
        lines, rows, kind = self.lines, self.rows, self.kind
        # work_ids, numbered in order of first appearance (the reference's unit order)
        w, first, field = _numbered_field(lines, 2, rows)
        units = first.size
        if field is not None:
            work_ids = field.strings(first)
        else:
            starts_at, lengths = lines.bounds(2, rows[first])
            work_ids = lines.strings(2, starts_at, lengths)

        intent, finish = kind == _INTENT, kind == _FINISH
        acknowledged = np.zeros(units, dtype=bool)
        acknowledged[w[intent]] = True
        finishes = np.bincount(w[finish], minlength=units)

        # due units: the reference's own construction, so sets iterate alike
        start_t, end_t = window
        scheduled_jobs = {s.job: s for s in schedules}
        due: set[str] = set()
        for s in schedules:
            if s.aligned:
                due.update(scheduled_work_id(s.job, t) for t in s.fire_times(start_t, end_t))
        parsed: dict[int, tuple[str, float]] = {}
        if "@" in "".join(work_ids):  # ticks: only their work_ids are parsed
            for i, work_id in enumerate(work_ids):
                if "@" in work_id and (p := parse_scheduled(work_id)) is not None:
                    parsed[i] = p
                    if (p[0] in scheduled_jobs and not scheduled_jobs[p[0]].aligned
                            and start_t <= p[1] < end_t):
                        due.add(work_id)
        is_due = np.zeros(units, dtype=bool)
        is_parsed = np.zeros(units, dtype=bool)
        fire = np.zeros(units)
        skip = np.zeros(units, dtype=bool)  # ticks of warm-up or drain
        for i, (job, when) in parsed.items():
            is_due[i] = work_ids[i] in due
            is_parsed[i] = True
            fire[i] = when
            skip[i] = job in scheduled_jobs and not is_due[i] and not acknowledged[i]

        # executions: (work_id, exec_id) pairs; a start keeps its pair's last event
        runs = np.flatnonzero((kind == _START) | finish | (kind == _REFUSED))
        run_w = w[runs]
        pair, _ = _numbered(lines, 7, rows[runs], also=run_w, ordered=False)
        is_start = kind[runs] == _START
        slow = np.zeros(units, dtype=bool)  # a start without exec_id: the reference's keys
        no_exec = lines.bounds(7, rows[runs[is_start]])[1] == 0
        slow[run_w[is_start][no_exec]] = True
        start_runs = np.flatnonzero(is_start)
        start_pairs = pair[start_runs]
        if start_runs.size:
            order, new = groups(start_pairs.astype(np.uint64),
                                bits=max(1, int(start_pairs.max()).bit_length()))
            last = np.empty(new.size, dtype=bool)  # each pair's last start in commit order
            last[:-1] = new[1:]
            last[-1] = True
            kept_runs = start_runs[order[last]]
        else:
            kept_runs = start_runs
        kept_rows = rows[runs[kept_runs]]
        kept_w = run_w[kept_runs]
        starts = np.bincount(kept_w, minlength=units)
        ended = np.zeros(int(pair.max(initial=-1)) + 1, dtype=bool)
        ended[pair[~is_start]] = True
        open_ = ~ended[pair[kept_runs]]
        interrupted = np.zeros(units, dtype=np.int64)
        unresolved = np.zeros(units, dtype=np.int64)
        if bool(open_.any()):  # the reference's own test, on these starts' events
            hit = np.fromiter(
                (self.endings.interrupted(decode_line(lines.line(r)))
                 for r in kept_rows[open_].tolist()), bool, int(open_.sum()))
            np.add.at(interrupted, kept_w[open_][hit], 1)
            np.add.at(unresolved, kept_w[open_][~hit], 1)
        first_start = np.full(units, np.inf)
        timed = is_parsed[kept_w]  # lateness: scheduled units only
        if bool(timed.any()):
            np.minimum.at(first_start, kept_w[timed], lines.times(kept_rows[timed]))

        instances = self._instances(rows[finish], w[finish], finishes, units)

        verdict = _verdicts(acknowledged | is_due, finishes, unresolved, interrupted)
        keep = ~skip & (verdict != _NONE) & ~slow
        has_lateness = is_parsed & (starts > 0)
        lateness = first_start - fire  # read only where has_lateness
        idx = np.flatnonzero(keep)
        at_idx = idx.tolist()
        every = idx.size == units
        pick: Callable[[list[object]], Iterable[object]] = (
            (lambda xs: xs) if every else (lambda xs: map(xs.__getitem__, at_idx)))
        if bool(has_lateness.any()):
            lat: Iterable[float | None] = [
                v if h else None for v, h in zip(lateness[idx].tolist(),
                                                  has_lateness[idx].tolist(), strict=True)]
        else:
            lat = repeat(None)
        names = np.array(VERDICTS, dtype=object)[verdict[idx]]
        made = list(map(Unit, pick(cast(list[object], work_ids)), _items(names),
                        _items(finishes[idx]), _items(starts[idx]),
                        _items(acknowledged[idx]), _items(is_due[idx]),
                        pick(cast(list[object], instances)), lat))
        codes = np.bincount(verdict[keep], minlength=len(VERDICTS))
        counts = dict(zip(VERDICTS, codes.tolist(), strict=True))
        expected = int((keep & (acknowledged | is_due)).sum())
        executions = int(finishes[keep].sum())
        extra = int(np.maximum(finishes[keep] - 1, 0).sum())
        late = int((keep & is_due & has_lateness & (lateness > late_after)).sum())
        ignored = int((skip & ~slow).sum()) + int((~skip & (verdict == _NONE) & ~slow).sum())
        result_units: dict[str, Unit]
        others: list[Unit] = []
        if bool(slow.any()):
            replayed, slow_ignored = self._replay(np.flatnonzero(slow), w, work_ids,
                                                  is_due, scheduled_jobs)
            ignored += slow_ignored
            others += replayed.values()
            by_id = dict(zip(at_idx, made, strict=True))
            by_id.update(replayed)
            result_units = {u.work_id: u for _, u in sorted(by_id.items())}
        else:
            kept_ids = work_ids if every else map(work_ids.__getitem__, at_idx)
            result_units = _by_work_id(zip(kept_ids, made, strict=True))
        # due and never seen: lost (the reference's expression, so the set iterates alike)
        for work_id in (due - dict.fromkeys(work_ids).keys()) if due else ():
            result_units[work_id] = Unit(work_id, "lost", 0, 0, False, True, (), None)
            others.append(result_units[work_id])
        for u in others:
            counts[u.verdict] += 1
            expected += u.acknowledged or u.due
            executions += u.finishes
            extra += max(0, u.finishes - 1)
            late += u.due and u.lateness is not None and u.lateness > late_after
        return Result(units=result_units, counts=counts, expected=expected,
                      executions=executions, extra_executions=extra,
                      refused=int((kind == _REFUSED).sum()), faults=len(self.faults),
                      ignored=ignored, late=late, marks=tuple(self.faults))

    def _instances(self, rows: Ints, w: Ints, finishes: Ints,
                   units: int) -> list[tuple[str, ...]]:
        """Where each unit finished, in commit order."""
        if not rows.size:
            return [()] * units
        name_ids, first, field = _numbered_field(self.lines, 4, rows, ordered=False)
        if field is not None:
            names = field.strings(first)
        else:
            starts, lengths = self.lines.bounds(4, rows[first])
            names = self.lines.strings(4, starts, lengths)
        single = [(name,) for name in names]
        table = [*single, ()]  # index -1: no finish
        last = np.full(units, -1, dtype=np.int64)
        last[w] = name_ids
        instances = list(map(table.__getitem__, last.tolist()))
        several = np.flatnonzero(finishes[w] >= 2)  # finishes of units that finished twice
        if several.size:
            for wi in np.unique(w[several]).tolist():
                instances[wi] = ()
            for wi, nm in zip(w[several].tolist(), name_ids[several].tolist(), strict=True):
                instances[wi] += single[nm]
        return instances

    def _replay(self, slow: Ints, w: Ints, work_ids: list[str], is_due: Bools,
                scheduled_jobs: dict[str, Schedule]) -> tuple[dict[int, Unit], int]:
        """Units whose starts the reference keys by position: its own per-unit code."""
        accs = {int(i): _Acc() for i in slow.tolist()}
        mine = np.zeros(len(work_ids), dtype=bool)
        mine[slow] = True
        at = np.flatnonzero(mine[w])
        for r, wi in zip(self.rows[at].tolist(), w[at].tolist(), strict=True):
            a = accs[wi]
            e = decode_line(self.lines.line(r))
            if e.kind == "intent":
                a.acknowledged = True
            elif e.kind == "start":
                a.starts[e.exec_id or f"{e.instance}:{e.pid}:{len(a.starts)}"] = e
            elif e.kind == "finish":
                a.finishes.append(e)
                a.ended.add(e.exec_id)
            elif e.kind == "refused":
                a.ended.add(e.exec_id)
        units: dict[int, Unit] = {}
        ignored = 0
        for i, a in accs.items():
            work_id = work_ids[i]
            parsed = parse_scheduled(work_id)
            due = bool(is_due[i])
            if (parsed is not None and parsed[0] in scheduled_jobs and not due
                    and not a.acknowledged):
                ignored += 1
                continue
            lateness = None
            if parsed is not None and a.starts:
                lateness = min(s.t for s in a.starts.values()) - parsed[1]
            verdict = _verdict(a, due, self.endings)
            if verdict is None:
                ignored += 1
                continue
            units[i] = Unit(work_id, verdict, len(a.finishes), len(a.starts), a.acknowledged,
                            due, tuple(f.instance for f in a.finishes), lateness)
        return units, ignored


def _items(column: npt.NDArray[Any]) -> Iterable[Any]:
    """A column's values as Python objects: one, repeated, if they are all the same
    (most units of a history are alike: one start, one finish, acknowledged)."""
    if column.size and column.dtype != object and bool((column == column[0]).all()):
        return repeat(column[0].item())
    return cast(list[Any], column.tolist())


def _by_work_id(items: Iterable[tuple[str, Unit]]) -> dict[str, Unit]:
    """The units by work_id, as ``dict(items)``, built faster: a dict of ``str`` keys
    only keeps no hashes in its entries (CPython), so each probe of a big one reads a
    key's object, a cache miss; one other key first makes it keep them, and it stays so
    once that key is gone. Equal to ``dict(items)``, in the same order."""
    units: dict[object, Unit | None] = {_OTHER_KEY: None}
    units.update(items)
    del units[_OTHER_KEY]
    return cast(dict[str, Unit], units)


_OTHER_KEY = object()


def _verdicts(expected: Bools, finishes: Ints, unresolved: Ints, interrupted: Ints) -> Ints:
    """The reference's decision table, over every unit at once."""
    one = finishes == 1
    doubt = unresolved > 0
    return np.select(
        [finishes >= 2,
         ~expected & (finishes >= 1),
         ~expected & doubt,
         ~expected,
         one & doubt,
         one & (interrupted > 0),
         one,
         doubt],
        [_DUP, _UNEXP, _DOUBT, _NONE, _DOUBT, _REC, _OK, _DOUBT],
        default=_LOST,
    ).astype(np.int64)


__all__ = ["check_buffer", "check_lines", "read_and_check", "read_buffer"]
