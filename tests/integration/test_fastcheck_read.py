"""The fast path reads a run's history from a real ledger Redis exactly as it was
written, slice after slice, and judges it as the reference does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from experiments import fastcheck
from experiments.checker import check
from experiments.fastcheck import read_and_check, read_buffer
from services.ledger import Ledger, events_key
from tests.conftest import redis_server

RUN = "fast-read"


@pytest.fixture
def ledger(lab_tag: str, tmp_path: Path) -> Iterator[redis.Redis]:
    with redis_server("ledger", lab_tag, tmp_path) as server:
        client = redis.Redis.from_url(server.url)
        yield client
        client.close()


def history(units: int) -> list[bytes]:
    """Lines that get longer as they go: the buffer outgrows its first estimate."""
    lines = []
    for i in range(units):
        work_id = f"task-{i}-" + "x" * (i * 3)
        lines.append(f"{1000 + i}.000000\tintent\t{work_id}\tcelery\tharness\t1\t1\t\t\t{RUN}")
        lines.append(f"{1000 + i}.500000\tstart\t{work_id}\tcelery\tworker-1\t7\t1\te{i}\t\t{RUN}")
        if i % 5:
            lines.append(f"{1001 + i}.000000\tfinish\t{work_id}\tcelery\tworker-1\t7\t1\te{i}"
                         f"\t\t{RUN}")
    return [line.encode() for line in lines]


def test_slices_are_read_back_whole_and_judged_as_the_reference_does(
        ledger: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastcheck, "_CHUNK", 7)  # many slices, each longer than the last
    lines = history(40)
    ledger.rpush(events_key(RUN), *lines)
    read = read_buffer(ledger, RUN)
    assert read is not None
    assert bytes(read[0]) == b"\n".join(lines) and read[1] == len(lines)
    tail = read_buffer(ledger, RUN, start=10)
    assert tail is not None and bytes(tail[0]) == b"\n".join(lines[10:])
    reference = check(Ledger(ledger).history(RUN))
    assert repr(read_and_check(ledger, RUN)) == repr(reference)
    assert reference.counts["in_doubt"] == 8 and reference.counts["ok"] == 32


def test_a_line_holding_a_newline_is_read_line_by_line(ledger: redis.Redis) -> None:
    lines = history(3)
    lines[1] = lines[1].replace(b"\t\t" + RUN.encode(), b'\t{"a":"x\ny"}\t' + RUN.encode())
    ledger.rpush(events_key(RUN), *lines)
    assert read_buffer(ledger, RUN) is None
    with pytest.raises(ValueError):  # what the reference makes of such a line
        check(Ledger(ledger).history(RUN))
    with pytest.raises(ValueError):
        read_and_check(ledger, RUN)


def test_an_empty_run(ledger: redis.Redis) -> None:
    read = read_buffer(ledger, RUN)
    assert read is not None and bytes(read[0]) == b"" and read[1] == 0
    assert read_and_check(ledger, RUN).counts == check([]).counts
