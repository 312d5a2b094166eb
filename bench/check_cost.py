"""2. Check cost: read a history back with ``Ledger.history`` and judge it with ``check``.

The history is written straight into a private ledger Redis as the lines the record
script appends (RPUSH in batches; the write path is section 1's), shaped like a
Celery run: every unit has intent, start and finish; one unit in 100 carries a
JSON detail; every ``kill_every``-th unit is killed mid-run (a kill fault, then a
second start and finish elsewhere). The main series kills one unit in 2000 (a
fault every ~6000 events); a fault-heavy series (one unit in 50) shows how the
checker's cost grows with the number of faults. Reading is timed in two parts as
well: LRANGE alone (the wire and hiredis) and the whole of ``Ledger.history``
(LRANGE + ``decode_line``). The lab's own path — what ``scalelab run`` calls
(``experiments.fastcheck.read_history``: LRANGE slices joined into one buffer, then
``History.check``: the fast checker, the reference where it does not vouch) — then
reads and judges the same history, timed the same way; its Result is compared with
the reference's (``fast_same_result``).
"""

from __future__ import annotations

import gc
from typing import Any

from bench.common import Stopwatch, redis_server
from experiments.checker import check
from experiments.fastcheck import read_history
from services.ledger import Ledger, encode_payload, events_key

RUN = "bench-check"
T0 = 1_900_000_000.0


def history_lines(events: int, kill_every: int = 2000) -> list[str]:
    """About ``events`` ledger lines, as the record script writes them, in commit order."""
    lines: list[str] = []
    t = T0
    unit = 0

    def add(kind: str, work_id: str, instance: str, exec_id: str,
            detail: dict[str, Any] | None = None, mechanism: str = "celery") -> None:
        nonlocal t
        t += 0.0001
        payload = encode_payload(work_id, mechanism, instance, 4242, 1, exec_id, detail)
        lines.append(f"{t:.6f}\t{kind}\t{payload}\t{RUN}")

    while len(lines) < events:
        work_id = f"task-{unit:08d}"
        worker = f"worker-{unit % 4 + 1}"
        detail = {"queue": "celery", "n": unit} if unit % 100 == 0 else None
        add("intent", work_id, "harness", "", detail)
        add("start", work_id, worker, f"{work_id}:1")
        if unit % kill_every == 7:
            add("fault", worker, worker, "", {"action": "kill"}, mechanism="kill")
            other = f"worker-{(unit + 1) % 4 + 1}"
            add("start", work_id, other, f"{work_id}:2")
            add("finish", work_id, other, f"{work_id}:2")
        else:
            add("finish", work_id, worker, f"{work_id}:1")
        unit += 1
    return lines


def _measure(ledger: Ledger, size: int, kill_every: int) -> dict[str, Any]:
    client = ledger.client
    key = events_key(RUN)
    client.delete(key)
    lines = history_lines(size, kill_every)
    with Stopwatch() as write:
        pipe = client.pipeline(transaction=False)
        for i in range(0, len(lines), 10_000):
            pipe.rpush(key, *lines[i:i + 10_000])
            if i % 100_000 == 0:
                pipe.execute()
        pipe.execute()
    n = len(lines)
    del lines
    gc.collect()
    with Stopwatch() as lrange:
        index = 0
        while chunk := client.lrange(key, index, index + 49_999):
            index += len(chunk)
    del chunk
    with Stopwatch() as read:
        events = list(ledger.history(RUN))
    assert len(events) == n, (len(events), n)
    window = (T0, events[-1].t + 1)
    with Stopwatch() as judged:
        result = check(events, window)
    counts = result.counts
    reference = repr(result)
    del events, result
    gc.collect()
    # the lab's path (what the runner calls), same history: one buffer per LRANGE slice,
    # columns, group-bys (experiments.fastcheck.read_history, History.check)
    with Stopwatch() as fast_read:
        history = read_history(ledger, RUN)
    assert history.buffer is not None
    with Stopwatch() as fast_judged:
        fast = history.check(window)
    same = repr(fast) == reference
    del history, fast, reference
    gc.collect()
    client.delete(key)
    total = read.seconds + judged.seconds
    return {
        "events": n,
        "kill_every_units": kill_every,
        "write_seconds": round(write.seconds, 3),
        "lrange_seconds": round(lrange.seconds, 3),
        "read_seconds": round(read.seconds, 3),
        "read_events_per_second": round(n / read.seconds),
        "decode_seconds": round(read.seconds - lrange.seconds, 3),
        "check_seconds": round(judged.seconds, 3),
        "check_events_per_second": round(n / judged.seconds),
        "read_and_check_seconds": round(total, 3),
        "read_and_check_us_per_event": round(total / n * 1e6, 3),
        "verdicts": counts,
        "fast_read_seconds": round(fast_read.seconds, 3),
        "fast_check_seconds": round(fast_judged.seconds, 3),
        "fast_read_and_check_seconds": round(fast_read.seconds + fast_judged.seconds, 3),
        "fast_same_result": same,
        # this process's CPU time: what the reading and judging cost, whatever the load
        "read_and_check_cpu_seconds": round(read.cpu_seconds + judged.cpu_seconds, 3),
        "fast_read_and_check_cpu_seconds": round(fast_read.cpu_seconds
                                                 + fast_judged.cpu_seconds, 3),
    }


def _series(ledger: Ledger, sizes: tuple[int, ...], kill_every: int) -> list[dict[str, Any]]:
    rows = [_measure(ledger, size, kill_every) for size in sizes]
    base = rows[0]["read_and_check_us_per_event"]
    fast_base = rows[0]["fast_read_and_check_seconds"] / rows[0]["events"]
    for row in rows:  # 1.0 = linear; above 1 the cost per event grows with the history
        row["per_event_cost_vs_smallest"] = round(row["read_and_check_us_per_event"] / base, 2)
        row["fast_per_event_cost_vs_smallest"] = round(
            row["fast_read_and_check_seconds"] / row["events"] / fast_base, 2)
    return rows


def run(sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000),
        heavy: tuple[int, ...] = (10_000, 100_000, 200_000)) -> dict[str, Any]:
    with redis_server() as client:
        ledger = Ledger(client)
        rows = _series(ledger, sizes, kill_every=2000)
        heavy_rows = _series(ledger, heavy, kill_every=50)
    largest = rows[-1]
    return {"sizes": rows, "fault_heavy": heavy_rows, "largest": largest["events"],
            "largest_fast_read_and_check_seconds": largest["fast_read_and_check_seconds"],
            "largest_read_and_check_cpu_seconds": largest["read_and_check_cpu_seconds"],
            "largest_fast_read_and_check_cpu_seconds":
                largest["fast_read_and_check_cpu_seconds"],
            "largest_fast_read_seconds": largest["fast_read_seconds"],
            "largest_fast_check_seconds": largest["fast_check_seconds"],
            "fast_same_result_everywhere": all(r["fast_same_result"]
                                               for r in rows + heavy_rows),
            "largest_read_and_check_seconds": largest["read_and_check_seconds"],
            "largest_read_seconds": largest["read_seconds"],
            "largest_check_seconds": largest["check_seconds"]}
