"""The lab's Celery tasks: a unit of work, and beat's periodic tick.

Both record ``start`` and ``finish`` in the ledger as the worker *instance* (the pool
child's pid goes in the event's pid field). ``attempt`` is 2 when the broker redelivered
the message (kombu's Redis transport marks a restored message ``redelivered``), so the
checker can tell a recovery from a first run.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Any

from services.ledger import Kind
from services.worker.context import WorkerContext
from services.worker.names import (
    BEAT_TICK_TASK,
    MECHANISM_BEAT,
    MECHANISM_CELERY,
    WORK_TASK,
)
from services.worker.schedules import tick_work_id


def _attempt(task: Any) -> int:
    delivery_info = task.request.delivery_info or {}
    return 2 if delivery_info.get("redelivered") else 1


MIB = 1024 * 1024
PAGE = 4096


def _exec_id(instance: str) -> str:
    return f"{instance}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _run(
    lab: WorkerContext, task: Any, work_id: str, mechanism: str, seconds: float,
    kill_window: float, via: str = "",
) -> str | None:
    """start, the work, finish (the effect), then the window before the ack.

    ``via``: the instance that sent the work (a beat), named in the start event.
    """
    attempt = _attempt(task)
    exec_id = _exec_id(lab.instance)
    detail = {"task_id": task.request.id}
    start_detail = {**detail, "via": via} if via else detail
    lab.record(Kind.START, work_id, mechanism, attempt=attempt, exec_id=exec_id,
               detail=start_detail)
    if work_id == lab.settings.poison_work:
        # A poison task: its pool child dies with it every time (what the OOM killer does
        # to a task that needs too much memory), so it never finishes.
        os.kill(os.getpid(), signal.SIGKILL)
    hog = bytearray(lab.settings.hog_mb * MIB if work_id == lab.settings.hog_work else 0)
    for page in range(0, len(hog), PAGE):  # touched, so the memory is really the task's
        hog[page] = 1
    if seconds > 0:
        time.sleep(seconds)
    key = work_id if lab.settings.idempotent else None
    recorded = lab.record(Kind.FINISH, work_id, mechanism, attempt=attempt, exec_id=exec_id,
                          detail=detail, idempotency_key=key)
    if kill_window > 0:
        # The effect is done but not acknowledged: a kill here (--kill-at after-effect)
        # makes an acks-late broker redeliver work whose effect already happened.
        time.sleep(kill_window)
    return recorded


def register(app: Any, lab: WorkerContext) -> None:
    """Register the lab's tasks on ``app`` (bound, so they can read their request)."""

    def work(self: Any, work_id: str, seconds: float, kill_window: float = 0) -> str | None:
        """A unit of work sent by the harness: runs ``seconds``, then holds ``kill_window``."""
        return _run(lab, self, work_id, MECHANISM_CELERY, seconds, kill_window)

    def beat_tick(self: Any, fire_time: float | None = None, sender: str = "") -> str | None:
        """The periodic task; ``fire_time`` and ``sender`` are added by the lab's beats."""
        if fire_time is None:
            raise ValueError("beat_tick needs fire_time: run beat with services.worker.beat")
        return _run(lab, self, tick_work_id(fire_time), MECHANISM_BEAT, 0.0, 0.0, via=sender)

    app.task(name=WORK_TASK, bind=True)(work)
    app.task(name=BEAT_TICK_TASK, bind=True)(beat_tick)
