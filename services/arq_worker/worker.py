"""arq workers with a ``cron`` job: arq's own answer to "several replicas, one tick".

Every worker runs the same cron job and enqueues each due run on the broker Redis
with a job id made from the fire time (``cron:tick:<unix ms>``; ``unique=True``,
arq's default). arq's documentation claims such a job "will only be run once even
if multiple workers are running": a second enqueue of the same id is refused while
the job is queued or running (arq #432). The tick records ``start``/``finish`` in
the ledger with the lab's ``tick@<fire time>`` work id, the fire time read back
from the job id, so a tick run late or twice is counted as what it is.

The cron grid: ``second`` = the multiples of the interval in a minute and
``microsecond=0`` (arq's default is 123456), so the fire times are the lab's
common grid of whole seconds since the epoch.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

from arq.connections import RedisSettings
from arq.cron import cron
from arq.worker import Worker

from services.ledger import AsyncLedger, Kind, scheduled_work_id
from services.settings import LabSettings

MECHANISM = "arq"
JOB = "tick"
CRON_NAME = f"cron:{JOB}"  # arq's own naming of a cron job


def cron_seconds(interval: float) -> set[int]:
    """The seconds of a minute at which a tick on the lab's grid is due."""
    whole = int(interval)
    if whole != interval or whole < 1 or 60 % whole:
        raise ValueError(f"arq cron needs an interval of whole seconds dividing 60, "
                         f"not {interval:g}")
    return set(range(0, 60, whole))


def fire_time_of(job_id: str) -> float:
    """``cron:tick:1700000000000`` -> 1700000000.0 (arq puts the fire time in ms there)."""
    return int(job_id.rpartition(":")[2]) / 1000


async def tick(ctx: dict[str, Any]) -> None:
    """The cron job: start, work, finish — all in the ledger."""
    settings: LabSettings = ctx["settings"]
    ledger: AsyncLedger = ctx["ledger"]
    fire_time = fire_time_of(str(ctx["job_id"]))
    work_id = scheduled_work_id(JOB, fire_time)
    exec_id = f"{settings.instance}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    await ledger.record(Kind.START, work_id, MECHANISM, settings.instance, exec_id=exec_id,
                        attempt=int(ctx.get("job_try") or 1),
                        detail={"due": fire_time, "job": str(ctx["job_id"])})
    await asyncio.sleep(settings.tick_seconds)
    await ledger.record(Kind.FINISH, work_id, MECHANISM, settings.instance, exec_id=exec_id,
                        attempt=int(ctx.get("job_try") or 1))


def build_worker(settings: LabSettings) -> Worker:
    """An arq Worker whose cron job is the tick, with arq's defaults otherwise."""
    ledger = AsyncLedger.from_url(settings.ledger_url)

    async def on_startup(ctx: dict[str, Any]) -> None:
        await ledger.announce(settings.instance, "arq")

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        try:
            await ledger.report_counts(settings.instance)
        finally:
            await ledger.aclose()

    return Worker(
        cron_jobs=[cron(tick, name=CRON_NAME, second=cron_seconds(settings.scheduler_interval),
                        microsecond=0, unique=True)],
        redis_settings=RedisSettings.from_dsn(settings.broker_url),
        ctx={"settings": settings, "ledger": ledger},
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        handle_signals=True,
    )
