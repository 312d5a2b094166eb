"""Scheduler guards: what an API replica asks before it runs a scheduled tick.

Without a guard every replica's AsyncIOScheduler runs every tick: N replicas, N
executions. ``redis-lock`` takes a per-tick lock on the broker Redis (``SET NX PX``
keyed by job and scheduled fire time), so only the first replica to ask runs it.
``leader`` runs ticks only on the replica holding a lease (a Redis lease locally, a
Kubernetes Lease on a cluster); with ``fencing`` its token is checked at the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services import keys
from services.settings import LabSettings

log = logging.getLogger("scalelab.guard")

# Broker keys (not ledger keys): the locks are part of the system under test.
TICK_LOCK_PREFIX = keys.TICK_LOCK_PREFIX
LEADER_KEY = keys.LEADER
LEADER_TOKEN_KEY = keys.LEADER_TOKEN


@dataclass(frozen=True)
class Permit:
    """A guard's yes: run the tick, and write its effect with this fence (if any)."""

    fence: tuple[str, int] | None = None
    note: str = ""


class TickGuard(Protocol):
    """Decides whether this replica runs a given tick."""

    async def permit(self, work_id: str) -> Permit | None:
        """A permit to run the tick ``work_id``, or None to skip it."""

    async def start(self) -> None:
        """Begin background duties (lease renewal)."""

    async def stop(self) -> None:
        """End them and release what the guard holds."""


class NoGuard:
    """Every replica runs every tick: the failure the lab shows."""

    async def permit(self, work_id: str) -> Permit | None:
        return Permit()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class RedisLockGuard:
    """Per-tick lock: ``SET scalelab:lock:tick:<work_id> <instance> NX PX ttl``.

    The lock is never released: it expires after ``ttl``, long after the tick, so a
    slow replica cannot take it again. When the broker is unreachable the guard
    fails open (runs the tick) and says so, so a broker outage shows up as duplicates.
    """

    def __init__(self, broker: aioredis.Redis, instance: str, ttl: float) -> None:
        self.broker, self.instance, self.ttl_ms = broker, instance, int(ttl * 1000)

    async def permit(self, work_id: str) -> Permit | None:
        try:
            won = await self.broker.set(TICK_LOCK_PREFIX + work_id, self.instance, nx=True,
                                        px=self.ttl_ms)
        except (RedisError, OSError):
            return Permit(note="lock-unavailable")
        return Permit() if won else None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class LeaseBackend(Protocol):
    """Somewhere a single holder can keep a lease (Redis key, Kubernetes Lease)."""

    async def try_acquire(self) -> int | None:
        """Acquire or renew; the fencing token if we hold the lease, else None."""

    async def aclose(self) -> None:
        """Give up the lease if held and close connections."""


_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]))
end
if holder then return false end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('INCR', KEYS[2])
"""


class RedisLease:
    """A lease in the broker Redis; the token increments with every new term."""

    def __init__(self, broker: aioredis.Redis, holder: str, lease_seconds: float) -> None:
        self.broker, self.holder, self.ttl_ms = broker, holder, int(lease_seconds * 1000)
        self._acquire = broker.register_script(_ACQUIRE)

    async def try_acquire(self) -> int | None:
        token = await self._acquire(keys=[LEADER_KEY, LEADER_TOKEN_KEY],
                                    args=[self.holder, self.ttl_ms])
        return int(token) if token else None

    async def aclose(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            if await self.broker.get(LEADER_KEY) == self.holder.encode():
                await self.broker.delete(LEADER_KEY)


class LeaderGuard:
    """Runs ticks only while this replica believes it leads.

    The belief is refreshed by a renewal loop every third of the lease, as typical
    leader-election code does. A replica paused past its lease still believes it
    leads when it resumes, until its next renewal: without fencing its ticks then
    duplicate the new leader's; with fencing the ledger refuses its stale token.
    """

    def __init__(self, backend: LeaseBackend, lease_seconds: float, fencing: bool) -> None:
        self.backend, self.lease_seconds, self.fencing = backend, lease_seconds, fencing
        self.token: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def permit(self, work_id: str) -> Permit | None:
        if self.token is None:
            return None
        return Permit(fence=("scheduler", self.token) if self.fencing else None,
                      note=f"term-{self.token}")

    async def _renew(self) -> None:
        while True:
            try:
                self.token = await self.backend.try_acquire()
            except Exception as exc:  # Redis, network or Lease API: never kill the loop
                log.warning("lease renewal failed: %s", exc)
                self.token = None
            await asyncio.sleep(self.lease_seconds / 3)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._renew())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.backend.aclose()


def make_guard(settings: LabSettings, broker: aioredis.Redis) -> TickGuard:
    if settings.scheduler_guard == "redis-lock":
        return RedisLockGuard(broker, settings.instance, settings.lock_ttl)
    if settings.scheduler_guard == "leader":
        backend: LeaseBackend
        if settings.leader_backend == "kubernetes":
            from services.api.lease_k8s import KubernetesLease

            backend = KubernetesLease("scalelab-scheduler", settings.lease_namespace,
                                      settings.instance, settings.lease_seconds)
        else:
            backend = RedisLease(broker, settings.instance, settings.lease_seconds)
        return LeaderGuard(backend, settings.lease_seconds, settings.fencing)
    return NoGuard()
