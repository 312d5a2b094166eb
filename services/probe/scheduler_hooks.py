"""APScheduler 3, observed through its listener events (no job of the user's is wrapped).

Every scheduler the app starts gets one listener, added as ``start`` is called (the
library's ``BaseScheduler.start`` is patched before the app is imported):
``EVENT_JOB_SUBMITTED`` is a start per scheduled run time, ``EVENT_JOB_EXECUTED`` its
finish, ``EVENT_JOB_ERROR``/``EVENT_JOB_MISSED``/``EVENT_JOB_MAX_INSTANCES`` a run that
ended (or never began) without its effect. Event classes and codes as documented:
https://apscheduler.readthedocs.io/en/3.x/modules/events.html

A run's work_id is ``<job>@<slot>``, the same on every replica: a cron or date job's
slot is its fire time; an interval job's is the start of its period on a grid from
the Unix epoch, so replicas whose interval triggers started a moment apart (each at
its own phase) still name one period's run alike — and a period run by three
replicas is one unit finished three times. ``<job>`` is the job's id, or its name
where the id is the random one APScheduler generates. The jobs (id, trigger) are
announced with the instance, for the harness to expand into what was due.
"""

from __future__ import annotations

import math
import re
import threading
from datetime import datetime
from typing import Any

from services.history import scheduled_work_id
from services.ledger import Kind
from services.probe.context import Probe, current, new_exec_id

MECHANISM = "apscheduler"
_GENERATED_ID = re.compile(r"[0-9a-f]{32}")
_open: dict[tuple[str, float], str] = {}  # (job id, fire time) -> exec id
_lock = threading.Lock()


def job_key(job: Any) -> str:
    job_id = str(job.id)
    name = str(getattr(job, "name", "") or job_id)
    key = name if _GENERATED_ID.fullmatch(job_id) else job_id
    return key.replace("\t", " ").replace("\n", " ")


def describe(job: Any) -> dict[str, Any]:
    """A job as the harness needs it: its key and its trigger's kind and period."""
    trigger = job.trigger
    kind = type(trigger).__name__.removesuffix("Trigger").lower()  # interval, cron, date
    info: dict[str, Any] = {"job": job_key(job), "trigger": kind, "says": str(trigger)}
    interval = getattr(trigger, "interval", None)
    if kind == "interval" and interval is not None:
        info["interval"] = interval.total_seconds()
    return info


def slot(info: dict[str, Any] | None, fire_time: float) -> float:
    """The run's slot: an interval job's period start on the epoch grid, else the fire time."""
    interval = float((info or {}).get("interval") or 0.0)
    if not interval:
        return fire_time
    return math.floor(fire_time / interval + 1e-6) * interval


def _stamp(when: datetime) -> float:
    return float(when.timestamp())


class _Listener:
    def __init__(self, scheduler: Any, probe: Probe) -> None:
        self.scheduler, self.probe = scheduler, probe
        self.keys: dict[str, str] = {}  # job id -> key

    def learn(self, job: Any) -> None:
        info = describe(job)
        self.keys[str(job.id)] = info["job"]
        self.probe.jobs[info["job"]] = info

    def learn_all(self) -> None:
        for job in self.scheduler.get_jobs():
            self.learn(job)

    def work_id(self, job_id: str, fire_time: float) -> str:
        key = self.keys.get(job_id)
        if key is None:
            job = self.scheduler.get_job(job_id)
            if job is not None:
                self.learn(job)
            key = self.keys.get(job_id, job_id)
        return scheduled_work_id(key, slot(self.probe.jobs.get(key), fire_time))

    def __call__(self, event: Any) -> None:
        from apscheduler import events as ev

        code, job_id = event.code, str(event.job_id)
        if code in (ev.EVENT_JOB_ADDED, ev.EVENT_JOB_MODIFIED):
            job = self.scheduler.get_job(job_id)
            if job is not None:
                self.learn(job)
                self.probe.announce()
            return
        if code == ev.EVENT_JOB_SUBMITTED:
            for when in event.scheduled_run_times:
                fire = _stamp(when)
                exec_id = new_exec_id()
                with _lock:
                    _open[(job_id, fire)] = exec_id
                self.probe.record(Kind.START, self.work_id(job_id, fire), MECHANISM,
                                  exec_id=exec_id, detail={"fire_time": fire})
            return
        if code == ev.EVENT_JOB_MAX_INSTANCES:
            for when in getattr(event, "scheduled_run_times", ()):
                fire = _stamp(when)
                self.probe.record(Kind.REFUSED, self.work_id(job_id, fire), MECHANISM,
                                  detail={"skipped": "max_instances", "fire_time": fire})
            return
        fire = _stamp(event.scheduled_run_time)
        with _lock:
            exec_id = _open.pop((job_id, fire), "")
        work_id = self.work_id(job_id, fire)
        if code == ev.EVENT_JOB_EXECUTED:
            self.probe.record(Kind.FINISH, work_id, MECHANISM, exec_id=exec_id)
        else:  # EVENT_JOB_ERROR, EVENT_JOB_MISSED
            what = "error" if code == ev.EVENT_JOB_ERROR else "missed"
            detail: dict[str, Any] = {"skipped" if what == "missed" else "error":
                                      type(event.exception).__name__
                                      if what == "error" else what, "fire_time": fire}
            self.probe.record(Kind.REFUSED, work_id, MECHANISM, exec_id=exec_id, detail=detail)


def install() -> None:
    """Give every scheduler a listener as it starts (before the user's app is imported)."""
    try:
        from apscheduler import events as ev
        from apscheduler.schedulers.base import BaseScheduler
    except ImportError:  # the app does not use APScheduler 3
        return
    if getattr(BaseScheduler.start, "_scalelab_probe", False):
        return
    original = BaseScheduler.start
    mask = (ev.EVENT_JOB_ADDED | ev.EVENT_JOB_MODIFIED | ev.EVENT_JOB_SUBMITTED
            | ev.EVENT_JOB_EXECUTED | ev.EVENT_JOB_ERROR | ev.EVENT_JOB_MISSED
            | ev.EVENT_JOB_MAX_INSTANCES)

    def start(self: Any, *args: Any, **kwargs: Any) -> Any:
        probe = current()
        if probe is not None:
            listener = _Listener(self, probe)
            self.add_listener(listener, mask)
            result = original(self, *args, **kwargs)
            listener.learn_all()
            probe.announce()
            return result
        return original(self, *args, **kwargs)

    start._scalelab_probe = True  # type: ignore[attr-defined]
    BaseScheduler.start = start
