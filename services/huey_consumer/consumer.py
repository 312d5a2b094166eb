"""Huey consumers on the broker Redis, each enqueuing the periodic tick unless told not to.

Huey's promise is the matrix's at-most-once contrast: its docs say it does not offer
at-least-once delivery — a task is taken off the queue before it runs, so a consumer
killed mid-task loses it. And every consumer's scheduler enqueues each due periodic
task: "only one consumer" should run with periodic tasks on, every other one with
``-n``/``--no-periodic`` (Huey's docs, "Multiple consumers";
https://github.com/coleifer/huey/issues/716). Component ``huey`` runs with periodic
tasks unless ``huey_no_periodic``;
component ``huey-periodic`` always runs them (the one consumer of that fix).

One change to Huey's timing, so a run of seconds sees many fire times: its scheduler
checks the periodic tasks every ``scheduler_interval`` instead of every 60 s (the
``Scheduler.periodic_task_seconds`` class attribute), its checks on a wall-clock
phase of the lab's grid. Each check still enqueues each due periodic task once per
consumer, as Huey's does every minute. The fire time of a check (the grid time it
falls in) is the task's argument, so the tick's work id is ``tick@<fire time>``.
"""

from __future__ import annotations

import datetime
import math
import time
from typing import Any

from huey import RedisHuey
from huey.api import Task
from huey.consumer import Consumer, Scheduler

from services.ledger import Ledger
from services.settings import LabSettings
from services.ticks import run_tick, whole_seconds

MECHANISM = "huey"
PHASE = 0.1  # seconds past a grid time at which each periodic check runs


class LabHuey(RedisHuey):  # type: ignore[misc]
    """Huey on Redis whose periodic tasks carry the fire time they were enqueued for."""

    interval = 1.0

    def read_periodic(self, timestamp: datetime.datetime | None) -> list[Task]:
        now = time.time() if timestamp is None else (
            timestamp.replace(tzinfo=datetime.UTC).timestamp())
        tasks: list[Task] = super().read_periodic(timestamp)
        for task in tasks:
            task.kwargs = {"fire_time": math.floor(now / self.interval) * self.interval}
        return tasks


def scheduler_class(interval: float) -> type[Scheduler]:
    """Huey's scheduler, checking the periodic tasks every ``interval`` on the grid's phase."""

    class LabScheduler(Scheduler):  # type: ignore[misc]
        periodic_task_seconds = interval

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            wall = time.time()
            start = float(vars(self)["_next_loop"])  # set by huey, untyped
            aligned = start + math.ceil(wall / interval) * interval - wall + PHASE
            # the loop sleeps until its previous start + interval: this first one ends
            # at the phase, where the first periodic check is due
            self._next_loop = aligned - interval
            self._next_periodic = aligned

    return LabScheduler


def build(settings: LabSettings) -> tuple[LabHuey, Consumer]:
    """The Huey app with the periodic tick, and its consumer (one worker thread)."""
    interval = whole_seconds(settings.scheduler_interval, MECHANISM)
    huey = LabHuey("scalelab", url=settings.broker_url, blocking=True, read_timeout=0.5)
    huey.interval = float(interval)

    @huey.periodic_task(lambda dt: True, name="tick")  # type: ignore[untyped-decorator]
    def tick(fire_time: float) -> None:
        ledger = Ledger.from_url(settings.ledger_url)
        try:
            run_tick(ledger, MECHANISM, settings.instance, fire_time, settings.tick_seconds)
        finally:
            ledger.client.close()

    periodic = settings.component == "huey-periodic" or not settings.huey_no_periodic

    class LabConsumer(Consumer):  # type: ignore[misc]
        scheduler_class = scheduler_class(float(interval))

    consumer = LabConsumer(huey, workers=1, worker_type="thread", periodic=periodic,
                           scheduler_interval=interval, initial_delay=0.05, max_delay=0.1)
    return huey, consumer


def run(settings: LabSettings) -> None:
    """Announce the instance, then consume until a signal stops the consumer."""
    _, consumer = build(settings)
    ledger = Ledger.from_url(settings.ledger_url)
    periodic = consumer.periodic
    ledger.announce(settings.instance, settings.component, periodic=periodic)
    ledger.client.close()
    consumer.run()
