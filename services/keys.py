"""Every Redis key name of the lab, in one place (ledger, guards, leases, the run).

The ledger's keys live in the ledger Redis; the guards' in the broker Redis.
"""

from __future__ import annotations

# --- the ledger Redis -------------------------------------------------------------------
RUN = "scalelab:run"  # the current run id; events outside a run are dropped
INSTANCES = "scalelab:instances"  # hash: instance name -> JSON announcement (pid, component)
EVENTS_PREFIX = "scalelab:events:"  # + run: the history, one tab-separated line per event
COUNTERS_PREFIX = "scalelab:counters:"  # + run: hash instance -> events it says it recorded
# + run + ":" + resource: the highest fencing token seen; a lower one is refused (prevents
# a duplicate from a deposed leader)
FENCE_PREFIX = "scalelab:fence:"
# + run + ":" + key: an effect's idempotency key; a second effect is refused (prevents a
# duplicate from a redelivery)
IDEMPOTENCY_PREFIX = "scalelab:idem:"

# --- the broker Redis: the scheduler guards -----------------------------------------------
TICK_LOCK_PREFIX = "scalelab:lock:tick:"  # + work_id: one per (job, fire time): no duplicate tick
LEADER = "scalelab:leader"  # holder of the scheduler lease
LEADER_TOKEN = "scalelab:leader:token"  # fencing token, incremented per new term

# --- the broker Redis: the task queues' schedules -----------------------------------------
# set by the first RQ (Dramatiq) instance, which enqueues the schedule: one seeding per broker
RQ_SEEDED = "scalelab:rq:seeded"
DRAMATIQ_SEEDED = "scalelab:dramatiq:seeded"

# --- the broker Redis: what Celery's transport (kombu) keeps there, read by the harness ---
# Each queue is a list; a delivered message stays in this hash until it is acknowledged
# (kombu's Redis transport default name).
KOMBU_UNACKED = "unacked"


def events(run: str) -> str:
    return f"{EVENTS_PREFIX}{run}"


def counters(run: str) -> str:
    return f"{COUNTERS_PREFIX}{run}"
