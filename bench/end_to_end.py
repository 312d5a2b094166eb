"""4. End to end: ``make lab`` from a fresh clone, split into install and experiments.

``git clone`` of this repository's committed HEAD into a temporary directory, then
``make .venv/.installed`` (what ``make lab`` installs first: the venv and the lab,
with uv from the lock, and its bytecode) and ``make lab`` (which is ``scalelab suite
--quick``; the stamp is fresh, so nothing is reinstalled), each timed. ``make lab``
from a fresh clone is their sum (plus the clone). The suite's own figure is the
``make lab`` step; the run summaries it writes give each experiment's wall time and
the configured workload seconds, the floor a sequential suite cannot go under.

Package sources: the installers' ordinary configuration on this machine. With
``SCALELAB_BENCH_COLD=1`` a second clone is set up with ``UV_NO_CACHE=1`` and
``PIP_NO_CACHE_DIR=1`` (cold caches; opt-in: it downloads every package again).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Stopwatch, stop_group

ROOT = Path(__file__).resolve().parent.parent


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(ROOT / ".venv")))
    env.update(extra)
    return env


def _step(args: list[str], cwd: Path, log: Path, timeout: float,
          env: dict[str, str]) -> dict[str, Any]:
    """Run one step in its own session; on timeout interrupt it (the lab tears down).
    ``cpu_seconds``: the CPU time of the processes it waited for (what the step cost,
    whatever else the machine was doing)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with Stopwatch() as sw, open(log, "w") as out:
        proc = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        timed_out = False
        try:
            proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: scalelab tears its lab down
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
        finally:
            stop_group(proc, grace=5.0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    row: dict[str, Any] = {"command": " ".join(args), "seconds": round(sw.seconds, 1),
                           "cpu_seconds": round(cpu, 1), "exit": proc.returncode,
                           "timed_out": timed_out}
    if proc.returncode != 0:
        row["log_tail"] = log.read_text(errors="replace").strip().splitlines()[-3:]
    return row


def _suite_runs(results: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(results.glob("**/summary.json")):
        s = json.loads(path.read_text())
        runs.append({"experiment": s["experiment"], "parameters": s["parameters"],
                     "valid": s["valid"], "wall_seconds": s["wall_seconds"],
                     "window_seconds": s["window"]["duration"]})
    return runs


def _clone(into: Path) -> float:
    with Stopwatch() as sw:
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(into)], check=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    return round(sw.seconds, 1)


def total_elapsed(sw: Stopwatch) -> float:
    return time.perf_counter() - sw.started


def run(budget: float, cold: bool = False) -> dict[str, Any]:
    """Everything must end within ``budget`` seconds; a step cut off says so."""
    base = Path(tempfile.mkdtemp(prefix="scalelab-bench-clone-"))
    result: dict[str, Any] = {"budget_seconds": round(budget)}
    with Stopwatch() as total:
        try:
            clone = base / "scalelab"
            result["clone_seconds"] = _clone(clone)
            head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone,
                                  capture_output=True, text=True, check=True).stdout.strip()
            result["commit"] = head
            result["setup"] = _step(["make", ".venv/.installed"], clone, base / "setup.log",
                                    budget - total_elapsed(total), _env())
            if result["setup"]["exit"] == 0:
                result["lab"] = _step(["make", "lab"], clone, base / "lab.log",
                                      budget - total_elapsed(total), _env())
                results_dir = clone / "results"
                if result["lab"]["exit"] != 0 and not _suite_runs(results_dir):
                    # `make lab` could not run a single variant: time the same suite with
                    # an absolute results directory, and report both.
                    results_dir = base / "suite-results"
                    result["lab_failed"] = result["lab"]
                    result["lab"] = _step(
                        [".venv/bin/scalelab", "suite", "--quick", "--seed", "1",
                         "--results", str(results_dir)], clone, base / "suite.log",
                        budget - total_elapsed(total), _env())
                runs = _suite_runs(results_dir)
                result["suite"] = {
                    "variants_finished": len(runs),
                    "variants_valid": sum(1 for r in runs if r["valid"]),
                    "sum_wall_seconds": round(sum(r["wall_seconds"] for r in runs), 1),
                    "sum_window_seconds": round(sum(r["window_seconds"] for r in runs), 1),
                    "runs": runs,
                }
                result["make_lab_fresh_clone_seconds"] = round(
                    result["clone_seconds"] + result["setup"]["seconds"]
                    + result["lab"]["seconds"], 1)
            if cold:
                cold_clone = base / "scalelab-cold"
                _clone(cold_clone)
                result["setup_cold_cache"] = _step(
                    ["make", "setup"], cold_clone, base / "setup-cold.log", 900,
                    _env(PIP_NO_CACHE_DIR="1", UV_NO_CACHE="1"))
        finally:
            shutil.rmtree(base, ignore_errors=True)
    return result
