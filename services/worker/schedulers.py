"""Beat schedulers that hand each ``scalelab.beat_tick`` the fire time it was sent for.

The task's ``work_id`` is ``beat@<fire time>``, and only beat knows which period a send
belongs to, so the fire time travels as a task keyword argument added at send time: the
last grid point at or before the send (a late beat coalesces missed periods into the
latest one, as APScheduler's ``coalesce`` does). Both schedulers also announce the beat
instance in the ledger once the schedule is set up, which is before a redbeat standby
starts waiting for the lock: a standby is a ready instance too.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from celery.beat import PersistentScheduler, ScheduleEntry
from celery.schedules import schedule
from redbeat.schedulers import RedBeatScheduler, RedBeatSchedulerEntry

from services.worker.context import WorkerContext
from services.worker.names import BEAT_TICK_TASK
from services.worker.schedules import EpochAligned, latest_fire_at_or_before


def _with_fire_time(entry: ScheduleEntry) -> ScheduleEntry:
    """A copy of a beat-tick entry whose kwargs carry the fire time of this send."""
    if entry.task != BEAT_TICK_TASK or not isinstance(entry.schedule, EpochAligned):
        return entry
    fire_time = latest_fire_at_or_before(time.time(), entry.schedule.seconds)
    sent = copy.copy(entry)  # the stored entry keeps its own kwargs
    sent.kwargs = {**(entry.kwargs or {}), "fire_time": fire_time}
    return sent


def _context(app: Any) -> WorkerContext:
    lab = getattr(app, "lab", None)
    if not isinstance(lab, WorkerContext):
        raise TypeError("the beat app must be made by services.worker.app.make_celery")
    return lab


class AlignedPersistentScheduler(PersistentScheduler):  # type: ignore[misc]  # celery is untyped
    """Celery's default scheduler (a shelve file), sending beat ticks with their fire time."""

    def setup_schedule(self) -> None:
        super().setup_schedule()
        lab = _context(self.app)
        lab.announce("beat", guard=lab.settings.beat_guard)

    def apply_async(
        self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        return super().apply_async(_with_fire_time(entry), producer, advance, **kwargs)


class AlignedRedBeatEntry(RedBeatSchedulerEntry):  # type: ignore[misc]  # redbeat is untyped
    """A redbeat entry whose beat-tick schedule is epoch-aligned again after loading.

    redbeat stores entries as JSON and decodes any ``schedule`` subclass as a plain
    ``schedule``; it reloads every entry from Redis on each tick, so without this the
    alignment would be lost after the first send.
    """

    @staticmethod
    def decode_definition(definition: Any) -> Any:
        decoded = RedBeatSchedulerEntry.decode_definition(definition)
        sched = decoded.get("schedule")
        if decoded.get("task") == BEAT_TICK_TASK and type(sched) is schedule:
            decoded["schedule"] = EpochAligned(sched.run_every)
        return decoded


class AlignedRedBeatScheduler(RedBeatScheduler):  # type: ignore[misc]  # redbeat is untyped
    """celery-redbeat (one lock holder sends, the others stand by), with fire times."""

    Entry = AlignedRedBeatEntry

    def setup_schedule(self) -> None:
        super().setup_schedule()
        lab = _context(self.app)
        lab.announce("beat", guard=lab.settings.beat_guard)

    def apply_async(
        self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        return super().apply_async(_with_fire_time(entry), producer, advance, **kwargs)
