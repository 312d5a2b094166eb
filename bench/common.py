"""What every bench section shares: a private redis-server, timers, the machine."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import redis

from chaos.processes import free_port
from chaos.redis_server import redis_server_binary, redis_version


@contextlib.contextmanager
def redis_server() -> Iterator[redis.Redis]:
    """A private redis-server (no persistence) on loopback; stopped and removed on exit."""
    binary = redis_server_binary()
    workdir = Path(tempfile.mkdtemp(prefix="scalelab-bench-redis-"))
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        start_new_session=True, cwd=workdir)
    client = redis.Redis(port=port, socket_timeout=60, socket_connect_timeout=1)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("bench redis-server did not start") from None
                time.sleep(0.02)
        yield client
    finally:
        client.close()
        stop_group(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def stop_group(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """SIGTERM the process group of ``proc`` (started with a new session), then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def group_processes(pgid: int) -> list[psutil.Process]:
    """Every live process whose process group is ``pgid``."""
    found = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(p.pid) == pgid:
                found.append(p)
    return found


def group_memory(pgid: int) -> dict[str, float]:
    """RSS and PSS (MB) summed over a process group, and how many processes it has.

    RSS counts pages a prefork worker shares with its pool children once per process;
    PSS splits shared pages between the processes that map them, so it sums honestly.
    """
    rss = pss = 0
    procs = group_processes(pgid)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            info = p.memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", 0)
    return {"rss_mb": round(rss / 2**20, 1), "pss_mb": round(pss / 2**20, 1),
            "processes": len(procs)}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        redis_server = redis_version()
    except Exception as exc:  # the figures still stand; say why the version is missing
        redis_server = f"unknown ({exc})"
    return {
        "host": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "redis_py": redis.__version__,
        "redis_server": redis_server,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds`` (wall) and ``sw.cpu_seconds``
    (this process's CPU time: on a busy machine, what the work itself cost)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.seconds = 0.0
        self.cpu_started = 0.0
        self.cpu_seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self.cpu_seconds = time.process_time() - self.cpu_started
