"""Where the APScheduler 4 pre-release lives: its own directory, first on the PYTHONPATH.

APScheduler 4 (4.0.0a6, a pre-release) has the import name of APScheduler 3
(``apscheduler``), which the lab's API replicas use. It is therefore installed
apart, with ``pip install --no-deps --target <venv>/apscheduler4`` (its
dependencies — SQLAlchemy, asyncpg, tenacity, attrs, tzlocal, anyio — are ordinary
dependencies of the lab), by ``make`` and, when missing, by the harness before a run
that needs it. Only the instances that run the APScheduler 4 scheduler get the
directory first on their PYTHONPATH.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from chaos.platform import PlatformError

PINNED = "4.0.0a6"  # keep equal to services.api.scheduler4.PINNED
TARGET_ENV = "SCALELAB_APSCHEDULER4_DIR"  # somewhere else to keep it
UV_ENV = "SCALELAB_UV"  # a uv to install it with (make passes its own), else pip


def target_dir() -> Path:
    chosen = os.environ.get(TARGET_ENV)
    return Path(chosen) if chosen else Path(sys.prefix) / "apscheduler4"


def installed(directory: Path | None = None) -> bool:
    directory = directory or target_dir()
    return (directory / f"apscheduler-{PINNED}.dist-info").is_dir() or (
        directory / f"APScheduler-{PINNED}.dist-info").is_dir()


def ensure_installed() -> Path:
    """The directory holding APScheduler 4; installs it there first if it is missing."""
    directory = target_dir()
    if installed(directory):
        return directory
    uv = os.environ.get(UV_ENV)
    installer = ([uv, "pip", "install", "--quiet", "--python", sys.executable] if uv else
                 [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                  "--upgrade"])
    proc = subprocess.run(
        [*installer, "--no-deps", "--target", str(directory), f"apscheduler=={PINNED}"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    if proc.returncode != 0 or not installed(directory):
        why = (proc.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise PlatformError(f"APScheduler {PINNED} (pre-release) is not installed in "
                            f"{directory} and pip could not install it: {why}")
    return directory


def python_path(directory: Path, inherited: str | None) -> str:
    """PYTHONPATH with the APScheduler 4 directory first."""
    return os.pathsep.join([str(directory), *([inherited] if inherited else [])])


def main() -> None:
    """``python -m chaos.apscheduler4``: install it if missing (make's install step)."""
    try:
        print(f"APScheduler {PINNED} (pre-release) in {ensure_installed()}")
    except PlatformError as exc:
        print(f"scalelab: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
