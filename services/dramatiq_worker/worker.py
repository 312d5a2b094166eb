"""Dramatiq workers on the broker Redis: the schedule as delayed messages.

Dramatiq acknowledges a message after its actor finishes (its docs, "Message
acknowledgement"): a worker killed mid-message leaves it unacknowledged, and the
Redis broker puts it back on its queue once that worker's heartbeat is older than
``heartbeat_timeout`` (60 s by default), found by a queue maintenance run
(work is requeued while its worker is only slow:
https://github.com/Bogdanp/dramatiq/issues/527). Delayed
messages wait in a delay queue until due, held by a worker's delay consumer
(delayed messages can be delivered twice:
https://github.com/Bogdanp/dramatiq/issues/431). Dramatiq has no scheduler of its own; its
docs point to periodiq, which is "single process" and minute-grained, so the lab
sends the schedule ahead instead: the first instance to start (a ``SET NX`` on the
broker) sends one delayed message per fire time for the next ``SEED_AHEAD`` seconds,
the fire time its argument. Each worker holds one message and one delayed message at
a time (``dramatiq_queue_prefetch`` and ``dramatiq_delay_queue_prefetch`` = 1, set by
the entry point).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from types import FrameType

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage

from services import keys
from services.ledger import Ledger
from services.settings import LabSettings
from services.ticks import run_tick, whole_seconds

MECHANISM = "dramatiq"
QUEUE = "scalelab"
SEED_AHEAD = 900.0  # seconds of schedule the first instance sends (longer than any run)


def build(settings: LabSettings) -> tuple[RedisBroker, dramatiq.Actor]:  # type: ignore[type-arg]
    """The broker (this lab's heartbeat timeout) and the tick actor."""
    broker = RedisBroker(url=settings.broker_url,  # type: ignore[no-untyped-call]
                         heartbeat_timeout=int(settings.heartbeat_timeout * 1000))
    broker.add_middleware(CurrentMessage())
    dramatiq.set_broker(broker)
    ledger = Ledger.from_url(settings.ledger_url)

    @dramatiq.actor(queue_name=QUEUE, actor_name="tick", max_retries=0)
    def tick(fire_time: float) -> None:
        message = CurrentMessage.get_current_message()
        run_tick(ledger, MECHANISM, settings.instance, fire_time, settings.tick_seconds,
                 detail={"message": message.message_id if message else ""})

    return broker, tick


def seed(tick: dramatiq.Actor, interval: float, now: float) -> int:  # type: ignore[type-arg]
    """Send the ticks due from ``now`` for ``SEED_AHEAD`` seconds; how many. The seeding
    instance announces itself after this, so every tick of a run is in the schedule."""
    first = math.ceil(now / interval) * interval
    count = int(SEED_AHEAD / interval)
    for i in range(count):
        fire = first + i * interval
        tick.send_with_options(args=(fire,), delay=max(0, int((fire - time.time()) * 1000)))
    return count


def run(settings: LabSettings) -> None:
    """Seed the schedule (first instance only), announce, work until SIGTERM."""
    whole_seconds(settings.scheduler_interval, MECHANISM)
    broker, tick = build(settings)
    if broker.client.set(keys.DRAMATIQ_SEEDED, settings.instance, nx=True):
        seed(tick, settings.scheduler_interval, time.time())
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker = dramatiq.Worker(broker, worker_threads=1)
    worker.start()
    ledger = Ledger.from_url(settings.ledger_url)
    ledger.announce(settings.instance, MECHANISM)
    try:
        stop.wait()
    finally:
        worker.stop(timeout=5000)
        for run_id, count in ledger.recorded.items():
            ledger.report_counts(run_id, settings.instance, count)
        ledger.client.close()
