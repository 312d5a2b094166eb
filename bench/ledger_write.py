"""1. Ledger write cost, next to a raw Redis round trip from the same client.

Single writer: one synchronous ``Ledger`` client; PING, SET and ``Ledger.record`` are
timed in interleaved rounds on the same connection. Concurrent writers: N separate
*processes* (not threads: the figure is meant to be Redis's and the wire's, not the
GIL's), each with its own client, released together by a barrier. The async client
the API replicas use is timed too. Commands per event come from the server's own
``INFO commandstats`` (EVALSHA, EVAL and SCRIPT calls the client sent per event).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import time
from multiprocessing.synchronize import Barrier
from typing import Any

import redis
import redis.asyncio as aioredis

from bench.common import redis_server
from services.ledger import AsyncLedger, Kind, Ledger

RUN = "bench-write"
_CLIENT_COMMANDS = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_script", "cmdstat_script|load")


def _client_commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(stats[k]["calls"]) for k in _CLIENT_COMMANDS if k in stats)


def _ops(client: redis.Redis, ledger: Ledger, tag: str) -> dict[str, Any]:
    """The operations compared, each a function of the iteration number."""
    return {
        "ping": lambda i: client.ping(),
        "set": lambda i: client.set(f"bench:{tag}:{i % 1000}", "x"),
        "record": lambda i: ledger.record(Kind.START, f"task-{tag}-{i}", "celery", f"w-{tag}",
                                          pid=1, exec_id=f"x{i}"),
        "record_guarded": lambda i: ledger.record(
            Kind.FINISH, f"task-{tag}-{i}", "celery", f"w-{tag}", pid=1, exec_id=f"x{i}",
            fence=("bench", i), idempotency_key=f"{tag}-{i}"),
    }


def _time_ops(client: redis.Redis, ledger: Ledger, tag: str, n: int,
              rounds: int) -> dict[str, float]:
    """Seconds spent on ``n`` calls of each operation, over interleaved rounds."""
    ops = _ops(client, ledger, tag)
    for op in ops.values():  # warm up: connection, script cache, allocator
        for i in range(200):
            op(i)
    spent = dict.fromkeys(ops, 0.0)
    per_round = n // rounds
    for r in range(rounds):
        for name, op in ops.items():
            base = r * per_round
            t = time.perf_counter()
            for i in range(base, base + per_round):
                op(i)
            spent[name] += time.perf_counter() - t
    return spent


def _writer(port: int, tag: str, n: int, barrier: Barrier, out: Any) -> None:
    """One concurrent writer process: time each operation in step with the others."""
    client = redis.Redis(port=port, socket_timeout=30)
    ledger = Ledger(client)
    ops = _ops(client, ledger, tag)
    for op in ops.values():
        for i in range(200):
            op(i)
    result: dict[str, list[float]] = {}
    for name, op in ops.items():
        barrier.wait(timeout=60)
        t = time.perf_counter()
        for i in range(n):
            op(i)
        end = time.perf_counter()
        result[name] = [t, end]
    out.put((tag, result))
    client.close()


def _concurrent(port: int, writers: int, n: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(writers)
    out = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(port, f"p{k}", n, barrier, out))
             for k in range(writers)]
    try:
        for p in procs:
            p.start()
        got = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=10)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
    figures: dict[str, Any] = {}
    for name in ("ping", "set", "record", "record_guarded"):
        spans = [r[name] for _, r in got]
        wall = max(e for _, e in spans) - min(s for s, _ in spans)
        per_writer_us = [(e - s) / n * 1e6 for s, e in spans]
        figures[name] = {
            "per_second_total": round(writers * n / wall),
            "us_per_op_per_writer": round(sum(per_writer_us) / len(per_writer_us), 1),
        }
    return figures


async def _async_single(port: int, n: int) -> dict[str, float]:
    client = aioredis.Redis(port=port, socket_timeout=30)
    ledger = AsyncLedger(client)
    try:
        async def ping(i: int) -> Any:
            return await client.ping()

        async def record(i: int) -> Any:
            return await ledger.record(Kind.START, f"async-{i}", "apscheduler", "api-1",
                                       exec_id=f"a{i}")

        out: dict[str, float] = {}
        for name, op in (("ping", ping), ("record", record)):
            for i in range(200):
                await op(i)
            t = time.perf_counter()
            for i in range(n):
                await op(i)
            out[name] = round((time.perf_counter() - t) / n * 1e6, 1)
        return out
    finally:
        await client.aclose()


def run(n: int = 10_000, writers: int = 4) -> dict[str, Any]:
    with redis_server() as client:
        port = int(client.connection_pool.connection_kwargs["port"])
        ledger = Ledger(redis.Redis(port=port, socket_timeout=30))
        try:
            ledger.begin_run(RUN)
            before = _client_commands(client)
            spent = _time_ops(ledger.client, ledger, "s", n, rounds=4)
            commands = _client_commands(client) - before
            # every timed op ran n + 200 times; PING/SET are not scripting commands
            records = 2 * (n // 4 * 4 + 200)
            single = {
                name: {"per_second": round(n / s), "us_per_op": round(s / n * 1e6, 1)}
                for name, s in spent.items()
            }
            concurrent = _concurrent(port, writers, n // 2)
            async_us = asyncio.run(_async_single(port, n // 2))
            stored = ledger.client.llen(f"scalelab:events:{RUN}")
        finally:
            with contextlib.suppress(Exception):
                ledger.end_run()
            ledger.client.close()
    ping_us = single["ping"]["us_per_op"]
    return {
        "events_per_writer": n,
        "single_writer": single,
        "single_writer_ratio_record_to_ping": round(single["record"]["us_per_op"] / ping_us, 2),
        "single_writer_ratio_guarded_to_ping":
            round(single["record_guarded"]["us_per_op"] / ping_us, 2),
        "client_commands_per_event": round(commands / records, 3),
        "concurrent": {
            "writers": writers,
            "kind": "processes",
            "events_per_writer": n // 2,
            **concurrent,
            "ratio_record_to_ping": round(concurrent["record"]["us_per_op_per_writer"]
                                          / concurrent["ping"]["us_per_op_per_writer"], 2),
        },
        "async_single_writer_us": {**async_us,
                                   "ratio": round(async_us["record"] / async_us["ping"], 2)},
        "events_stored": stored,
    }
