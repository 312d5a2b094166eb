"""``scalelab serve``: the index page over 1,000 stored runs, through a real uvicorn.

Synthetic run directories (a ``summary.json`` shaped as the runner writes one, a
small ``events.jsonl``, a ``logs/`` dir) are written to a temp dir: 960 runs at the
top, two suites of 20, a run in progress and a failed one. The index is then fetched
over HTTP from a uvicorn on a free loopback port: once cold (every ``summary.json``
read and parsed), then warm (summaries cached by size and mtime; the directory is
still listed and stat'ed on every request). Wall time and this process's CPU time
(server and client share it) are both kept: on a busy machine the first is mostly
waiting. ``python -m bench.serve_index`` prints it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

RUNS = 1000
SUITES, PER_SUITE = 2, 20
WARM_ROUNDS = 7
GOAL_SECONDS = 1.0


def _summary(rng: random.Random, name: str, experiment: str,
             params: dict[str, Any]) -> dict[str, Any]:
    due = rng.randint(3, 30)
    dup = rng.randint(0, due)
    lost = rng.randint(0, due - dup)
    ok = due - dup - lost
    return {
        "experiment": experiment, "platform": "local", "seed": rng.randint(1, 5),
        "run_id": name, "parameters": params,
        "window": {"start": 1.8e9, "end": 1.8e9 + 10, "duration": 10.0},
        "schedules": [{"job": "tick", "interval": 1.0, "epoch": 0.0, "aligned": True}],
        "late_after": 0.5, "expected": due, "executions": ok + 2 * dup,
        "counts": {"ok": ok, "lost": lost, "duplicated": dup, "recovered": 0,
                   "unexpected": 0, "in_doubt": 0},
        "extra_executions": dup, "refused": 0, "ignored": 1, "late": 0, "measured": {},
        "faults": [{"at": 2.5, "action": "kill", "target": "api-1", "inflight": 1,
                    "mid_job": True, "step": "kill api at start"}],
        "topology": {"api": 3}, "valid": rng.random() < 0.9,
        "expectation": f"{dup}/{due} duplicated",
        "versions": {"celery": "5.7.0", "redis-server": "6.2.14", "uvicorn": "0.54.0"},
        "wall_seconds": 12.3,
    }


def make_results(root: Path, seed: int = 1) -> int:
    """Write the synthetic results tree; returns how many run directories it holds."""
    from experiments import catalog

    rng = random.Random(seed)
    specs = list(catalog.CATALOG.values())
    start = datetime(2026, 1, 1, tzinfo=UTC)
    event = json.dumps({"t": 1.8e9, "kind": "finish", "work_id": "tick@1800000000.000",
                        "mechanism": "apscheduler", "instance": "api-1", "pid": 1,
                        "attempt": 1, "exec_id": "x", "detail": {}, "run": "r"})

    def run(directory: Path, i: int) -> None:
        spec = specs[i % len(specs)]
        directory.mkdir(parents=True)
        (directory / "summary.json").write_text(json.dumps(
            _summary(rng, directory.name, spec.name, spec.defaults()), indent=2))
        (directory / "events.jsonl").write_text((event + "\n") * 20)
        (directory / "logs").mkdir()

    top = RUNS - SUITES * PER_SUITE
    for i in range(top):
        when = start + timedelta(minutes=i)
        run(root / f"{when:%Y%m%dT%H%M%SZ}-{specs[i % len(specs)].name}", i)
    for s in range(SUITES):
        suite = root / f"{start + timedelta(days=30, hours=s):%Y%m%dT%H%M%SZ}-suite"
        for i in range(PER_SUITE):
            when = start + timedelta(days=30, hours=s, seconds=i)
            run(suite / f"{when:%Y%m%dT%H%M%SZ}-{specs[i % len(specs)].name}", i)
        (suite / "report.md").write_text("# suite\n")
    (root / "20270101T000000Z-celery-kill.partial" / "logs").mkdir(parents=True)
    (root / "20270101T000001Z-celery-kill.failed" / "logs").mkdir(parents=True)
    return RUNS + 2


def run() -> dict[str, Any]:
    import httpx
    import uvicorn

    from experiments.web import create_app
    from experiments.web.cli import bind

    root = Path(tempfile.mkdtemp(prefix="scalelab-bench-serve-"))
    try:
        t = time.perf_counter()
        directories = make_results(root)
        generate = time.perf_counter() - t
        sock = bind("127.0.0.1", 0)
        server = uvicorn.Server(uvicorn.Config(create_app(root), log_level="warning",
                                               access_log=False, lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        try:
            url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
            with httpx.Client(timeout=60) as client:
                t, cpu = time.perf_counter(), time.process_time()
                first = client.get(url)
                cold, cold_cpu = time.perf_counter() - t, time.process_time() - cpu
                first.raise_for_status()
                warm, warm_cpu = [], []
                for _ in range(WARM_ROUNDS):
                    t, cpu = time.perf_counter(), time.process_time()
                    client.get(url).raise_for_status()
                    warm.append(time.perf_counter() - t)
                    warm_cpu.append(time.process_time() - cpu)
            rows = first.text.count('class="run-link"')
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    median = statistics.median(warm)
    return {
        "load_average_1m": round(os.getloadavg()[0], 2),
        "run_directories": directories, "runs_linked": rows,
        "generate_seconds": round(generate, 2),
        "index_cold_seconds": round(cold, 3), "index_warm_median_seconds": round(median, 3),
        "index_warm_max_seconds": round(max(warm), 3),
        # CPU seconds of this process (server and client): what the wall time would be
        # on an idle core, whatever else the machine runs
        "index_cold_cpu_seconds": round(cold_cpu, 3),
        "index_warm_cpu_median_seconds": round(statistics.median(warm_cpu), 3),
        "page_bytes": len(first.content),
        "goal_seconds": GOAL_SECONDS, "met": cold <= GOAL_SECONDS and median <= GOAL_SECONDS,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
