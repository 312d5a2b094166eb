"""broker-eviction: the broker Redis at its memory limit, under each eviction policy.

Celery's Redis caveats: the broker's keys (the queue, the unacknowledged hash, kombu's
``_kombu.binding.*`` routing keys, the scheduler's per-tick locks) are not a cache, so
run it with ``maxmemory-policy noeviction``. Here the broker gets a ``maxmemory`` a
little above what it uses once the lab is connected (a margin over that footprint,
which differs between Redis builds and platforms), and a burst of tasks that outgrows
it:

- ``allkeys-lru`` (or any eviction policy): Redis makes room by evicting keys, the
  broker's own included — a queue is one key, and every task in it goes at once; once
  nothing evictable is left, writes are refused as well;
- ``noeviction``: nothing is evicted, writes are refused (``OOM command not allowed``).
  Measured here: not only the submissions — the worker's own bookkeeping write (the
  ``HSET`` of kombu's unacked hash after it popped a task) is refused, Celery calls it
  an unrecoverable error and the worker exits; its replacement does the same, so the
  backlog is not worked off: the acknowledged tasks are not run in the run.

Either way tasks are lost to the run: under ``noeviction`` acknowledged ones, or the
submissions themselves when the first writes already meet the limit; under an
eviction policy acknowledged ones evicted with their queue, or — once LRU picks kombu's
routing table (``_kombu.binding.celery``) — every later submission fails ("Table empty
or key no longer exists"; celery/kombu#1063, where a maintainer names LRU mode as the
cause), so the burst is never accepted. The per-tick locks share the Redis: a lock
evicted, or its ``SET`` refused, lets a tick run twice (the lab's guard fails open) —
but only while used memory stays above the limit, which the clients' freed buffers can
undo, so the ticks are an observation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from chaos.platform import Topology
from experiments.checker import Result, Schedule
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
from experiments.theory import Expect, judged
from services.history import Event

NAME = "broker-eviction"

PARAMS = (
    Param("policy", "allkeys-lru", "the broker's maxmemory-policy",
          choices=("noeviction", "allkeys-lru", "allkeys-random", "volatile-lru")),
    Param("maxmemory", "+120kb", "the broker's maxmemory: a margin over its footprint with the "
          "lab connected (+120kb, about 85 queued tasks), or a size (2mb)"),
    Param("rate", 60.0, "tasks sent per second (far more than the worker runs)", 1, 500),
    Param("duration", 3.0, "seconds of submissions", 1, 600),
)


def tasks_of(result: Result) -> list[Any]:
    return [u for u in result.units.values() if u.work_id.startswith("task-")]


def ticks_of(result: Result) -> list[Any]:
    return [u for u in result.units.values() if u.work_id.startswith("tick@")]


def measure(p: Params, events: Sequence[Event], result: Result) -> dict[str, Any]:
    tasks, ticks = tasks_of(result), ticks_of(result)
    return {
        "tasks_acknowledged": sum(u.acknowledged for u in tasks),
        "tasks_lost": sum(u.verdict == "lost" for u in tasks),
        # sent as planned but never acknowledged: the broker refused the submission
        "tasks_refused": max(0, round(p["rate"] * p["duration"])
                             - sum(u.acknowledged for u in tasks)),
        "ticks_duplicated": sum(u.verdict == "duplicated" for u in ticks),
        "ticks_due": sum(u.due for u in ticks),
    }


def judge(p: Params, r: Result) -> Verdict:
    m = measure(p, (), r)
    head = (f"maxmemory {p['maxmemory']}, {p['policy']}: {m['tasks_acknowledged']} tasks "
            f"acknowledged, {m['ticks_due']} ticks due")
    ticks = (f" (observed, not claimed: ticks duplicated "
             f"{m['ticks_duplicated']}/{m['ticks_due']})")
    # Tasks do not run either way: acknowledged ones are lost (evicted with their queue,
    # or left behind a worker a refused write stopped), or the submissions themselves are
    # refused — noeviction's OOM error, or an eviction policy that dropped kombu's routing
    # key — whichever the burst meets first.
    planned = round(p["rate"] * p["duration"])
    gone = Expect("tasks lost or refused", planned, 1, planned,
                  "acknowledged and lost, or refused at submission; only those the worker "
                  "ran before the limit are spared")
    verdict = judged(head, (gone, m["tasks_lost"] + m["tasks_refused"]))
    return Verdict(verdict.outcome, verdict.sentence + ticks)


def _limit(s: Summary) -> str:
    """The limit as asked, and as it came out when that was a margin."""
    asked, ran = s["parameters"]["maxmemory"], (s.get("as_run") or {}).get("broker_maxmemory")
    return f"{asked} ({ran})" if ran else str(asked)


def _says(s: Summary) -> str:
    p, m = s["parameters"], s.get("measured") or {}
    return (f"{p['policy']} at {_limit(s)}: tasks lost {m.get('tasks_lost')}/"
            f"{m.get('tasks_acknowledged')}, ticks duplicated {m.get('ticks_duplicated')}")


CELLS = (
    Cell("left-out", "Broker eviction", "Celery", {}, _says),
    Cell("left-out", "Broker eviction", "AsyncIOScheduler", {},
         lambda s: f"{s['parameters']['policy']}: per-tick locks in the same Redis, ticks "
                   f"duplicated {(s.get('measured') or {}).get('ticks_duplicated')}/"
                   f"{(s.get('measured') or {}).get('ticks_due')}"),
)


def build(p: dict[str, Any]) -> Experiment:
    if not re.fullmatch(r"\+?[1-9][0-9]*(kb|mb|gb)", p["maxmemory"]):
        raise BadInput("--maxmemory takes a margin such as +120kb or a size such as 2mb, not "
                       f"{p['maxmemory']!r}")
    return Experiment(
        name=NAME,
        topology=Topology(
            replicas={"api": 2, "worker": 1},
            settings={"broker_maxmemory": p["maxmemory"],
                      "broker_maxmemory_policy": p["policy"],
                      "scheduler_interval": 0.5, "scheduler_guard": "redis-lock",
                      "tick_seconds": 0.02, "acks": "late", "worker_concurrency": 1,
                      "visibility_timeout": 60.0},
        ),
        workload=Workload(duration=p["duration"], tasks=TaskLoad(p["rate"], 0.05)),
        schedules=(Schedule("tick", 0.5),),
        # Long enough for the one worker to run the whole backlog (20 tasks a second).
        drain=p["rate"] * p["duration"] * 0.05 + 8.0,
        redelivers=True,
    )


SPEC = ExperimentSpec(
    name=NAME,
    summary="the broker Redis at its maxmemory: noeviction refuses writes, an eviction "
            "policy drops the broker's own keys",
    params=PARAMS,
    build=build,
    judge=judge,
    measure=measure,
    cells=CELLS,
    variants=({"policy": "noeviction"}, {"policy": "allkeys-lru"}),
)

# What removes this experiment's failure (said beside a run that lost or duplicated work).
FIXES = (Fix("maxmemory-policy noeviction: writes are refused, not dropped",
             {"policy": "noeviction"}, when={"policy": lambda v: v != "noeviction"}),)
