"""6. Install into a new ``.venv``: ``make setup`` now, and the recipe it replaced.

Two fresh clones of HEAD, side by side: in one ``make setup`` (uv from PATH or
UV_HOME — bootstrapped there once per machine with pip —, versions from
requirements.lock, then the bytecode of what the lab imports); in the other the
previous recipe, command for command (``python -m venv``, pip upgraded, then
``pip install -e .`` and ``pip install -e '.[dev]'``, pip compiling every file).
Both with their installer's ordinary cache as this machine has it (warm after the
first install), so neither is timed downloading what the other had cached.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.end_to_end import _clone, _env, _step

PIP = [".venv/bin/python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
PREVIOUS = (
    [sys.executable, "-m", "venv", ".venv"],
    [*PIP, "--upgrade", "pip"],
    [*PIP, "-e", "."],
    [*PIP, "-e", ".[dev]"],
)


def _previous(clone: Path, log: Path, timeout: float) -> dict[str, Any]:
    seconds = cpu = 0.0
    for args in PREVIOUS:
        step = _step(args, clone, log, timeout - seconds, _env())
        seconds += step["seconds"]
        cpu += step["cpu_seconds"]
        if step["exit"] != 0 or step["timed_out"]:
            return {**step, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1)}
    return {"command": "python -m venv; pip install -e . -e '.[dev]' (the previous recipe)",
            "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "exit": 0,
            "timed_out": False}


def run(timeout: float = 420.0) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="scalelab-bench-install-"))
    try:
        now, before = base / "now", base / "before"
        _clone(now)
        _clone(before)
        setup = _step(["make", "setup"], now, base / "setup.log", timeout, _env())
        said = (base / "setup.log").read_text(errors="replace")
        installer = "uv" if "uv pip install" in said else "pip"
        # pyproject.toml changed (-W: as if just edited): the lock is resolved again and
        # the lab reinstalled
        lab_only = _step(["make", "-W", "pyproject.toml", ".venv/.installed"], now,
                         base / "lab.log", timeout, _env())
        previous = _previous(before, base / "before.log", timeout)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {"setup": setup, "installer": installer, "reinstall_lab_after_pyproject_change":
            lab_only, "previous_recipe": previous,
            "setup_seconds": setup["seconds"], "previous_seconds": previous["seconds"]}
