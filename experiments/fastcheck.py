"""The fast path of the checker: a ledger history judged as columns, not as events.

``check`` in ``experiments.checker`` is the reference: one ``Event`` per line, one
Python step per event. That costs ~8 µs an event (a million-event history: 8 s), most
of it building objects the verdicts never look at. Here the history stays one byte
buffer (the ledger's lines joined by newlines; ``read_buffer`` joins each LRANGE slice
as it arrives, so per-line objects live only as long as one slice): numpy finds the
separators, cuts the few fields a verdict depends on (kind, work_id, exec_id,
instance, and the time of starts) into fixed-width columns, and the verdicts come from
group-bys over integer ids. What stays per unit is the Result itself.

It gives exactly the reference's ``Result`` — the same units in the same order, the
same counts — which ``tests/unit/test_fastcheck.py`` checks on generated histories:

- a buffer the fast decode does not vouch for (a byte outside printable ASCII, a line
  without exactly ten fields, a number or a detail the reference would parse
  differently or reject) is judged by the reference itself, which then also raises
  what it raises;
- a unit with a ``start`` that has no exec_id (the reference keys it by instance, pid
  and position) is replayed through the reference's own per-unit code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import cast

import numpy as np
import numpy.typing as npt
import redis
from numpy.lib.stride_tricks import sliding_window_view

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
from services import keys
from services.history import Event, decode_line, parse_scheduled, scheduled_work_id
from services.ledger import Ledger

Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]

_FIELDS = 10  # t, kind, work_id, mechanism, instance, pid, attempt, exec_id, detail, run
_CHUNK = 50_000  # lines per Redis call, as Ledger.history reads
_PAD = 512  # widest field cut into a column (work_ids, exec_ids); wider: the reference

# verdict codes, in VERDICTS order; -1: neither expected nor effective (ignored)
_OK, _LOST, _DUP, _REC, _UNEXP, _DOUBT = range(6)
_NONE = -1


class _Unvouched(Exception):
    """The fast decode cannot vouch for this buffer: the reference judges it."""


# --- reading ------------------------------------------------------------------------------
def read_buffer(client: redis.Redis, run: str, start: int = 0) -> tuple[bytes, int] | None:
    """The run's history from list index ``start`` as one newline-joined buffer, and how
    many lines it holds; None if an element holds a newline itself (then only a
    line-by-line read keeps it whole). Each slice of lines is joined as soon as it
    arrives, so the per-line objects of only one slice are alive at a time."""
    key = keys.events(run)
    parts: list[bytes] = []
    index = start
    while lines := cast(list[bytes], client.lrange(key, index, index + _CHUNK - 1)):
        part = _joined(lines)
        if part.count(b"\n") != len(lines) - 1:
            return None
        parts.append(part)
        index += len(lines)
    return b"\n".join(parts), index - start


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
    buf: bytes,
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
            return _Columns(buf, count).judge(window, schedules, late_after)
        except _Unvouched:
            return check(_events(buf), window, schedules, late_after)


def _events(buf: bytes) -> Iterable[Event]:
    return (decode_line(line) for line in buf.split(b"\n"))


# --- the columnar decode -------------------------------------------------------------------
def _table(allowed: bytes) -> Bools:
    """A byte lookup table: True for bytes outside ``allowed`` (NUL, the padding, is in)."""
    table = np.ones(256, dtype=bool)
    table[np.frombuffer(allowed + b"\0", dtype=np.uint8)] = False
    return table


_DIGITS_TAB = _table(b"0123456789\t")
# the bytes of a time: padding, digit, point, exponent or sign, anything else
_PAD_BYTE, _DIGIT, _POINT, _SIGN, _BAD = range(5)
_CLASS = np.full(256, _BAD, dtype=np.uint8)
_CLASS[0] = _PAD_BYTE
_CLASS[np.frombuffer(b"0123456789", dtype=np.uint8)] = _DIGIT
_CLASS[ord(".")] = _POINT
_CLASS[np.frombuffer(b"eE+-", dtype=np.uint8)] = _SIGN


class _Columns:
    """The fields of every line, located by their separators; cut into columns on demand."""

    def __init__(self, buf: bytes, count: int) -> None:
        self.buf = buf
        arr = np.frombuffer(buf, dtype=np.uint8)
        # Printable ASCII and the separators only: the reference decodes these alike.
        if arr.size and int(arr.max()) > 0x7E:
            raise _Unvouched("a non-ASCII byte")
        seps = np.flatnonzero(arr < 0x20)
        if seps.size != _FIELDS * count - 1:
            raise _Unvouched("not ten fields a line")
        grid = np.append(seps, arr.size).reshape(count, _FIELDS)
        # every control byte a tab or a newline, and every tenth one (a line's end) a newline
        if (int(np.count_nonzero(arr == 10)) != count - 1
                or not bool((arr[grid[:-1, -1]] == 10).all())):
            raise _Unvouched("not ten fields a line, or a control byte")
        self.arr = arr
        self.n = count
        self.grid = grid  # row j: the nine tabs of line j, then its end
        self.line_starts = np.concatenate(([0], grid[:-1, -1] + 1))

    def bounds(self, k: int, rows: Ints | None = None) -> tuple[Ints, Ints]:
        """Where field ``k`` of every line (or of ``rows``) begins and ends."""
        grid = self.grid if rows is None else self.grid[rows]
        ends = grid[:, k]
        if k == 0:
            return (self.line_starts if rows is None else self.line_starts[rows]), ends
        return grid[:, k - 1] + 1, ends

    def field(self, k: int, rows: Ints | None = None) -> npt.NDArray[np.bytes_]:
        """Field ``k`` of every line (or of ``rows``) as a fixed-width bytes column."""
        starts, ends = self.bounds(k, rows)
        lengths = ends - starts
        width = max(1, int(lengths.max(initial=0)))
        if width > _PAD:
            raise _Unvouched("a field too wide for a column")
        return self._gather(starts, lengths, width).view(f"S{width}").ravel()

    def line(self, row: int) -> bytes:
        return self.buf[int(self.line_starts[row]):int(self.grid[row, -1])]

    def matrix(self, first: int, last: int) -> npt.NDArray[np.uint8]:
        """Fields ``first`` to ``last`` of every line (tabs between) as a byte matrix,
        padded with NUL."""
        starts = self.bounds(first)[0]
        lengths = self.bounds(last)[1] - starts
        width = max(1, int(lengths.max(initial=0)))
        if width > _PAD:
            raise _Unvouched("a field too wide for a column")
        return self._gather(starts, lengths, width)

    def _gather(self, starts: Ints, lengths: Ints, width: int) -> npt.NDArray[np.uint8]:
        """Rows of ``width`` bytes from ``starts``, NUL past each row's length."""
        last = self.arr.size - width  # a window must end inside the buffer
        if last < 0:
            out = np.zeros((starts.size, width), dtype=np.uint8)
            for i, (s, n) in enumerate(zip(starts.tolist(), lengths.tolist(), strict=True)):
                out[i, :n] = self.arr[s:s + n]
            return out
        # each row one window over the buffer: one gather, no index matrix, no copy
        out = sliding_window_view(self.arr, width)[np.minimum(starts, last)]
        for i in np.flatnonzero(starts > last).tolist():  # the buffer's last few fields
            s, n = int(starts[i]), int(lengths[i])
            out[i] = 0
            out[i, :n] = self.arr[s:s + n]
        if int(lengths.min(initial=width)) < width:  # ledger times all have one width
            out[np.arange(width) >= lengths[:, None]] = 0
        return out

    def times(self, rows: Ints) -> Floats:
        """The times of ``rows``, parsed as ``float()`` would; unvouched where any line's
        time would not parse (the reference parses them all)."""
        raw = self.matrix(0, 0)
        width = raw.shape[1]
        cls = _CLASS[raw]
        if not bool(raw[:, 0].all()):
            raise _Unvouched("an empty time")
        # digits and at most one point, not a lone point: float() takes every one of them
        plain = (not bool((cls >= _SIGN).any())
                 and int(np.count_nonzero(cls == _POINT, axis=1).max()) <= 1
                 and not bool(((raw[:, 0] == ord(".")) & (raw[:, 1] == 0 if width > 1
                                                          else True)).any()))
        if not plain and bool((cls == _BAD).any()):
            raise _Unvouched("a time that is not a number")
        try:  # numpy's parse is float()'s: correctly rounded (exponents and signs too)
            if plain:  # every line's time parses: parse only these
                return np.ascontiguousarray(raw[rows]).view(f"S{width}").ravel().astype(
                    np.float64)
            times: Floats = raw.copy().view(f"S{width}").ravel().astype(np.float64)
        except ValueError:
            raise _Unvouched("a time the reference would reject") from None
        return times[rows]

    def check_fields(self) -> None:
        """What the reference parses but no verdict reads: pid, attempt, detail."""
        raw = self.matrix(5, 6)  # pid TAB attempt
        grid = self.grid
        if (bool(_DIGITS_TAB[raw].any()) or not bool((grid[:, 5] > grid[:, 4] + 1).all())
                or not bool((grid[:, 6] > grid[:, 5] + 1).all())):
            raise _Unvouched("a pid or attempt that is not a plain number")
        starts, ends = self.bounds(8)
        for row in np.flatnonzero(ends > starts).tolist():
            try:
                json.loads(self.buf[int(starts[row]):int(ends[row])])
            except ValueError:
                raise _Unvouched("a detail that is not JSON") from None

    # --- the verdicts ----------------------------------------------------------------------
    def judge(self, window: tuple[float, float], schedules: Sequence[Schedule],
              late_after: float) -> Result:
        self.check_fields()
        kinds = self.field(1)
        fault = kinds == b"fault"
        faults = [decode_line(self.line(r)) for r in np.flatnonzero(fault).tolist()]
        endings = _Endings(faults)
        rows = np.flatnonzero(~fault)
        kind = kinds[rows]
        intent, start = kind == b"intent", kind == b"start"
        finish, refused = kind == b"finish", kind == b"refused"

        # work_ids, numbered in order of first appearance (the reference's unit order)
        w, first = _numbered(self.field(2, rows))
        work_ids = [b.decode() for b in first.tolist()]
        units = len(work_ids)

        acknowledged = np.zeros(units, dtype=bool)
        acknowledged[w[intent]] = True
        finishes = np.bincount(w[finish], minlength=units)

        # executions: (work_id, exec_id) pairs; a start keyed by exec_id keeps its last event
        runs = np.flatnonzero(start | finish | refused)
        xids = self.field(7, rows[runs])
        x, xfirst = _numbered(xids)
        pair = w[runs] * max(1, xfirst.size) + x
        is_start = start[runs]
        slow = np.zeros(units, dtype=bool)  # a start without exec_id: the reference's keys
        slow[w[runs][is_start & (xids == b"")]] = True
        start_runs = np.flatnonzero(is_start)
        order = np.argsort(pair[start_runs], kind="stable")
        spair = pair[start_runs][order]
        last = np.ones(spair.size, dtype=bool)  # the last start of each pair in commit order
        last[:-1] = spair[1:] != spair[:-1]
        kept_pair = spair[last]
        kept_runs = start_runs[order[last]]
        kept_rows = rows[runs[kept_runs]]
        kept_w = w[runs[kept_runs]]
        starts = np.bincount(kept_w, minlength=units)
        kept_t = self.times(kept_rows)
        ended = np.sort(pair[~is_start])
        at = np.minimum(np.searchsorted(ended, kept_pair), max(0, ended.size - 1))
        open_ = ~(ended[at] == kept_pair) if ended.size else np.ones(kept_pair.size, bool)
        interrupted = np.zeros(units, dtype=np.int64)
        unresolved = np.zeros(units, dtype=np.int64)
        if bool(open_.any()):
            names = self.field(4, kept_rows[open_]).tolist()
            hit = np.fromiter((endings.last.get(nm.decode(), -math.inf) >= t
                               for nm, t in zip(names, kept_t[open_].tolist(), strict=True)),
                              bool, len(names))
            np.add.at(interrupted, kept_w[open_][hit], 1)
            np.add.at(unresolved, kept_w[open_][~hit], 1)
        first_start = np.full(units, np.inf)
        np.minimum.at(first_start, kept_w, kept_t)

        # where each unit finished, in commit order
        fin_w = w[finish].tolist()
        names_b = self.field(4, rows[finish]).tolist() if fin_w else []
        single = {b: (b.decode(),) for b in set(names_b)}
        instances = dict(zip(fin_w, map(single.__getitem__, names_b), strict=True))
        several = set(np.flatnonzero(finishes >= 2).tolist())
        if several:  # the dict kept each unit's last finish; gather all of these
            for wi in several:
                instances[wi] = ()
            for wi, nm in zip(fin_w, names_b, strict=True):
                if wi in several:
                    instances[wi] += single[nm]

        # due units: the reference's own construction, so sets iterate alike
        start_t, end_t = window
        scheduled_jobs = {s.job: s for s in schedules}
        due: set[str] = set()
        for s in schedules:
            if s.aligned:
                due.update(scheduled_work_id(s.job, t) for t in s.fire_times(start_t, end_t))
        parsed: dict[int, tuple[str, float]] = {}
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

        verdict = _verdicts(acknowledged | is_due, finishes, unresolved, interrupted)
        keep = ~skip & (verdict != _NONE) & ~slow
        has_lateness = is_parsed & (starts > 0)
        lateness = first_start - fire  # read only where has_lateness
        idx = np.flatnonzero(keep)
        at_idx = idx.tolist()
        lat = [v if h else None for v, h in zip(lateness[idx].tolist(),
                                                  has_lateness[idx].tolist(), strict=True)]
        every = idx.size == units
        made = list(map(Unit, work_ids if every else map(work_ids.__getitem__, at_idx),
                        np.array(VERDICTS, dtype=object)[verdict[idx]].tolist(),
                        finishes[idx].tolist(), starts[idx].tolist(),
                        acknowledged[idx].tolist(), is_due[idx].tolist(),
                        map(instances.get, at_idx, repeat(())), lat))
        fast = keep  # the totals of these units, counted over the columns
        codes = np.bincount(verdict[fast], minlength=len(VERDICTS))
        counts = dict(zip(VERDICTS, codes.tolist(), strict=True))
        expected = int((fast & (acknowledged | is_due)).sum())
        executions = int(finishes[fast].sum())
        extra = int(np.maximum(finishes[fast] - 1, 0).sum())
        late = int((fast & is_due & has_lateness & (lateness > late_after)).sum())
        ignored = int((skip & ~slow).sum()) + int((~skip & (verdict == _NONE) & ~slow).sum())
        result_units: dict[str, Unit]
        others: list[Unit] = []
        if bool(slow.any()):
            replayed, slow_ignored = self._replay(np.flatnonzero(slow), w, rows, work_ids,
                                                  is_due, scheduled_jobs, endings)
            ignored += slow_ignored
            others += replayed.values()
            by_id = dict(zip(at_idx, made, strict=True))
            by_id.update(replayed)
            result_units = {u.work_id: u for _, u in sorted(by_id.items())}
        else:
            kept = work_ids if len(made) == units else map(work_ids.__getitem__, at_idx)
            result_units = dict(zip(kept, made, strict=True))
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
                      refused=int(refused.sum()), faults=len(faults), ignored=ignored,
                      late=late)

    def _replay(self, slow: Ints, w: Ints, rows: Ints, work_ids: list[str], is_due: Bools,
                scheduled_jobs: dict[str, Schedule],
                endings: _Endings) -> tuple[dict[int, Unit], int]:
        """Units whose starts the reference keys by position: its own per-unit code."""
        accs = {int(i): _Acc() for i in slow.tolist()}
        for r, wi in zip(rows.tolist(), w.tolist(), strict=True):
            a = accs.get(wi)
            if a is None:
                continue
            e = decode_line(self.line(r))
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
            verdict = _verdict(a, due, endings)
            if verdict is None:
                ignored += 1
                continue
            units[i] = Unit(work_id, verdict, len(a.finishes), len(a.starts), a.acknowledged,
                            due, tuple(f.instance for f in a.finishes), lateness)
        return units, ignored


def _numbered(col: npt.NDArray[np.bytes_]) -> tuple[Ints, npt.NDArray[np.bytes_]]:
    """Each value's number, counting distinct values in order of first appearance, and
    the distinct values in that order."""
    values, first, inverse = np.unique(col, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    return rank[inverse.ravel()], values[order]


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
