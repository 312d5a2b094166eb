"""3. Local topology start: seconds until every instance is ready, and memory per instance.

``LocalPlatform.deploy`` returns when every instance answers ready (an API replica
its ``/healthz``, a worker its announcement in the ledger); the figure is the wall
time of that call, which includes the watchdog and both redis-servers. Memory is
read from /proc while the lab idles: RSS and PSS of each instance's process group
(RSS counts pages shared with other processes once per process; PSS splits them).

Each start is taken two ways, side by side:

- ``exec`` (today's way): every instance a new interpreter that imports its app;
- ``fork``: instances forked by ``chaos.forkserver`` (one pre-imported parent, each
  child its own session and process group), preloading what the topology's
  components import. ``cold``: the fork server is started inside the timed span, so
  its one import is paid there; ``warm``: it was started and had preloaded before.

Until the local platform wires the fork server in, the bench wires it itself:
``forked_instances`` has ``chaos.local`` build each instance's ``Group`` with a
process the fork server forked (what ``can_fork`` refuses is exec'd as before).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chaos.local
from bench.common import Stopwatch, group_memory
from chaos.forkserver import ForkServer, preload_for
from chaos.local import LocalPlatform
from chaos.platform import Topology
from chaos.processes import LAB_TAG, Group, Watchdog

CASES: tuple[tuple[dict[str, int], tuple[str, ...]], ...] = (
    ({"api": 1}, ("exec", "fork-cold", "fork-warm")),
    ({"api": 4}, ("exec",)),
    ({"api": 16}, ("exec",)),
    ({"worker": 1}, ("exec",)),
    ({"worker": 4}, ("exec",)),
    ({"api": 16, "worker": 4}, ("exec", "fork-cold", "fork-warm")),
)


class _ForkedGroup(Group):
    """A ``Group`` whose process the fork server forked, when it can fork it."""

    server: ForkServer | None = None

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path,
                 watchdog: Watchdog, cwd: str | None = None) -> None:
        server = type(self).server
        full = {**env, LAB_TAG: watchdog.tag}
        if server is None or not server.can_fork(args, full):
            super().__init__(args, env, log_path, watchdog, cwd)
            return
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in reap(), as Group's
        self.proc = server.popen(args, full, log_path, cwd)  # type: ignore[assignment]
        self.pid = self.proc.pid
        self._watchdog = watchdog
        watchdog.watch(self.pid)


@contextlib.contextmanager
def forked_instances(server: ForkServer) -> Iterator[None]:
    """While inside, the local platform's instances are forked by ``server``."""
    _ForkedGroup.server = server
    chaos.local.Group = _ForkedGroup  # type: ignore[misc]
    try:
        yield
    finally:
        chaos.local.Group = Group  # type: ignore[misc]
        _ForkedGroup.server = None


def _summary(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(values), 1), "max": round(max(values), 1)}


def start_once(replicas: dict[str, int], how: str = "exec",
               settle: float = 0.5) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="scalelab-bench-topology-"))
    platform = LocalPlatform(workdir)
    row: dict[str, Any] = {"replicas": replicas, "how": how}
    server: ForkServer | None = None
    env = {**os.environ, LAB_TAG: platform.tag}
    preload = preload_for([c for c, n in replicas.items() if n])
    try:
        if how == "fork-warm":
            server = ForkServer(env, preload)
            with Stopwatch() as preload:
                server.wait_ready()
            row["fork_server_preload_seconds"] = round(preload.seconds, 2)
        with Stopwatch() as ready:
            if how == "fork-cold":
                server = ForkServer(env, preload)
            with forked_instances(server) if server else contextlib.nullcontext():
                platform.deploy(Topology(replicas=replicas))
        row["ready_seconds"] = round(ready.seconds, 2)
        time.sleep(settle)  # let lazy imports and first scheduler ticks settle
        for component in ("api", "worker"):
            instances = platform.instances(component)
            if not instances:
                continue
            mem = [group_memory(i.pid) for i in instances]
            row[component] = {
                "instances": len(instances),
                "rss_mb": _summary([m["rss_mb"] for m in mem]),
                "pss_mb": _summary([m["pss_mb"] for m in mem]),
                "processes_per_instance": max(int(m["processes"]) for m in mem),
            }
    finally:
        with Stopwatch() as down:
            platform.teardown()
            if server is not None:
                server.close()
        row["teardown_seconds"] = round(down.seconds, 2)
        shutil.rmtree(workdir, ignore_errors=True)
    return row


def _ready(rows: list[dict[str, Any]], replicas: dict[str, int], how: str) -> float | None:
    for r in rows:
        if r["replicas"] == replicas and r["how"] == how:
            return float(r["ready_seconds"])
    return None


def run(cases: tuple[tuple[dict[str, int], tuple[str, ...]], ...] = CASES) -> dict[str, Any]:
    rows = [start_once(dict(replicas), how) for replicas, hows in cases for how in hows]
    largest = {"api": 16, "worker": 4}
    api_rss = {how: max((r["api"]["rss_mb"]["max"] for r in rows
                         if "api" in r and r["how"] == how), default=None)
               for how in ("exec", "fork-cold", "fork-warm")}
    api_pss = {how: max((r["api"]["pss_mb"]["max"] for r in rows
                         if "api" in r and r["how"] == how), default=None)
               for how in ("exec", "fork-cold", "fork-warm")}
    return {"cases": rows,
            "largest_ready_seconds": _ready(rows, largest, "exec"),
            "largest_ready_seconds_fork_cold": _ready(rows, largest, "fork-cold"),
            "largest_ready_seconds_fork_warm": _ready(rows, largest, "fork-warm"),
            "one_api_ready_seconds": _ready(rows, {"api": 1}, "exec"),
            "one_api_ready_seconds_fork_cold": _ready(rows, {"api": 1}, "fork-cold"),
            "one_api_ready_seconds_fork_warm": _ready(rows, {"api": 1}, "fork-warm"),
            "api_rss_mb_max": api_rss["exec"],
            "api_rss_mb_max_by_start": api_rss,
            "api_pss_mb_max_by_start": api_pss,
            "worker_rss_mb_max": max(r["worker"]["rss_mb"]["max"] for r in rows
                                     if "worker" in r),
            "worker_pss_mb_max": max(r["worker"]["pss_mb"]["max"] for r in rows
                                     if "worker" in r)}
