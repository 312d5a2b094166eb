"""APScheduler 4 (4.0.0a6, a pre-release) embedded in every API replica.

What its user guide prescribes for several schedulers ("Using multiple
schedulers"): every replica runs an ``AsyncScheduler`` on one shared SQLAlchemy
data store (PostgreSQL, through asyncpg) and one shared event broker (Redis, the
lab's broker), each with a stable identity — the instance name. Schedules and jobs
are claimed in the data store with ``FOR UPDATE SKIP LOCKED`` and a lease
(``lease_duration``), so the library's claim is that a tick runs once however many
replicas there are.

The tick fires on the lab's common grid (an interval trigger whose start time is a
multiple of the interval since the epoch), so its ``work_id`` is
``tick@<scheduled fire time>`` as for APScheduler 3; the job reads its fire time
from ``current_job``. Every replica adds the same schedule id with
``ConflictPolicy.do_nothing``: the first one creates it, the others join it.

APScheduler 4 and 3 share the import name ``apscheduler``: the pre-release is
installed in its own directory, which the platform puts first on the PYTHONPATH of
replicas that run this module. The module checks that it got the pinned version.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any

from services.ledger import AsyncLedger, Kind, scheduled_work_id
from services.settings import LabSettings

PINNED = "4.0.0a6"  # a pre-release: its README says not for production
MECHANISM = "apscheduler4"
TASK = "tick"
_START_ATTEMPTS = 5

log = logging.getLogger("scalelab.apscheduler4")


class WrongVersion(RuntimeError):
    """APScheduler 3 (the lab's own dependency) was found where 4 was expected."""


def _v4(module: str) -> Any:
    """Import a module of the pinned APScheduler 4 (untyped to mypy, which sees version 3)."""
    found = metadata.version("apscheduler")
    if found != PINNED:
        raise WrongVersion(f"APScheduler {PINNED} (pre-release) expected on the PYTHONPATH, "
                           f"found {found}")
    return importlib.import_module(module)


def asyncpg_url(url: str) -> str:
    """``postgresql://...`` -> the SQLAlchemy URL of the asyncpg driver."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith("postgres"):
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    return f"postgresql+asyncpg://{rest}"


def next_grid_time(interval: float, now: float | None = None) -> datetime:
    """The first fire time at or after now on the grid of multiples of ``interval``."""
    now = time.time() if now is None else now
    return datetime.fromtimestamp(math.ceil(now / interval) * interval, UTC)


class Ticker4:
    """The scheduled job: start, work, finish — all in the ledger, keyed by the fire time."""

    def __init__(self, settings: LabSettings, ledger: AsyncLedger, current_job: Any) -> None:
        self.settings, self.ledger, self._current_job = settings, ledger, current_job

    async def run(self) -> None:
        job = self._current_job.get()
        fire_time: datetime = job.scheduled_fire_time
        work_id = scheduled_work_id(TASK, fire_time.timestamp())
        exec_id = f"{self.settings.instance}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        instance = self.settings.instance
        await self.ledger.record(Kind.START, work_id, MECHANISM, instance, exec_id=exec_id,
                                 detail={"due": fire_time.timestamp(), "job": str(job.id)})
        await asyncio.sleep(self.settings.tick_seconds)
        await self.ledger.record(Kind.FINISH, work_id, MECHANISM, instance, exec_id=exec_id)


@contextlib.asynccontextmanager
async def embedded_scheduler(settings: LabSettings, ledger: AsyncLedger) -> AsyncIterator[None]:
    """Run this replica's AsyncScheduler for as long as the context is open."""
    aps = _v4("apscheduler")
    sqlalchemy_store = _v4("apscheduler.datastores.sqlalchemy")
    redis_broker = _v4("apscheduler.eventbrokers.redis")
    interval_trigger = _v4("apscheduler.triggers.interval")
    from sqlalchemy.ext.asyncio import create_async_engine

    if not settings.datastore_url:
        raise ValueError("the apscheduler4 scheduler needs SCALELAB_DATASTORE_URL (PostgreSQL)")
    ticker = Ticker4(settings, ledger, aps.current_job)
    # Several replicas create the data store's tables at once on a fresh database;
    # PostgreSQL lets one CREATE win and fails the others: such a replica tries again,
    # as a restarted pod would.
    for attempt in range(1, _START_ATTEMPTS + 1):
        engine = create_async_engine(asyncpg_url(settings.datastore_url))
        scheduler = aps.AsyncScheduler(
            sqlalchemy_store.SQLAlchemyDataStore(engine),
            redis_broker.RedisEventBroker(settings.broker_url),
            identity=settings.instance,
            lease_duration=timedelta(seconds=settings.apscheduler4_lease),
        )
        try:
            await scheduler.__aenter__()
        except Exception as exc:
            await engine.dispose()
            if attempt == _START_ATTEMPTS:
                raise
            log.warning("APScheduler 4 data store not started (attempt %d): %s", attempt, exc)
            await asyncio.sleep(random.uniform(0.1, 0.5))
            continue
        break
    try:
        await scheduler.configure_task(TASK, func=ticker.run)
        trigger = interval_trigger.IntervalTrigger(
            seconds=settings.scheduler_interval,
            start_time=next_grid_time(settings.scheduler_interval))
        await scheduler.add_schedule(TASK, trigger, id=TASK,
                                     conflict_policy=aps.ConflictPolicy.do_nothing)
        await scheduler.start_in_background()
        yield
    finally:
        with contextlib.suppress(Exception):  # best effort: the data store may be down
            await scheduler.__aexit__(None, None, None)
        await engine.dispose()
