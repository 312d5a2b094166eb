"""APScheduler 4, observed through its event broker's events (no task of the user's is wrapped).

Every ``AsyncScheduler`` the app runs is subscribed to, as it starts to run
(``run_until_stopped``, which ``start_in_background`` calls too): ``JobAcquired`` is a
start, ``JobReleased`` a finish when its outcome is ``success``, else an execution that
ended without its effect (error, missed start deadline, cancelled, abandoned). Only
this scheduler's own jobs are recorded: with a shared event broker every scheduler sees
every other's events. A run's work_id is ``<schedule>@<slot>`` as for APScheduler 3
(``services.probe.scheduler_hooks``); the schedules are announced as the scheduler
starts. Events and their fields as the 4.x API documents them:
https://apscheduler.readthedocs.io/en/master/api.html#events
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.history import scheduled_work_id
from services.ledger import Kind
from services.probe.context import Probe, current
from services.probe.scheduler_hooks import MECHANISM, slot


def describe(schedule: Any) -> dict[str, Any]:
    """A schedule as the harness needs it: its id and its trigger's kind and period."""
    trigger = schedule.trigger
    kind = type(trigger).__name__.removesuffix("Trigger").lower()
    info: dict[str, Any] = {"job": str(schedule.id), "trigger": kind, "says": repr(trigger)}
    interval = getattr(trigger, "_interval", None)
    if kind == "interval" and interval is not None:
        info["interval"] = interval.total_seconds()
    return info


class _Subscriber:
    def __init__(self, scheduler: Any, probe: Probe) -> None:
        self.scheduler, self.probe = scheduler, probe

    def work_id(self, event: Any) -> str:
        key = str(event.schedule_id or event.task_id)
        when: datetime | None = event.scheduled_start
        fire = when.timestamp() if when is not None else event.timestamp.timestamp()
        return scheduled_work_id(key, slot(self.probe.jobs.get(key), fire))

    def __call__(self, event: Any) -> None:
        if getattr(event, "scheduler_id", None) != self.scheduler.identity:
            return  # another scheduler's job, relayed by a shared event broker
        exec_id = str(event.job_id)
        if type(event).__name__ == "JobAcquired":
            self.probe.record(Kind.START, self.work_id(event), MECHANISM, exec_id=exec_id)
            return
        outcome = str(getattr(event.outcome, "name", event.outcome))
        if outcome == "success":
            self.probe.record(Kind.FINISH, self.work_id(event), MECHANISM, exec_id=exec_id)
        else:
            self.probe.record(Kind.REFUSED, self.work_id(event), MECHANISM, exec_id=exec_id,
                              detail={"outcome": outcome})


def install() -> None:
    """Subscribe to every APScheduler 4 scheduler as it runs (before the app is imported)."""
    try:
        from apscheduler import AsyncScheduler, JobAcquired, JobReleased
    except ImportError:  # not APScheduler 4
        return
    if getattr(AsyncScheduler.run_until_stopped, "_scalelab_probe", False):
        return
    original = AsyncScheduler.run_until_stopped

    async def run_until_stopped(self: Any, *args: Any, **kwargs: Any) -> Any:
        probe = current()
        if probe is not None:
            self.subscribe(_Subscriber(self, probe), {JobAcquired, JobReleased})
            for schedule in await self.get_schedules():
                info = describe(schedule)
                probe.jobs[info["job"]] = info
            probe.announce()
        return await original(self, *args, **kwargs)

    run_until_stopped._scalelab_probe = True  # type: ignore[attr-defined]
    AsyncScheduler.run_until_stopped = run_until_stopped
