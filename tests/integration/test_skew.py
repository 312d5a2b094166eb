"""Clock skew for real: a Python process started with the skew environment sees its wall
clock offset, while the ledger Redis's ``TIME`` (what the ledger stamps events with) and
the monotonic clock are not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.redis_server import RedisServer
from chaos.skew import MAX_SKEW, check_skew, faketime_offset, skew_environment
from tests.conftest import redis_server

# Prints its own wall clock, the ledger Redis's TIME, and its monotonic clock; then the
# same from a forked child (a Celery pool process is one).
PROBE = """
import json, os, sys, time, redis
r = redis.Redis.from_url(sys.argv[1])
def look():
    sec, usec = r.time()
    return {"wall": time.time(), "ledger": sec + usec / 1e6, "monotonic": time.monotonic()}
print(json.dumps(look()), flush=True)
pid = os.fork()
if pid == 0:
    r.connection_pool.reset()
    print(json.dumps(look()), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


@pytest.fixture
def ledger_redis(lab_tag: str, tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server("ledger", lab_tag, tmp_path) as server:
        yield server


def probe(url: str, env: dict[str, str]) -> list[dict[str, float]]:
    out = subprocess.run([sys.executable, "-c", PROBE, url], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize("seconds", [2.0, -1.5])
def test_a_skewed_process_sees_its_clock_offset_and_the_ledger_does_not(
        ledger_redis: RedisServer, seconds: float) -> None:
    before = time.monotonic()
    looks = probe(ledger_redis.url, skew_environment(seconds))
    after = time.monotonic()
    assert len(looks) == 2, "the process and its forked child"
    for look in looks:
        # Its own clock is off by the skew; the ledger's TIME is the real time.
        assert look["wall"] - look["ledger"] == pytest.approx(seconds, abs=0.3)
        assert abs(look["ledger"] - time.time()) < 30
        # The monotonic clock is the machine's, not skewed.
        assert before - 0.1 <= look["monotonic"] <= after + 0.1


def test_without_the_environment_the_clock_is_real(ledger_redis: RedisServer) -> None:
    for look in probe(ledger_redis.url, {}):
        assert look["wall"] - look["ledger"] == pytest.approx(0, abs=0.3)


@pytest.mark.parametrize("bad", [MAX_SKEW + 1, -MAX_SKEW - 0.5, float("nan"), float("inf")])
def test_a_skew_beyond_the_bound_is_refused_in_one_line(bad: float) -> None:
    with pytest.raises(ValueError, match="within ±3600") as err:
        check_skew(bad)
    assert "\n" not in str(err.value)


def test_the_offset_is_in_seconds() -> None:
    assert faketime_offset(2) == "+2.000"
    assert faketime_offset(-0.25) == "-0.250"
    assert skew_environment(MAX_SKEW)["FAKETIME"] == "+3600.000"
