"""The API's embedded AsyncIOScheduler and its one job, the tick.

The tick fires at wall-clock-aligned times (an interval trigger whose start date
is a fixed epoch), as real periodic jobs do, so every replica's tick for the same
period carries the same ``work_id``: ``tick@<scheduled fire time>``. The
``per-instance`` variant starts the interval at each process's own start instead,
which fires at a different phase per replica and hides duplicates from a per-tick
lock as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from services.api.guards import TickGuard
from services.ledger import AsyncLedger, Kind, scheduled_work_id
from services.settings import LabSettings

JOB = "tick"
MECHANISM = "apscheduler"
ALIGNMENT_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # the grid beat uses too

# APScheduler 3 does not hand a job its scheduled run time; the executor creates the
# job's task, and an asyncio task copies the context it is created in, so the run
# times set here are what that task sees.
_run_times: contextvars.ContextVar[list[datetime]] = contextvars.ContextVar("run_times")


class FireTimeExecutor(AsyncIOExecutor):  # type: ignore[misc]
    """AsyncIOExecutor that lets the job read the fire time it was scheduled for."""

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        token = _run_times.set(run_times)
        try:
            super()._do_submit_job(job, run_times)
        finally:
            _run_times.reset(token)


class Ticker:
    """The scheduled job: ask the guard, then start, work, finish — all in the ledger."""

    def __init__(self, settings: LabSettings, ledger: AsyncLedger, guard: TickGuard) -> None:
        self.settings, self.ledger, self.guard = settings, ledger, guard

    async def run(self) -> None:
        fire_time = _run_times.get()[-1]  # coalesced: the latest due time is the one run
        work_id = scheduled_work_id(JOB, fire_time.timestamp())
        permit = await self.guard.permit(work_id)
        if permit is None:
            return
        exec_id = f"{self.settings.instance}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        detail = {"due": fire_time.timestamp()}
        if permit.note:
            detail["note"] = permit.note  # type: ignore[assignment]
        instance = self.settings.instance
        await self.ledger.record(Kind.START, work_id, MECHANISM, instance, exec_id=exec_id,
                                 detail=detail)
        await asyncio.sleep(self.settings.tick_seconds)
        await self.ledger.record(Kind.FINISH, work_id, MECHANISM, instance, exec_id=exec_id,
                                 fence=permit.fence)


def build_scheduler(settings: LabSettings, ticker: Ticker) -> AsyncIOScheduler:
    start = ALIGNMENT_EPOCH if settings.scheduler_align == "aligned" else None
    scheduler = AsyncIOScheduler(
        executors={"default": FireTimeExecutor()},
        job_defaults={"coalesce": settings.coalesce,
                      "misfire_grace_time": settings.misfire_grace},
        timezone=UTC,
    )
    trigger = IntervalTrigger(seconds=settings.scheduler_interval, start_date=start, timezone=UTC)
    scheduler.add_job(ticker.run, trigger, id=JOB, name=JOB)
    return scheduler


@contextlib.asynccontextmanager
async def running(settings: LabSettings, ticker: Ticker) -> AsyncIterator[None]:
    """The replica's scheduler, started for as long as the context is open."""
    scheduler = build_scheduler(settings, ticker)
    scheduler.start()
    try:
        yield
    finally:
        if scheduler.running:
            scheduler.shutdown(wait=False)
