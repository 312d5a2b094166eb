"""The ledger's Redis clients: the one place that writes the lab's observations.

The ledger is its own Redis (never the broker; no fault targets it). Each event is
one line appended to a per-run list by one Lua script, so an event costs exactly
one round trip, and its timestamp is the ledger Redis's own clock (``TIME``), so
no host clock skews the order. The list order is the commit order. The event
model and its line codec are ``services.history`` (pure); the key names are
``services.keys``.

Event kinds: ``intent`` (the harness got an acknowledgement), ``start``, ``finish``
(the unit's effect), ``refused`` (an effect refused by a fence or idempotency key),
``fault`` (the nemesis acted).
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Iterator
from typing import Any, TypedDict, Unpack

import redis
import redis.asyncio as aioredis

from services import keys
from services.history import (
    Event,
    Kind,
    clean,
    decode_line,
    encode_payload,
    parse_scheduled,
    scheduled_work_id,
)

__all__ = ["AsyncLedger", "Event", "Kind", "Ledger", "decode_line", "encode_payload",
           "events_key", "parse_scheduled", "scheduled_work_id"]

events_key = keys.events

# KEYS: the run key, then the prefixes of the run-scoped keys (events, fence, idempotency),
# which the script completes with the current run: the key names all come from
# services.keys. ARGV: kind, payload, fence name, fence token, idempotency key.
_RECORD = """
local run = redis.call('GET', KEYS[1])
if not run then return false end
local kind = ARGV[1]
if ARGV[4] ~= '' then
  local fkey = KEYS[3] .. run .. ':' .. ARGV[3]
  local cur = tonumber(redis.call('GET', fkey) or '-1')
  if tonumber(ARGV[4]) < cur then kind = 'refused' else redis.call('SET', fkey, ARGV[4]) end
end
if kind == 'finish' and ARGV[5] ~= '' then
  if not redis.call('SET', KEYS[4] .. run .. ':' .. ARGV[5], '1', 'NX') then
    kind = 'refused'
  end
end
local t = redis.call('TIME')
local stamp = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local line = stamp .. '\\t' .. kind .. '\\t' .. ARGV[2] .. '\\t' .. run
redis.call('RPUSH', KEYS[2] .. run, line)
return {run, kind}
"""
_KEYS = [keys.RUN, keys.EVENTS_PREFIX, keys.FENCE_PREFIX, keys.IDEMPOTENCY_PREFIX]


class RecordOptions(TypedDict, total=False):
    """What an event may carry besides its kind, work, mechanism and instance."""

    pid: int | None  # the process that did it (default: this one)
    attempt: int  # default 1
    exec_id: str  # one execution of the work (a start and its finish)
    detail: dict[str, Any] | None
    fence: tuple[str, int] | None  # (lock, token): a deposed holder's finish is refused
    idempotency_key: str | None  # a finish under a key already finished is refused


def _argv(kind: Kind | str, work_id: str, mechanism: str, instance: str,
          options: RecordOptions) -> list[str]:
    """The record script's arguments: the kind, the encoded event, its fence and key."""
    pid, fence = options.get("pid"), options.get("fence")
    payload = encode_payload(work_id, mechanism, instance, os.getpid() if pid is None else pid,
                             options.get("attempt", 1), options.get("exec_id", ""),
                             options.get("detail"))
    return [str(kind), payload, fence[0] if fence else "", str(fence[1]) if fence else "",
            clean(options.get("idempotency_key") or "")]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _count(recorded: dict[str, int], reply: Any) -> None:
    """Count a recorded event under its run (the script replies with the run)."""
    if reply:
        run = _text(reply[0])
        recorded[run] = recorded.get(run, 0) + 1


def _recorded(reply: Any) -> str | None:
    """The kind actually recorded (``refused`` if a guard said no), None outside a run."""
    if not reply:
        return None
    kind = reply[1]
    return kind.decode() if isinstance(kind, bytes) else str(kind)


class Ledger:
    """Synchronous ledger client (Celery tasks, the harness)."""

    def __init__(self, client: redis.Redis) -> None:
        # redis-py types each reply as sync-or-async; this client is synchronous.
        self.client: Any = client
        self._script = client.register_script(_RECORD)
        self.recorded: dict[str, int] = {}  # run -> events this client recorded

    @classmethod
    def from_url(cls, url: str) -> Ledger:
        return cls(redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5))

    def record(self, kind: Kind | str, work_id: str, mechanism: str, instance: str,
               **options: Unpack[RecordOptions]) -> str | None:
        """Append one event in one round trip; returns the kind recorded, None outside a run."""
        reply = self._script(keys=_KEYS, args=_argv(kind, work_id, mechanism, instance, options))
        _count(self.recorded, reply)
        return _recorded(reply)

    # --- the harness's side -------------------------------------------------------------
    def now(self) -> float:
        sec, usec = self.client.time()
        return float(sec) + float(usec) / 1e6

    def begin_run(self, run: str) -> float:
        """Open a run: from now on instances' events are recorded under it."""
        self.client.set(keys.RUN, run)
        return self.now()

    def end_run(self) -> float:
        """Close the run: later events are dropped."""
        self.client.delete(keys.RUN)
        return self.now()

    def read_history(self, run: str) -> list[Event]:
        """The whole history as a list, read with the cyclic GC paused (it allocates
        millions of acyclic objects; full collections over them cost more than the read)."""
        enabled = gc.isenabled()
        gc.disable()
        try:
            return list(self.history(run))
        finally:
            if enabled:
                gc.enable()

    def history(self, run: str, start: int = 0, chunk: int = 50_000) -> Iterator[Event]:
        """The run's events in commit order, from list index ``start``."""
        key = keys.events(run)
        index = start
        while True:
            lines = self.client.lrange(key, index, index + chunk - 1)
            if not lines:
                return
            for line in lines:
                yield decode_line(line)
            index += len(lines)

    def announce(self, instance: str, component: str, **info: Any) -> None:
        self.client.hset(keys.INSTANCES, instance,
                         json.dumps({"component": component, "pid": os.getpid(), **info}))

    def instances(self) -> dict[str, dict[str, Any]]:
        raw = self.client.hgetall(keys.INSTANCES)
        return {_text(k): json.loads(v) for k, v in raw.items()}

    def report_counts(self, run: str, instance: str, count: int) -> None:
        self.client.hset(keys.counters(run), instance, count)

    def counts(self, run: str) -> dict[str, int]:
        raw = self.client.hgetall(keys.counters(run))
        return {_text(k): int(v) for k, v in raw.items()}


class AsyncLedger:
    """Asyncio ledger client (the API replicas and their embedded scheduler)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client: Any = client  # redis-py types each reply as sync-or-async
        self._script = client.register_script(_RECORD)
        self.recorded: dict[str, int] = {}

    @classmethod
    def from_url(cls, url: str) -> AsyncLedger:
        return cls(aioredis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5))

    async def record(self, kind: Kind | str, work_id: str, mechanism: str, instance: str,
                     **options: Unpack[RecordOptions]) -> str | None:
        """Append one event in one round trip; returns the kind recorded, None outside a run."""
        argv = _argv(kind, work_id, mechanism, instance, options)
        reply = await self._script(keys=_KEYS, args=argv)
        _count(self.recorded, reply)
        return _recorded(reply)

    async def announce(self, instance: str, component: str, **info: Any) -> None:
        await self.client.hset(keys.INSTANCES, instance,
                               json.dumps({"component": component, "pid": os.getpid(), **info}))

    async def report_counts(self, instance: str) -> None:
        """Report, per run, how many events this instance recorded (checked against the ledger)."""
        for run, count in self.recorded.items():
            await self.client.hset(keys.counters(run), instance, count)

    async def aclose(self) -> None:
        await self.client.aclose()
