"""A run's start cost in a suite: what a harness pays before its run begins.

Before: each run of a parallel suite was ``python -m experiments.cli run-child`` exec'd
(the harness imports), and its platform exec'd ``python -m chaos.forkserver`` (the
instances' preload). Now: the suite's one fork server, preloaded once, forks each
harness, and the harness forks its instances' server from itself. Both are measured
here with the suite's own code paths and an order that stops right after the start
(an experiment that does not exist: the harness exits 2 once it has started, its
instances' server with it). CPU-seconds are the harness's and its server's own, read
from the kernel's accounting of reaped children; the one-off preload of the suite's
server is reported apart (it is paid once per suite, not per run).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from chaos.forkserver import PRELOAD, ForkServer
from chaos.processes import LAB_TAG, Group, Watchdog
from experiments.parallel import HARNESS, HARNESS_PRELOAD

RUNS = 6


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _own_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _order(directory: Path, i: int) -> Path:
    order = directory / f"{i}.order.json"
    order.write_text(json.dumps({"experiment": "no-such-experiment", "values": {}, "seed": 1,
                                 "results": str(directory), "platform": "local",
                                 "platform_options": {}, "label": "start"}))
    return order


def _exec(directory: Path, env: dict[str, str]) -> list[tuple[float, float]]:
    """Before: an exec'd harness, then an exec'd fork server preloading the instances."""
    costs = []
    for i in range(RUNS):
        cpu, wall = _cpu(), time.monotonic()
        subprocess.run([sys.executable, "-m", HARNESS, "run-child", str(_order(directory, i))],
                       env=env, capture_output=True, check=False)
        server = ForkServer(env, PRELOAD)
        server.wait_ready()
        server.close()
        costs.append((_cpu() - cpu, time.monotonic() - wall))
    return costs


def _forked(directory: Path, env: dict[str, str]) -> tuple[list[tuple[float, float]], float,
                                                            float]:
    """Now: harnesses forked by the suite's server, each forking its instances' server."""
    watchdog = Watchdog(env[LAB_TAG])
    started = time.monotonic()
    server = ForkServer(env, (*PRELOAD, *HARNESS_PRELOAD), modules=frozenset({HARNESS}))
    server.wait_ready()
    preload_wall, preload_cpu = time.monotonic() - started, _own_cpu(server.pid)
    walls = []
    try:
        for i in range(RUNS):
            wall = time.monotonic()
            group = Group([sys.executable, "-m", HARNESS, "run-child",
                           str(_order(directory, i))], env, directory / f"{i}.log", watchdog,
                          spawner=server)
            group.reap(timeout=60)
            walls.append(time.monotonic() - wall)
    finally:
        before = _cpu()
        total = _own_cpu(server.pid)  # the server itself, before its children's share
        server.close()
        watchdog.close()
    # what the harnesses (and their servers) cost: the server's reaped children
    harnesses = _cpu() - before - total
    return [(harnesses / RUNS, w) for w in walls], preload_cpu, preload_wall


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="scalelab-bench-start-") as tmp:
        directory = Path(tmp)
        env = {**os.environ, LAB_TAG: f"bench-start-{os.getpid()}"}
        before = _exec(directory, env)
        now, preload_cpu, preload_wall = _forked(directory, env)
    return {
        "runs": RUNS,
        "exec_cpu_seconds": round(statistics.median(c for c, _ in before), 3),
        "exec_wall_seconds": round(statistics.median(w for _, w in before), 3),
        "forked_cpu_seconds": round(statistics.median(c for c, _ in now), 3),
        "forked_wall_seconds": round(statistics.median(w for _, w in now), 3),
        "suite_server_preload_cpu_seconds": round(preload_cpu, 3),
        "suite_server_preload_wall_seconds": round(preload_wall, 3),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
