"""clock-skew: one instance's wall clock set seconds off (libfaketime), the rest true.

Every lab scheduler fires on the wall-clock grid, so a replica whose clock is S
seconds ahead fires each tick S seconds early, under the same ``work_id``. What that
does depends on where the guard keeps its time:

- ``scheduler-lock``: the per-tick lock (``SET NX PX``) expires on the broker's clock,
  ``--lock-ttl`` after the skewed replica took it — S seconds before the others reach
  that tick. A TTL shorter than the skew lets the others take the lock again: every tick
  runs twice (APScheduler #766: a lock TTL shorter than the skew between replicas).
  A longer TTL holds: the skewed replica runs every tick, early.
- ``leader``: the Redis lease expires on the broker's clock too: a skewed leader keeps
  it, and no tick runs twice.
- ``redbeat``: redbeat's lock is a Redis TTL as well; a skewed holder sends each
  tick early, once.

The ledger's timestamps come from the ledger Redis's own ``TIME``, not from any
instance, so the measurement itself is not skewed: the skewed instance's ticks show
up *early* against their fire times, by the skew (the summary's ``early_by``).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from chaos.faults import FAULTS
from chaos.platform import Topology
from experiments import fault_options
from experiments.checker import Result, Schedule
from experiments.findings import Fix
from experiments.model import (
    Cell,
    Experiment,
    ExperimentSpec,
    Param,
    Params,
    Verdict,
    Workload,
)
from experiments.summary import Summary, n
from services.history import Event, Kind, parse_scheduled

NAME = "clock-skew"
INTERVAL = 1.0

PARAMS = (
    Param("mechanism", "scheduler-lock", "the guard whose clock is skewed",
          choices=("scheduler-lock", "leader", "redbeat")),
    Param("skew", "", "TARGET=SECONDS: the instance (or component) whose clock is off, and by "
          "how much, within ±3600 (default: api-1=2, beat-1=2 for redbeat)"),
    Param("lock_ttl", 1.0, "the per-tick lock's TTL, seconds (scheduler-lock)", 0.1, 600),
    Param("duration", 6.0, "seconds of the run window", 3, 3600),
)

COMPONENT = {"scheduler-lock": "api", "leader": "api", "redbeat": "beat"}
REPLICAS = {"scheduler-lock": {"api": 2}, "leader": {"api": 2},
            "redbeat": {"beat": 2, "worker": 1}}


def parse_skew(p: Params) -> tuple[str, float]:
    """``(target, seconds)`` from ``--skew``; BadInput naming what is wrong."""
    raw = p["skew"] or f"{COMPONENT[p['mechanism']]}-1=2"
    return fault_options.parse_skew(str(raw), REPLICAS[p["mechanism"]])


def early_by(events: Sequence[Event], skewed: str | None) -> float | None:
    """Median of (fire time - ledger time at start) over the skewed instance's ticks,
    once its skew applies: about the skew, seen on the ledger's unskewed clock."""
    skew_at = next((e.t for e in events if e.kind == Kind.FAULT and e.mechanism == "skew"),
                   None)
    if skewed is None or skew_at is None:
        return None
    early = []
    for e in events:
        if e.kind != Kind.START or e.t < skew_at + 1.5:  # the offset is re-read each second
            continue
        if e.instance != skewed and e.detail.get("via") != skewed:
            continue
        fired = parse_scheduled(e.work_id)
        if fired:
            early.append(fired[1] - e.t)
    return round(statistics.median(early), 3) if early else None


def measure(p: Params, events: Sequence[Event], result: Result) -> dict[str, Any]:
    skewed = next((e.instance for e in events
                   if e.kind == Kind.FAULT and e.mechanism == "skew"), None)
    return {
        "skewed": skewed,
        "skew_seconds": parse_skew(p)[1],
        "early_by": early_by(events, skewed),
        "timestamps": "ledger Redis TIME (not skewed)",
    }


def judge(p: Params, r: Result) -> Verdict:
    target, offset = parse_skew(p)
    c = r.counts
    text = (f"{p['mechanism']}, {target} {offset:+g} s: {c['duplicated']}/{r.expected} "
            f"duplicated, {c['lost']} lost (timestamps from the ledger's clock, not skewed)")
    if p["mechanism"] == "scheduler-lock" and abs(offset) > p["lock_ttl"]:
        return Verdict.of(c["duplicated"] > 0, text + " (want duplicated > 0: lock TTL "
                          f"{p['lock_ttl']:g} s < skew)")
    return Verdict.of(c["duplicated"] == 0,
                      text + " (want 0 duplicated: the TTL is the broker's clock)")


def _says(s: Summary) -> str:
    p, m = s["parameters"], s.get("measured") or {}
    ttl = f", lock TTL {p['lock_ttl']:g} s" if p["mechanism"] == "scheduler-lock" else ""
    early = m.get("early_by")
    return (f"{p['mechanism']}{ttl}, {m.get('skewed')} {m.get('skew_seconds', 0):+g} s: "
            f"{n(s, 'duplicated')}" + (f", its ticks {early:g} s early" if early else ""))


CELLS = (
    Cell("left-out", "Clock skew", "AsyncIOScheduler",
         {"mechanism": lambda m: m in ("scheduler-lock", "leader")}, _says),
    Cell("left-out", "Clock skew", "Celery", {"mechanism": "redbeat"}, _says),
)


def build(p: dict[str, Any]) -> Experiment:
    target, offset = parse_skew(p)
    mechanism = p["mechanism"]
    settings: dict[str, Any] = {"skewable": True}
    if mechanism == "redbeat":
        settings |= {"scheduler_enabled": False, "beat_interval": INTERVAL,
                     "beat_guard": "redbeat", "beat_lock_timeout": 3.0}
        schedules = (Schedule("beat", INTERVAL),)
    else:
        settings |= {"scheduler_interval": INTERVAL, "tick_seconds": 0.02,
                     "scheduler_guard": "redis-lock" if mechanism == "scheduler-lock"
                     else "leader", "lock_ttl": p["lock_ttl"], "lease_seconds": 3.0}
        schedules = (Schedule("tick", INTERVAL),)
    return Experiment(
        name=NAME,
        topology=Topology(replicas=REPLICAS[mechanism], settings=settings),
        workload=Workload(duration=p["duration"]),
        faults=(FAULTS["clock-skew"].step(target, at=0.0, numbers={"offset": offset}),),
        schedules=schedules,
        drain=3.0,
    )


SPEC = ExperimentSpec(
    name=NAME,
    summary="one instance's clock seconds ahead: a per-tick lock whose TTL is shorter than "
            "the skew runs ticks twice",
    params=PARAMS,
    build=build,
    judge=judge,
    measure=measure,
    cells=CELLS,
    variants=({}, {"lock_ttl": 30.0}, {"mechanism": "leader"}, {"mechanism": "redbeat"}),
    quick_variants=({}, {"lock_ttl": 30.0}),
)

# What removes this experiment's failure (said beside a run that lost or duplicated work).
FIXES = (
    Fix("a lock TTL longer than any clock skew", {"lock_ttl": 30.0},
        when={"mechanism": "scheduler-lock"}),
)
