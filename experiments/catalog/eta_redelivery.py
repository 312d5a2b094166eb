"""eta-redelivery: a countdown longer than the Redis visibility timeout runs a task N times.

Celery's Redis caveats (celery #2599, #7009; kombu #337): a worker fetches a task with a
countdown (an ETA) at once and keeps it in memory, unacknowledged, until the ETA. The
transport's restore sweep counts the visibility timeout from that fetch, not from the
ETA, so once the timeout passes the message goes back to the queue and is fetched
again — a second copy waiting for the same ETA — and again, every timeout, until the
first copy runs and acknowledges it. With no fault at all, each task runs about
⌈countdown / visibility timeout⌉ times. ``--broker-apps 2``: the worker's own timeout
is long enough, but another Celery app on the same broker sweeps the shared ``unacked``
hash with its shorter ``--other-visibility-timeout``: the shortest one wins.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from chaos.platform import Topology
from experiments.checker import Result
from experiments.findings import Fix
from experiments.model import (
    BadInput,
    Cell,
    Experiment,
    ExperimentSpec,
    Param,
    Params,
    TaskLoad,
    Verdict,
    Workload,
)
from experiments.summary import Summary
from services.history import Event

NAME = "eta-redelivery"

PARAMS = (
    Param("countdown", 5.0, "each task's countdown (its ETA), seconds", 0, 600),
    Param("visibility_timeout", 2.0, "the worker app's Redis visibility timeout, seconds",
          0.5, 86400),
    Param("broker_apps", 1, "Celery apps on the broker (2: another app beside the worker's)",
          1, 2),
    Param("other_visibility_timeout", 2.0, "the other app's visibility timeout, seconds",
          0.5, 86400),
    Param("rate", 1.0, "tasks sent per second", 0.1, 50),
    Param("duration", 3.0, "seconds of submissions", 1, 600),
)


def effective_timeout(p: Params) -> float:
    """The visibility timeout that restores the worker's messages: the shortest sweeping."""
    if p["broker_apps"] == 2:
        return float(min(p["visibility_timeout"], p["other_visibility_timeout"]))
    return float(p["visibility_timeout"])


def expected_copies(p: Params) -> int:
    """⌈countdown / visibility timeout⌉: fetched at 0, again every timeout until the ETA."""
    return max(1, math.ceil(float(p["countdown"]) / effective_timeout(p)))


def copies(result: Result) -> list[int]:
    """Executions started per task: every copy delivered runs at the ETA (the last ones
    may still be running when the run is called settled, so starts, not finishes)."""
    return [u.starts for u in result.units.values() if u.acknowledged]


def measure(p: Params, events: Sequence[Event], result: Result) -> dict[str, Any]:
    found = copies(result)
    return {
        "effective_visibility_timeout": effective_timeout(p),
        "expected_copies": expected_copies(p),
        "copies_per_task": found,
        "copies_median": statistics.median(found) if found else None,
    }


def judge(p: Params, r: Result) -> Verdict:
    found = copies(r)
    median = statistics.median(found) if found else 0
    want = expected_copies(p)
    c = r.counts
    text = (f"countdown {p['countdown']:g} s, visibility timeout "
            f"{effective_timeout(p):g} s{' (the other app)' if p['broker_apps'] == 2 else ''}: "
            f"{median:g} copies per task (theory ⌈countdown/timeout⌉ = {want}), "
            f"{c['duplicated']}/{r.expected} duplicated, {c['lost']} lost")
    # Within one copy of the theory: a sweep lands up to its interval after the timeout.
    duplicates_as_theory = c["duplicated"] > 0 if want > 1 else c["duplicated"] == 0
    held = c["lost"] == 0 and abs(median - want) <= 1 and duplicates_as_theory
    return Verdict.of(held, text)


def _says(s: Summary) -> str:
    p, m = s["parameters"], s.get("measured") or {}
    other = " (another app's timeout)" if p["broker_apps"] == 2 else ""
    return (f"countdown {p['countdown']:g} s > timeout {m.get('effective_visibility_timeout', 0):g}"
            f" s{other}: {m.get('copies_median')} copies per task "
            f"(⌈countdown/timeout⌉ = {m.get('expected_copies')}), no fault")


CELLS = (Cell("left-out", "ETA past the visibility timeout", "Celery", {}, _says),)


def build(p: dict[str, Any]) -> Experiment:
    if p["broker_apps"] == 1 and p["other_visibility_timeout"] != PARAMS[3].default:
        raise BadInput("--other-visibility-timeout needs --broker-apps 2")
    timeout = effective_timeout(p)
    return Experiment(
        name=NAME,
        topology=Topology(
            replicas={"worker": 1},
            # A pool process for each copy: they all start at the ETA, together.
            settings={"acks": "early", "worker_concurrency": 4, "countdown": p["countdown"],
                      "visibility_timeout": p["visibility_timeout"],
                      "other_visibility_timeout": (p["other_visibility_timeout"]
                                                   if p["broker_apps"] == 2 else 0.0),
                      # Sweep often, so the copies follow the timeout, not the sweep.
                      "unacked_restore_interval": min(0.25, timeout / 4)},
        ),
        # Each copy runs half a second, so the copies of a task overlap and the run is
        # not called settled between one copy's finish and the next one's start.
        workload=Workload(duration=p["duration"], tasks=TaskLoad(p["rate"], 0.5)),
        # Every copy runs at its ETA: watch until the last task's ETA has passed.
        drain=p["countdown"] + 4.0,
        redelivers=True,
    )


SPEC = ExperimentSpec(
    name=NAME,
    summary="a countdown past the visibility timeout: each task runs ⌈countdown/timeout⌉ "
            "times, no fault",
    params=PARAMS,
    build=build,
    judge=judge,
    measure=measure,
    cells=CELLS,
    quick={"duration": 3.0},
    variants=({}, {"broker_apps": 2, "visibility_timeout": 3600.0},
              {"countdown": 1.0}),
    quick_variants=({},),
)

# What removes this experiment's failure (said beside a run that lost or duplicated work).
FIXES = (Fix("a visibility timeout longer than any countdown, in every app on the broker",
             {"visibility_timeout": 3600.0, "other_visibility_timeout": 3600.0}),)
