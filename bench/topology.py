"""3. Local topology start: seconds until every instance is ready, and memory per instance.

``LocalPlatform.deploy`` returns when every instance answers ready (an API replica
its ``/healthz``, a worker its announcement in the ledger); the figure is the wall
time of that call, which includes the watchdog and both redis-servers. Memory is
read from /proc while the lab idles: RSS and PSS of each instance's process group
(RSS counts pages shared with other processes once per process; PSS splits them).

Each start is taken three ways, side by side:

- ``exec`` (the platform with ``fork_server=False``): every instance a new interpreter
  that imports its app;
- ``fork-cold`` (the platform as the lab runs it): ``deploy`` starts the fork server
  (``chaos.forkserver``), which preloads what the topology's components import while the
  redis-servers start, then forks every instance (each its own session and process
  group); its preload is inside the timed span;
- ``fork-warm``: the fork server was started (``LocalPlatform.start_fork_server``) and
  had preloaded before ``deploy``: what every later instance of a run costs
  (replacements, scale-ups), and what a run costs when its harness starts the fork
  server while it prepares.

The fork server's own start (from its launch to its "preloaded" message) is reported
for both fork rows: ``fork_server_start_seconds``.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Stopwatch, group_memory
from chaos.local import LocalPlatform
from chaos.platform import Topology

CASES: tuple[tuple[dict[str, int], tuple[str, ...]], ...] = (
    ({"api": 1}, ("exec", "fork-cold", "fork-warm")),
    ({"api": 4}, ("exec",)),
    ({"api": 16}, ("exec",)),
    ({"worker": 1}, ("exec",)),
    ({"worker": 4}, ("exec",)),
    ({"api": 16, "worker": 4}, ("exec", "fork-cold", "fork-warm")),
)


def _summary(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(values), 1), "max": round(max(values), 1)}


def start_once(replicas: dict[str, int], how: str = "exec",
               settle: float = 0.5) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="scalelab-bench-topology-"))
    platform = LocalPlatform(workdir, fork_server=how != "exec")
    row: dict[str, Any] = {"replicas": replicas, "how": how}
    try:
        if how == "fork-warm":
            server = platform.start_fork_server([c for c, n in replicas.items() if n])
            assert server is not None
            server.wait_ready()
        with Stopwatch() as ready:
            platform.deploy(Topology(replicas=replicas))
        row["ready_seconds"] = round(ready.seconds, 2)
        server = platform.start_fork_server([])  # the one deploy used
        if server is not None and server.ready_at is not None:
            row["fork_server_start_seconds"] = round(server.ready_at - server.started_at, 2)
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
    def fork_start(replicas: dict[str, int], how: str) -> float | None:
        for r in rows:
            if r["replicas"] == replicas and r["how"] == how:
                return r.get("fork_server_start_seconds")
        return None

    return {"cases": rows,
            "largest_fork_server_start_seconds": fork_start(largest, "fork-warm"),
            "largest_fork_server_start_seconds_cold": fork_start(largest, "fork-cold"),
            "one_api_fork_server_start_seconds": fork_start({"api": 1}, "fork-warm"),
            "one_api_fork_server_start_seconds_cold": fork_start({"api": 1}, "fork-cold"),
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
