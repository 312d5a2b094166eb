"""procrastinate workers with a periodic task: PostgreSQL's answer to "several replicas, one tick".

Every worker runs procrastinate's periodic deferrer, and each defers every due run of
the periodic task; the database keeps one: the defer of a job already deferred for
the same task, periodic id and fire time is refused (a unique key on
``procrastinate_periodic_defers``;
https://github.com/procrastinate-org/procrastinate/issues/289). The task gets its fire
time as ``timestamp``, which becomes the lab's ``tick@<fire time>`` work id.

What the lab measured beyond that: each defer also deletes the rows of earlier fire
times (``procrastinate_defer_periodic_job`` in its schema.sql), so a worker that
was paused and catches up on the fire times it missed (up to ten minutes back) finds
no row to conflict with, and those ticks run a second time.

What the docs also say: a worker killed with SIGKILL leaves its job ``doing``, and
"these stalled jobs will remain in the queue forever" unless something retries them
(the "Retry stalled jobs" how-to;
https://github.com/procrastinate-org/procrastinate/issues/307). ``stalled_retry`` adds
that how-to's periodic task: jobs of workers whose heartbeat is older than
``stalled_after`` seconds go back to the queue.

The cron has an optional sixth field for seconds (procrastinate docs, "Launch a task
periodically": as frequent as once a second), so ticks fall on the lab's grid.
"""

from __future__ import annotations

import asyncio
from typing import Any

import procrastinate
import psycopg
from procrastinate.schema import SchemaManager

from services.ledger import AsyncLedger
from services.settings import LabSettings
from services.ticks import run_tick_async, whole_seconds

MECHANISM = "procrastinate"
# Any constant: every worker applies the schema under this PostgreSQL advisory lock, once.
SCHEMA_LOCK = 0x5CA1E1AB
HEARTBEAT = 0.5  # seconds between a worker's heartbeats (procrastinate's default: 10)


def cron(interval: float) -> str:
    """Every ``interval`` seconds: procrastinate's cron with the seconds field last."""
    whole = whole_seconds(interval, MECHANISM)
    return f"* * * * * */{whole}"


def apply_schema(url: str) -> None:
    """Create procrastinate's tables once, whichever worker comes first."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        try:
            row = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
            if row is None or row[0] is None:
                conn.execute(SchemaManager.get_schema())
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))


def build_app(settings: LabSettings, ledger: AsyncLedger) -> procrastinate.App:
    """The app: the periodic tick, and (``stalled_retry``) the stalled-jobs retry."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(
        conninfo=settings.datastore_url, min_size=1, max_size=4))

    @app.periodic(cron=cron(settings.scheduler_interval), periodic_id=JOB_ID)
    @app.task(name=JOB_ID, pass_context=True)
    async def tick(context: procrastinate.JobContext, timestamp: int) -> None:
        job = context.job
        await run_tick_async(ledger, MECHANISM, settings.instance, float(timestamp),
                             settings.tick_seconds, attempt=int(job.attempts or 0) + 1,
                             detail={"job": job.id})

    if settings.stalled_retry:
        @app.periodic(cron=cron(1.0), periodic_id="retry-stalled")
        @app.task(name="retry-stalled", queueing_lock="retry-stalled")
        async def retry_stalled(timestamp: int) -> None:
            for job in await app.job_manager.get_stalled_jobs(
                    seconds_since_heartbeat=settings.stalled_after):
                await app.job_manager.retry_job(job)

    return app


JOB_ID = "tick"


async def run(settings: LabSettings) -> None:
    """Apply the schema, announce the instance, run the worker until SIGTERM."""
    await asyncio.to_thread(apply_schema, settings.datastore_url)
    ledger = AsyncLedger.from_url(settings.ledger_url)
    app = build_app(settings, ledger)
    options: dict[str, Any] = {"name": settings.instance, "concurrency": 1,
                               "update_heartbeat_interval": HEARTBEAT,
                               "fetch_job_polling_interval": 0.2,
                               "shutdown_graceful_timeout": 1.0}
    try:
        async with app.open_async():
            await ledger.announce(settings.instance, MECHANISM)
            await app.run_worker_async(**options)
    finally:
        try:
            await ledger.report_counts(settings.instance)
        finally:
            await ledger.aclose()
