"""The broker's memory limit: a size, or a margin over its footprint with the lab up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from chaos.platform import PlatformError
from chaos.processes import free_port
from chaos.redis_server import (
    MemoryLimit,
    configure,
    footprint,
    kilobytes,
    size_bytes,
)
from tests.conftest import redis_server


def test_sizes_are_in_redis_units() -> None:
    assert size_bytes("1100kb") == 1100 * 1024
    assert size_bytes("2mb") == 2 * 1024 * 1024
    assert size_bytes("1gb") == 1024 ** 3
    assert size_bytes("4096") == 4096
    assert kilobytes(1100 * 1024) == "1100kb"


def test_a_size_is_given_at_start_and_set_as_it_is() -> None:
    limit = MemoryLimit({"broker_maxmemory": "1100kb", "broker_maxmemory_policy": "allkeys-lru"})
    assert not limit.relative
    assert limit.startup_args() == ["--maxmemory", str(1100 * 1024),
                                    "--maxmemory-policy", "allkeys-lru"]
    assert limit.config() == {"maxmemory": str(1100 * 1024), "maxmemory-policy": "allkeys-lru"}
    assert limit.config(footprint=999_999) == limit.config()  # a size ignores the footprint


def test_a_margin_waits_for_the_footprint() -> None:
    limit = MemoryLimit({"broker_maxmemory": "+120kb"})
    assert limit.relative and limit.policy == "noeviction"
    assert limit.startup_args() == []  # nothing at start: the lab is not connected yet
    assert limit.config(footprint=1_000_000) == {"maxmemory": str(1_000_000 + 120 * 1024),
                                                 "maxmemory-policy": "noeviction"}
    with pytest.raises(ValueError, match="footprint"):
        limit.config()


def test_no_limit_is_redis_defaults_so_none_lingers() -> None:
    limit = MemoryLimit({})
    assert limit.startup_args() == []
    assert limit.config() == {"maxmemory": "0", "maxmemory-policy": "noeviction"}


@pytest.fixture
def redis_url(lab_tag: str, tmp_path: Path) -> Iterator[str]:
    with redis_server("broker", lab_tag, tmp_path) as server:
        yield server.url


def test_a_margin_lands_over_a_real_brokers_footprint(redis_url: str) -> None:
    used = footprint(redis_url)
    probe = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert abs(used - int(probe.info("memory")["used_memory"])) < 64 * 1024
        assert configure(redis_url, MemoryLimit({"broker_maxmemory": "+120kb",
                                                 "broker_maxmemory_policy": "allkeys-lru"}
                                                ).config(used))
        assert probe.config_get("maxmemory") == {"maxmemory": str(used + 120 * 1024)}
        assert probe.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
        with pytest.raises(PlatformError, match="refused"):
            configure(redis_url, {"maxmemory-policy": "sometimes"})
        assert probe.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
    finally:
        probe.close()


def test_an_unreachable_broker_is_not_configured_and_its_footprint_is_an_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert configure(url, {"maxmemory": "0"}) is False
    with pytest.raises(PlatformError, match="cannot read the broker's memory"):
        footprint(url)
