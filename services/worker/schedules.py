"""Beat's schedule: fire times on the epoch grid, and the ``work_id`` of a beat tick.

Real periodic jobs fire at wall-clock times, so two beat replicas sending the same period
send the same fire time, and their duplicates are countable as one ``work_id`` run twice.
Celery's ``schedule(run_every)`` instead fires ``run_every`` after the previous send, so
each replica has its own phase and every period's lateness adds up (a slow drift that ends
in a skipped period). ``EpochAligned`` fires at the multiples of its period since the
epoch, whatever the previous send's lateness.

Arithmetic is in integer microseconds, so ``0.1 * k`` never lands a hair before a grid
point and fires it twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from celery.schedules import schedstate, schedule

from services.ledger import scheduled_work_id

BEAT_JOB = "beat"
_US = 1_000_000


def _period_us(period: float) -> int:
    us = round(period * _US)
    if us <= 0:
        raise ValueError(f"a beat period must be at least a microsecond, got {period!r}")
    return us


def next_fire_after(t: float, period: float) -> float:
    """The first grid point strictly after ``t`` (seconds since the epoch)."""
    p = _period_us(period)
    return (round(t * _US) // p + 1) * p / _US


def latest_fire_at_or_before(t: float, period: float) -> float:
    """The last grid point at or before ``t``: the period a send at ``t`` belongs to."""
    p = _period_us(period)
    return (round(t * _US) // p) * p / _US


def tick_work_id(fire_time: float, job: str = BEAT_JOB) -> str:
    """``<job>@<fire time>``, the ledger's one format for scheduled units of work."""
    return scheduled_work_id(job, fire_time)


class EpochAligned(schedule):  # type: ignore[misc]  # celery is untyped
    """An interval schedule firing at the multiples of ``run_every`` since the epoch.

    Constructed like ``schedule(run_every)``, and pickles the same way, so the default
    PersistentScheduler's shelve stores it as is. celery-redbeat serializes every
    ``schedule`` subclass as a plain interval; ``schedulers.AlignedRedBeatEntry`` turns it
    back into this class when it loads the entry.
    """

    def _timestamps(self, last_run_at: datetime) -> tuple[float, float]:
        last = self.maybe_make_aware(last_run_at).timestamp()
        now = self.maybe_make_aware(self.now()).timestamp()
        return float(last), float(now)

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        last, now = self._timestamps(last_run_at)
        return timedelta(seconds=next_fire_after(last, self.seconds) - now)

    def is_due(self, last_run_at: datetime) -> schedstate:
        last, now = self._timestamps(last_run_at)
        due_at = next_fire_after(last, self.seconds)
        if now >= due_at:
            # Late sends coalesce into one, as beat does; check again at the next grid point.
            return schedstate(is_due=True, next=next_fire_after(now, self.seconds) - now)
        return schedstate(is_due=False, next=due_at - now)

    def __repr__(self) -> str:
        return f"<epoch-aligned every {self.seconds}s>"
