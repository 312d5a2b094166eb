"""What was due: the jobs the user's schedulers announced, as the checker's schedules.

Each instance announces the jobs of the schedulers it started (``services.probe.
scheduler_hooks``): an interval job is due once per period on the epoch grid (its runs
are named by that period's start, the same on every replica), so a period with no
finished run is lost and one run by three replicas is duplicated. A cron or date job
has no fixed period: whatever fired inside the run window was due (its runs are named
by their fire time, which every replica shares, so duplicates still count; a missed
fire does not).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from experiments.checker import Schedule


def schedules(announced: Mapping[str, Mapping[str, Any]]) -> tuple[Schedule, ...]:
    """One schedule per job key, from every instance's announcement (first one wins)."""
    found: dict[str, Schedule] = {}
    for info in announced.values():
        for job in info.get("jobs") or ():
            key = str(job.get("job", ""))
            if not key or key in found:
                continue
            interval = job.get("interval")
            if job.get("trigger") == "interval" and isinstance(interval, int | float) \
                    and interval > 0:
                found[key] = Schedule(key, float(interval))
            else:
                found[key] = Schedule(key, 1.0, aligned=False)
    return tuple(found[k] for k in sorted(found))
