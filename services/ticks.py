"""The tick the task queues of the fixes matrix run: ``start``, work, ``finish`` in the ledger.

Each mechanism (procrastinate, RQ, Huey, Dramatiq, Taskiq) calls its periodic job
with the fire time it was due at, and that job is this one: it records ``start`` and
``finish`` with the lab's ``tick@<fire time>`` work id, so a tick run late, twice or
never is counted as what it is, whichever library ran it.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

from services.ledger import AsyncLedger, Kind, Ledger, scheduled_work_id

JOB = "tick"


def whole_seconds(interval: float, mechanism: str) -> int:
    """The interval as whole seconds dividing 60 (a cron grid), or ValueError."""
    whole = int(interval)
    if whole != interval or whole < 1 or 60 % whole:
        raise ValueError(f"{mechanism} needs an interval of whole seconds dividing 60, "
                         f"not {interval:g}")
    return whole


def on_grid(t: float, interval: float) -> float:
    """The fire time of the lab's grid nearest ``t`` (multiples of the interval)."""
    return round(t / interval) * interval


def _exec_id(instance: str) -> str:
    return f"{instance}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run_tick(ledger: Ledger, mechanism: str, instance: str, fire_time: float, seconds: float,
             *, attempt: int = 1, detail: dict[str, Any] | None = None) -> None:
    """The tick, blocking: start, ``seconds`` of work, finish."""
    work_id, exec_id = scheduled_work_id(JOB, fire_time), _exec_id(instance)
    ledger.record(Kind.START, work_id, mechanism, instance, exec_id=exec_id, attempt=attempt,
                  detail={"due": fire_time, **(detail or {})})
    time.sleep(seconds)
    ledger.record(Kind.FINISH, work_id, mechanism, instance, exec_id=exec_id, attempt=attempt)


async def run_tick_async(ledger: AsyncLedger, mechanism: str, instance: str,
                         fire_time: float, seconds: float, *, attempt: int = 1,
                         detail: dict[str, Any] | None = None) -> None:
    """The tick on an event loop: start, ``seconds`` of work, finish."""
    work_id, exec_id = scheduled_work_id(JOB, fire_time), _exec_id(instance)
    await ledger.record(Kind.START, work_id, mechanism, instance, exec_id=exec_id,
                        attempt=attempt, detail={"due": fire_time, **(detail or {})})
    await asyncio.sleep(seconds)
    await ledger.record(Kind.FINISH, work_id, mechanism, instance, exec_id=exec_id,
                        attempt=attempt)
