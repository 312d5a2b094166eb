"""RQ workers, each with RQ's scheduler: the schedule as jobs ``enqueue_at`` their fire times.

RQ has no cron of its own in the worker; what it has is scheduled jobs
(``Queue.enqueue_at``), moved to their queue when due by the scheduler that
``rq worker --with-scheduler`` starts beside each worker. RQ's docs: however many
workers run it, "only one scheduler can be active for a queue at any one time" — a
lock in Redis, refreshed by the holder (its TTL: the scheduler's interval + 60 s).
Users report duplicates when that lock lapses (https://github.com/rq/rq/issues/1354,
/1531 and /2338), and
the job of a killed worker is not run again: it ends in the failed job registry when
the started registry is cleaned (https://github.com/rq/rq/issues/2015).

The schedule: the first instance to start (a ``SET NX`` on the broker) enqueues one
job per fire time for the next ``SEED_AHEAD`` seconds, each with its fire time in its
job id and as its argument. The ticks live in the broker Redis only, as RQ keeps
them: a broker that comes back empty has no schedule left.
"""

from __future__ import annotations

import math
import os
import time
from datetime import UTC, datetime

from redis import Redis
from rq import Queue, Worker, get_current_job

from services import keys
from services.ledger import Ledger
from services.settings import LabSettings, load_settings
from services.ticks import run_tick, whole_seconds

MECHANISM = "rq"
QUEUE = "scalelab"
SEED_AHEAD = 900.0  # seconds of schedule the first instance enqueues (longer than any run)


def tick(fire_time: float) -> None:
    """The job (run in RQ's work horse): the lab's tick for its fire time."""
    settings = load_settings()
    ledger = Ledger.from_url(settings.ledger_url)
    job = get_current_job()
    try:
        run_tick(ledger, MECHANISM, settings.instance, fire_time, settings.tick_seconds,
                 attempt=1, detail={"job": job.id if job else ""})
        for run_id, count in ledger.recorded.items():  # this work horse's own events
            ledger.report_counts(run_id, f"{settings.instance}:{os.getpid()}", count)
    finally:
        ledger.client.close()


def seed(queue: Queue, interval: float, now: float) -> int:
    """Enqueue the ticks due from ``now`` for ``SEED_AHEAD`` seconds; how many. The seeding
    instance announces itself after this, so every tick of a run is in the schedule."""
    first = math.ceil(now / interval) * interval
    count = int(SEED_AHEAD / interval)
    for i in range(count):
        fire = first + i * interval
        queue.enqueue_at(datetime.fromtimestamp(fire, UTC), tick, fire,
                         job_id=f"tick-{int(fire * 1000)}", result_ttl=60)
    return count


def run(settings: LabSettings) -> None:
    """Seed the schedule (first instance only), announce, work with the scheduler."""
    whole_seconds(settings.scheduler_interval, MECHANISM)
    redis = Redis.from_url(settings.broker_url, socket_connect_timeout=5)
    queue = Queue(QUEUE, connection=redis)
    if redis.set(keys.RQ_SEEDED, settings.instance, nx=True):
        seed(queue, settings.scheduler_interval, time.time())
    ledger = Ledger.from_url(settings.ledger_url)
    ledger.announce(settings.instance, MECHANISM)
    ledger.client.close()
    worker = Worker([queue], connection=redis)
    worker.work(with_scheduler=True, logging_level="WARNING")
