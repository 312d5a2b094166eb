"""The Celery app of the lab: ``make_celery(settings)`` is the one place Celery is configured.

Acknowledgement (``settings.acks``):

- ``early`` (Celery's default): the message is acknowledged when a pool process takes the
  task, so a worker killed mid-task loses it.
- ``late``: ``task_acks_late`` acknowledges after the task returns, and
  ``task_reject_on_worker_lost`` requeues it if only the pool child dies. When the whole
  worker (main process included) is SIGKILLed nobody rejects anything: the message sits in
  kombu's *unacked* hash until another consumer's restore sweep puts it back.

The restore sweep (kombu 5.7, ``kombu/transport/redis.py``): a delivered message is
stored in the ``unacked`` hash, indexed by delivery time in ``unacked_index``. Every
consuming worker's event loop calls ``maybe_restore_messages`` every
``unacked_restore_interval`` seconds; only every ``unacked_restore_throttle``-th call
scans, under the ``unacked_mutex`` lock, and requeues (marked ``redelivered``) every
message delivered more than ``visibility_timeout`` seconds ago. kombu's defaults are 3600 s,
10 s, 10 calls and a 300 s mutex: a redelivery after a SIGKILL takes about an hour plus
up to 100 s. The lab sets:

- ``visibility_timeout`` = ``settings.visibility_timeout`` (10 s by default): the earliest
  a killed worker's message can come back, counted from its *delivery*, not its start; a
  task running longer than this is redelivered while still running (at-least-once
  becoming twice with no fault at all).
- ``unacked_restore_interval`` = ``settings.unacked_restore_interval`` (2 s) and
  ``unacked_restore_throttle`` = 1: every call scans, so the sweep period is the interval
  itself and the redelivery lands within ``visibility_timeout + interval`` of delivery
  (the scan is one ZRANGE on a small index, cheap at this rate).
- ``unacked_mutex_expire`` = 5 s: the mutex is held only for a scan (milliseconds); if a
  worker is killed holding it, the default 300 s would stall every sweep for five minutes.

``worker_prefetch_multiplier`` = ``settings.prefetch_multiplier`` (1 by default) keeps a
worker from reserving more messages than it has pool processes: a reserved message's
visibility clock runs while it waits, so a waiting message could be restored and run twice
even without a fault. ``task_reject_on_worker_lost`` follows acks late unless
``settings.reject_on_worker_lost`` turns it off (Celery's own default).

A submission carries ``settings.countdown`` (an ETA): the worker fetches it at once and
holds it in memory until the ETA, unacknowledged — so the restore sweep counts its
visibility timeout from that fetch, not from the ETA (kombu #337), and a countdown longer
than the timeout is delivered again while the first copy still waits.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from services.settings import LabSettings, load_settings
from services.worker import tasks
from services.worker.context import WorkerContext
from services.worker.names import BEAT_ENTRY, BEAT_TICK_TASK, WORK_TASK
from services.worker.restore import RestoreSweep
from services.worker.schedules import EpochAligned

BROKER_SOCKET_TIMEOUT = 5.0

# Held only for one scan of the unacked index, which takes milliseconds.
UNACKED_MUTEX_EXPIRE = 5

PERSISTENT_SCHEDULER = "services.worker.schedulers:AlignedPersistentScheduler"
REDBEAT_SCHEDULER = "services.worker.redbeat_scheduler:AlignedRedBeatScheduler"


class LabCelery(Celery):  # type: ignore[misc]  # celery is untyped
    """A Celery app that carries the lab's context (settings, per-process ledger)."""

    lab: WorkerContext


def broker_transport_options(settings: LabSettings) -> dict[str, Any]:
    """kombu Redis transport options; see the module docstring for why these values."""
    return {
        "visibility_timeout": settings.visibility_timeout,
        "unacked_restore_interval": settings.unacked_restore_interval,
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": UNACKED_MUTEX_EXPIRE,
        # A paused or partitioned broker keeps the TCP connection open: without a socket
        # timeout a publish (the harness's included) waits forever. Above kombu's 1 s
        # BRPOP timeout, so an idle consumer never trips it.
        "socket_timeout": BROKER_SOCKET_TIMEOUT,
        "socket_connect_timeout": BROKER_SOCKET_TIMEOUT,
    }


def beat_max_loop_interval(settings: LabSettings) -> float:
    """How long beat may sleep between ticks.

    A redbeat lock holder extends its lock once per tick, so it must tick well within
    ``beat_lock_timeout``; a standby polls for the lock at this interval, so it also bounds
    the failover delay after the lock expires. Celery's default is 300 s.
    """
    return max(0.1, min(1.0, settings.beat_lock_timeout / 3))


def make_celery(settings: LabSettings) -> LabCelery:
    """The lab's Celery app for these settings (no network: connections open on use)."""
    late = settings.acks == "late"
    app = LabCelery("scalelab", broker=settings.broker_url, set_as_current=False)
    app.lab = WorkerContext(settings)
    app.conf.update(
        broker_connection_retry_on_startup=True,
        broker_transport_options=broker_transport_options(settings),
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        # No results to expire; otherwise beat installs a daily celery.backend_cleanup.
        result_expires=None,
        task_acks_late=late,
        task_reject_on_worker_lost=late and settings.reject_on_worker_lost,
        worker_prefetch_multiplier=settings.prefetch_multiplier,
        worker_soft_shutdown_timeout=settings.soft_shutdown_timeout,
        # The harness never sends control commands: no pidbox queue, no fanout to poll.
        worker_enable_remote_control=False,
        timezone="UTC",
        enable_utc=True,
        beat_schedule={
            BEAT_ENTRY: {
                "task": BEAT_TICK_TASK,
                "schedule": EpochAligned(settings.beat_interval),
            },
        },
        beat_max_loop_interval=beat_max_loop_interval(settings),
        beat_scheduler=(REDBEAT_SCHEDULER if settings.beat_guard == "redbeat"
                        else PERSISTENT_SCHEDULER),
        redbeat_redis_url=settings.broker_url,
        # Set explicitly: redbeat otherwise falls back to the broker's transport options
        # (and warns that the fallback is going away).
        redbeat_redis_options={},
        redbeat_lock_timeout=settings.beat_lock_timeout,
    )
    tasks.register(app, app.lab)
    app.steps["consumer"].add(RestoreSweep)  # the sweep's cadence, whatever kombu's version
    return app


def send_work(app: LabCelery, work_id: str, seconds: float, kill_window: float = 0.0) -> str:
    """Send one ``scalelab.work``; its Celery task id is the ``work_id`` (the unit of work
    the ledger counts), with the sender's countdown if it has one. Returns once the broker
    has the message."""
    countdown = app.lab.settings.countdown or None
    app.send_task(WORK_TASK, args=[work_id, seconds, kill_window], task_id=work_id,
                  countdown=countdown)
    return work_id


def __getattr__(name: str) -> LabCelery:
    """``celery -A services.worker.app``: build ``app`` from the environment on first use."""
    if name == "app":
        built = make_celery(load_settings())
        globals()["app"] = built
        return built
    raise AttributeError(name)
