"""5. Kill-to-redelivery for ``celery-kill --acks late``.

Runs ``scalelab run celery-kill --acks late --kills K`` (a real lab: two prefork
workers, mid-job SIGKILLs triggered by ``start`` events in the ledger) a few times
through the CLI and pools ``measured.kill_to_redelivery_seconds``: for every task
killed in flight, seconds from the kill to its next ``start`` on the ledger clock.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import Stopwatch, stop_group

ROOT = Path(__file__).resolve().parent.parent


def _args(kills: int, seed: int, results: Path) -> list[str]:
    first, every = 2.0, 3.0
    duration = first + (kills - 1) * every + 1.0
    return [sys.executable, "-m", "experiments.cli", "run", "celery-kill", "--seed", str(seed),
            "--results", str(results), "--json", "--acks=late", f"--kills={kills}",
            f"--first-kill={first}", f"--kill-every={every}", f"--duration={duration}"]


def run(runs: int = 2, kills: int = 4, timeout: float = 120.0) -> dict[str, Any]:
    results = Path(tempfile.mkdtemp(prefix="scalelab-bench-redelivery-"))
    times: list[float] = []
    rows = []
    try:
        for k in range(runs):
            args = _args(kills, seed=k + 1, results=results)
            with Stopwatch() as wall:
                proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True,
                                        start_new_session=True)
                try:
                    out, err = proc.communicate(timeout=timeout)
                except subprocess.TimeoutExpired:
                    stop_group(proc)
                    rows.append({"run": k + 1, "error": f"timed out after {timeout:.0f}s"})
                    continue
                finally:
                    stop_group(proc, grace=1.0)
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            if not lines:
                rows.append({"run": k + 1, "exit": proc.returncode,
                             "error": (err.strip().splitlines() or ["no output"])[-1]})
                continue
            summary = json.loads(lines[-1])
            found = [float(x) for x in summary["measured"]["kill_to_redelivery_seconds"]]
            times.extend(found)
            rows.append({"run": k + 1, "exit": proc.returncode, "valid": summary["valid"],
                         "kills_fired": len(summary["faults"]),
                         "with_work_in_flight": summary["mid_job_faults"]["with_work_in_flight"],
                         "redeliveries": found, "counts": summary["counts"],
                         "wall_seconds": round(wall.seconds, 1)})
    finally:
        shutil.rmtree(results, ignore_errors=True)
    return {
        "command": " ".join(["scalelab", *_args(kills, 1, Path("DIR"))[3:]]),
        "runs": rows,
        "samples": len(times),
        "median_seconds": round(statistics.median(times), 3) if times else None,
        "max_seconds": round(max(times), 3) if times else None,
        "min_seconds": round(min(times), 3) if times else None,
    }
