"""celery-redbeat with the lab's fire times: one lock holder sends, the others stand by.

redbeat keeps the schedule in the broker Redis and lets only the holder of its lock
(``redbeat_lock_timeout``, extended on every tick) send. Importing this module registers
redbeat's ``beat_init`` receiver that takes the lock, so import it only for a redbeat beat.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import schedule
from redbeat.schedulers import RedBeatScheduler, RedBeatSchedulerEntry

from services.worker.names import BEAT_TICK_TASK
from services.worker.schedulers import LabScheduler
from services.worker.schedules import EpochAligned


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


class AlignedRedBeatScheduler(LabScheduler, RedBeatScheduler):  # type: ignore[misc]
    """celery-redbeat (one lock holder sends, the others stand by), with fire times."""

    Entry = AlignedRedBeatEntry
