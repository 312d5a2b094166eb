"""``python -m services.probe.beat``: one Celery beat of the user's app.

Its schedule file goes to a fresh temporary directory (never shared between
replicas); it is announced once beat has set up (``beat_init``). What it sends is
observed by ``after_task_publish`` like any other publication. SIGTERM makes beat
exit (its handler raises SystemExit).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from celery import signals

from services.probe import celery_hooks
from services.probe.instance import begin, load_app
from services.probe.load import CELERY, load_celery


def main() -> int:
    probe = begin(celery_hooks.install)
    app = load_app(load_celery, CELERY)

    def on_init(**_: Any) -> None:
        probe.announce()

    signals.beat_init.connect(on_init, weak=False)
    workdir = Path(tempfile.mkdtemp(prefix=f"scalelab-beat-{probe.instance}-"))
    try:
        with contextlib.suppress(SystemExit):
            app.Beat(schedule=str(workdir / "schedule"), loglevel="WARNING", quiet=True).run()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
