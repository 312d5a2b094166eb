"""Beat schedulers that hand each ``scalelab.beat_tick`` the fire time it was sent for.

The task's ``work_id`` is ``beat@<fire time>``, and only beat knows which period a send
belongs to, so the fire time travels as a task keyword argument added at send time: the
last grid point at or before the send (a late beat coalesces missed periods into the
latest one, as APScheduler's ``coalesce`` does). Both schedulers also announce the beat
instance in the ledger once the schedule is set up, which is before a redbeat standby
starts waiting for the lock: a standby is a ready instance too.

The redbeat variant lives in ``redbeat_scheduler``: importing celery-redbeat connects a
``beat_init`` receiver that assumes a redbeat scheduler, so only a redbeat beat imports it.
"""

from __future__ import annotations

import time
from typing import Any

from celery.beat import PersistentScheduler, ScheduleEntry

from services.worker.context import WorkerContext
from services.worker.names import BEAT_TICK_TASK
from services.worker.schedules import EpochAligned, latest_fire_at_or_before


def with_fire_time(entry: ScheduleEntry, sender: str) -> ScheduleEntry:
    """A copy of a beat-tick entry whose kwargs carry the fire time of this send, and
    which beat sent it (a fault can then target the beat that holds the lock)."""
    if entry.task != BEAT_TICK_TASK or not isinstance(entry.schedule, EpochAligned):
        return entry
    fire_time = latest_fire_at_or_before(time.time(), entry.schedule.seconds)
    # Built the way beat builds an entry's next instance (``ScheduleEntry.__iter__`` gives
    # its fields), which redbeat entries support; ``copy.copy`` goes through
    # ``ScheduleEntry.__reduce__``, whose positional arguments redbeat's entry rejects.
    # The stored entry keeps its own kwargs.
    kwargs = {**(entry.kwargs or {}), "fire_time": fire_time, "sender": sender}
    return entry.__class__(**dict(entry, kwargs=kwargs))


def lab_context(app: Any) -> WorkerContext:
    """The lab context of an app made by ``make_celery``."""
    lab = getattr(app, "lab", None)
    if not isinstance(lab, WorkerContext):
        raise TypeError("the beat app must be made by services.worker.app.make_celery")
    return lab


class LabScheduler:
    """What every beat scheduler of the lab adds: it announces itself once its schedule is
    set up, and sends beat ticks with their fire time and its own name. Mix in first."""

    app: Any

    def setup_schedule(self) -> None:
        super().setup_schedule()  # type: ignore[misc]
        lab = lab_context(self.app)
        lab.announce("beat", guard=lab.settings.beat_guard)

    def apply_async(
        self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        sender = lab_context(self.app).instance
        return super().apply_async(  # type: ignore[misc]
            with_fire_time(entry, sender), producer, advance, **kwargs)


class AlignedPersistentScheduler(LabScheduler, PersistentScheduler):  # type: ignore[misc]
    """Celery's default scheduler (a shelve file), sending beat ticks with their fire time."""
