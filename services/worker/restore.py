"""The worker's restore sweep of unacknowledged messages, at the lab's own cadence.

kombu's Redis transport requeues a delivered message that was not acknowledged within
the visibility timeout, but only when a consuming worker sweeps: kombu 5.7 sweeps
every ``unacked_restore_interval`` x ``unacked_restore_throttle`` (the lab sets both,
see ``services.worker.app``); kombu 5.6 ignores those options and sweeps every 100 s
(a 10 s timer, every tenth call scans). This consumer step sweeps every
``unacked_restore_interval`` seconds whatever the kombu version, with kombu's own
``restore_visible`` under its own mutex, so the timeout alone says when a message
comes back. A sweep that cannot reach the broker is skipped: the next one tries again.
"""

from __future__ import annotations

import contextlib
from typing import Any

from celery import bootsteps
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError


class RestoreSweep(bootsteps.StartStopStep):  # type: ignore[misc]  # celery is untyped
    """Sweep the unacked index every ``unacked_restore_interval`` seconds."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.timer_ref: Any = None

    def start(self, c: Any) -> None:
        interval = c.app.lab.settings.unacked_restore_interval
        self.timer_ref = c.timer.call_repeatedly(interval, self.sweep, (c,), priority=10)

    def stop(self, c: Any) -> None:
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None

    def sweep(self, c: Any) -> None:
        consumer = c.task_consumer
        if consumer is None:
            return
        channel = consumer.channel
        with contextlib.suppress(RedisError, OperationalError, OSError):
            channel.qos.restore_visible(num=channel.unacked_restore_limit, interval=1)
