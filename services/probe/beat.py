"""``python -m services.probe.beat``: one Celery beat of the user's app.

Its schedule file goes to a fresh temporary directory (never shared between
replicas); it is announced once beat has set up (``beat_init``). What it sends is
observed by ``after_task_publish`` like any other publication.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any

from services.probe import celery_hooks
from services.probe.context import current
from services.probe.load import CELERY, NotLoadable, load_celery, prepare


def main() -> int:
    prepare()
    probe = current()
    if probe is None:
        sys.stderr.write("scalelab probe: SCALELAB_PROBE is not set\n")
        return 2
    celery_hooks.install()
    try:
        app = load_celery(os.environ[CELERY])
    except NotLoadable as exc:
        sys.stderr.write(f"scalelab probe: {exc}\n")
        return 2
    from celery import signals

    def on_init(**_: Any) -> None:
        probe.announce()

    signals.beat_init.connect(on_init, weak=False)
    workdir = tempfile.mkdtemp(prefix=f"scalelab-beat-{probe.instance}-")
    try:
        app.Beat(schedule=os.path.join(workdir, "schedule"), loglevel="WARNING",
                 quiet=True).run()
    except SystemExit as stop:  # beat's SIGTERM handler
        return int(stop.code or 0) if not isinstance(stop.code, str) else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
