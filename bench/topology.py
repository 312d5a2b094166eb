"""3. Local topology start: seconds until every instance is ready, and memory per instance.

``LocalPlatform.deploy`` returns when every instance answers ready (an API replica
its ``/healthz``, a worker its announcement in the ledger); the figure is the wall
time of that call, which includes the watchdog and both redis-servers. Memory is
read from /proc while the lab idles: RSS of each API replica's process group, and
for a worker the RSS and PSS summed over its group (main process and prefork pool
children; RSS counts shared pages once per process, PSS splits them).
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

CASES: tuple[dict[str, int], ...] = (
    {"api": 1}, {"api": 4}, {"api": 16}, {"worker": 1}, {"worker": 4}, {"api": 16, "worker": 4},
)


def _summary(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(values), 1), "max": round(max(values), 1)}


def start_once(replicas: dict[str, int], settle: float = 0.5) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="scalelab-bench-topology-"))
    platform = LocalPlatform(workdir)
    row: dict[str, Any] = {"replicas": replicas}
    try:
        with Stopwatch() as ready:
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
        row["teardown_seconds"] = round(down.seconds, 2)
        shutil.rmtree(workdir, ignore_errors=True)
    return row


def run(cases: tuple[dict[str, int], ...] = CASES) -> dict[str, Any]:
    rows = [start_once(dict(c)) for c in cases]
    largest = rows[-1]
    api_rss = max(r["api"]["rss_mb"]["max"] for r in rows if "api" in r)
    return {"cases": rows, "largest_ready_seconds": largest["ready_seconds"],
            "api_rss_mb_max": api_rss,
            "worker_rss_mb_max": max(r["worker"]["rss_mb"]["max"] for r in rows if "worker" in r),
            "worker_pss_mb_max": max(r["worker"]["pss_mb"]["max"] for r in rows if "worker" in r)}
