"""The ledger: the one module that writes (and names the keys of) the lab's observations.

The ledger is its own Redis (never the broker; no fault targets it). Each event is
one line appended to a per-run list by one Lua script, so an event costs exactly
one round trip, and its timestamp is the ledger Redis's own clock (``TIME``), so
no host clock skews the order. The list order is the commit order.

Keys (all run-scoped keys are composed inside the script from the current run):

- ``scalelab:run``                 the current run id; events outside a run are dropped
- ``scalelab:events:<run>``        the history: one tab-separated line per event
- ``scalelab:fence:<run>:<name>``  highest fencing token seen for a guarded resource;
                                   a write with a lower token is refused (prevents a
                                   duplicate from a deposed leader)
- ``scalelab:idem:<run>:<key>``    idempotency key of an effect; a second effect with
                                   the same key is refused (prevents a duplicate from
                                   a redelivery)
- ``scalelab:instances``           hash: instance name -> JSON announcement (pid, component)
- ``scalelab:counters:<run>``      hash: instance name -> events that instance recorded,
                                   reported by the instance itself at shutdown

Event kinds: ``intent`` (the harness got an acknowledgement), ``start``, ``finish``
(the unit's effect), ``refused`` (an effect refused by a fence or idempotency key),
``fault`` (the nemesis acted).
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import redis
import redis.asyncio as aioredis

RUN_KEY = "scalelab:run"
INSTANCES_KEY = "scalelab:instances"
EVENTS_PREFIX = "scalelab:events:"
COUNTERS_PREFIX = "scalelab:counters:"


def events_key(run: str) -> str:
    return f"{EVENTS_PREFIX}{run}"


def counters_key(run: str) -> str:
    return f"{COUNTERS_PREFIX}{run}"


def scheduled_work_id(job: str, fire_time: float) -> str:
    """The work_id of a scheduled unit: ``<job>@<fire time>``, the same on every replica."""
    return f"{job}@{fire_time:.3f}"


def parse_scheduled(work_id: str) -> tuple[str, float] | None:
    """``(job, fire time)`` of a scheduled work_id, None for any other unit of work."""
    job, sep, when = work_id.rpartition("@")
    if not sep:
        return None
    try:
        return job, float(when)
    except ValueError:
        return None


class Kind(StrEnum):
    INTENT = "intent"
    START = "start"
    FINISH = "finish"
    REFUSED = "refused"
    FAULT = "fault"


# KEYS: none declared (single-instance Redis; run-scoped keys are built from the run).
# ARGV: kind, payload, fence name, fence token, idempotency key.
_RECORD = """
local run = redis.call('GET', 'scalelab:run')
if not run then return false end
local kind = ARGV[1]
if ARGV[4] ~= '' then
  local fkey = 'scalelab:fence:' .. run .. ':' .. ARGV[3]
  local cur = tonumber(redis.call('GET', fkey) or '-1')
  if tonumber(ARGV[4]) < cur then kind = 'refused' else redis.call('SET', fkey, ARGV[4]) end
end
if kind == 'finish' and ARGV[5] ~= '' then
  if not redis.call('SET', 'scalelab:idem:' .. run .. ':' .. ARGV[5], '1', 'NX') then
    kind = 'refused'
  end
end
local t = redis.call('TIME')
local stamp = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local line = stamp .. '\\t' .. kind .. '\\t' .. ARGV[2] .. '\\t' .. run
redis.call('RPUSH', 'scalelab:events:' .. run, line)
return {run, kind}
"""

_FIELDS = 10  # t, kind, work_id, mechanism, instance, pid, attempt, exec_id, detail, run


_NO_DETAIL: dict[str, Any] = {}


class Event(NamedTuple):
    """One observation. ``t`` is seconds on the ledger Redis's clock.

    A named tuple, not a dataclass: a check reads up to millions of them, and a
    tuple is the cheapest immutable record Python builds. ``detail`` is shared
    when empty; never mutate it.
    """

    t: float
    kind: str
    work_id: str
    mechanism: str
    instance: str
    pid: int = 0
    attempt: int = 1
    exec_id: str = ""
    detail: dict[str, Any] = _NO_DETAIL
    run: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "kind": self.kind,
            "work_id": self.work_id,
            "mechanism": self.mechanism,
            "instance": self.instance,
            "pid": self.pid,
            "attempt": self.attempt,
            "exec_id": self.exec_id,
            "detail": self.detail,
            "run": self.run,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        return cls(
            t=float(data["t"]),
            kind=str(data["kind"]),
            work_id=str(data["work_id"]),
            mechanism=str(data.get("mechanism", "")),
            instance=str(data.get("instance", "")),
            pid=int(data.get("pid", 0)),
            attempt=int(data.get("attempt", 1)),
            exec_id=str(data.get("exec_id", "")),
            detail=dict(data.get("detail") or {}),
            run=str(data.get("run", "")),
        )


def _clean(value: str) -> str:
    if "\t" in value or "\n" in value:
        raise ValueError(f"ledger fields cannot hold tabs or newlines: {value!r}")
    return value


def encode_payload(
    work_id: str,
    mechanism: str,
    instance: str,
    pid: int,
    attempt: int,
    exec_id: str,
    detail: dict[str, Any] | None,
) -> str:
    parts = [_clean(work_id), _clean(mechanism), _clean(instance), str(pid), str(attempt),
             _clean(exec_id), json.dumps(detail, separators=(",", ":")) if detail else ""]
    return "\t".join(parts)


def decode_line(line: bytes | str) -> Event:
    text = line.decode() if isinstance(line, bytes) else line
    p = text.split("\t")  # JSON escapes tabs: only separators are raw tabs
    if len(p) != _FIELDS:
        raise ValueError(f"malformed ledger line: {text[:80]!r}")
    return Event(float(p[0]), p[1], p[2], p[3], p[4], int(p[5]), int(p[6]), p[7],
                 json.loads(p[8]) if p[8] else _NO_DETAIL, p[9])


@dataclass
class _Args:
    kind: str
    payload: str
    fence_name: str
    fence_token: str
    idempotency_key: str

    def argv(self) -> list[str]:
        return [self.kind, self.payload, self.fence_name, self.fence_token, self.idempotency_key]


def _args(
    kind: Kind | str,
    work_id: str,
    mechanism: str,
    instance: str,
    *,
    pid: int | None,
    attempt: int,
    exec_id: str,
    detail: dict[str, Any] | None,
    fence: tuple[str, int] | None,
    idempotency_key: str | None,
) -> _Args:
    return _Args(
        str(kind),
        encode_payload(work_id, mechanism, instance, os.getpid() if pid is None else pid,
                       attempt, exec_id, detail),
        fence[0] if fence else "",
        str(fence[1]) if fence else "",
        _clean(idempotency_key or ""),
    )


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
        self.client = client
        self._script = client.register_script(_RECORD)
        self.recorded: dict[str, int] = {}  # run -> events this client recorded

    @classmethod
    def from_url(cls, url: str) -> Ledger:
        return cls(redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5))

    def record(
        self,
        kind: Kind | str,
        work_id: str,
        mechanism: str,
        instance: str,
        *,
        pid: int | None = None,
        attempt: int = 1,
        exec_id: str = "",
        detail: dict[str, Any] | None = None,
        fence: tuple[str, int] | None = None,
        idempotency_key: str | None = None,
    ) -> str | None:
        """Append one event in one round trip; returns the kind recorded, None outside a run."""
        a = _args(kind, work_id, mechanism, instance, pid=pid, attempt=attempt, exec_id=exec_id,
                  detail=detail, fence=fence, idempotency_key=idempotency_key)
        reply = self._script(keys=[], args=a.argv())
        _count(self.recorded, reply)
        return _recorded(reply)

    # --- the harness's side -------------------------------------------------------------
    def now(self) -> float:
        sec, usec = self.client.time()
        return float(sec) + float(usec) / 1e6

    def begin_run(self, run: str) -> float:
        """Open a run: from now on instances' events are recorded under it."""
        self.client.set(RUN_KEY, run)
        return self.now()

    def end_run(self) -> float:
        """Close the run: later events are dropped."""
        self.client.delete(RUN_KEY)
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
        key = events_key(run)
        index = start
        while True:
            lines = self.client.lrange(key, index, index + chunk - 1)
            if not lines:
                return
            for line in lines:
                yield decode_line(line)
            index += len(lines)

    def announce(self, instance: str, component: str, **info: Any) -> None:
        self.client.hset(INSTANCES_KEY, instance,
                         json.dumps({"component": component, "pid": os.getpid(), **info}))

    def instances(self) -> dict[str, dict[str, Any]]:
        raw = self.client.hgetall(INSTANCES_KEY)
        return {_text(k): json.loads(v) for k, v in raw.items()}

    def report_counts(self, run: str, instance: str, count: int) -> None:
        self.client.hset(counters_key(run), instance, count)

    def counts(self, run: str) -> dict[str, int]:
        raw = self.client.hgetall(counters_key(run))
        return {_text(k): int(v) for k, v in raw.items()}


class AsyncLedger:
    """Asyncio ledger client (the API replicas and their embedded scheduler)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._script = client.register_script(_RECORD)
        self.recorded: dict[str, int] = {}

    @classmethod
    def from_url(cls, url: str) -> AsyncLedger:
        return cls(aioredis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5))

    async def record(
        self,
        kind: Kind | str,
        work_id: str,
        mechanism: str,
        instance: str,
        *,
        attempt: int = 1,
        exec_id: str = "",
        detail: dict[str, Any] | None = None,
        fence: tuple[str, int] | None = None,
        idempotency_key: str | None = None,
    ) -> str | None:
        """Append one event in one round trip; returns the kind recorded, None outside a run."""
        a = _args(kind, work_id, mechanism, instance, pid=None, attempt=attempt, exec_id=exec_id,
                  detail=detail, fence=fence, idempotency_key=idempotency_key)
        reply = await self._script(keys=[], args=a.argv())
        _count(self.recorded, reply)
        return _recorded(reply)

    async def announce(self, instance: str, component: str, **info: Any) -> None:
        await self.client.hset(INSTANCES_KEY, instance,
                               json.dumps({"component": component, "pid": os.getpid(), **info}))

    async def report_counts(self, instance: str) -> None:
        """Report, per run, how many events this instance recorded (checked against the ledger)."""
        for run, count in self.recorded.items():
            await self.client.hset(counters_key(run), instance, count)

    async def aclose(self) -> None:
        await self.client.aclose()
