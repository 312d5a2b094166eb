"""``python -m services.worker.beat``: one Celery beat instance (settings from env).

With ``beat_guard=none`` it runs the default PersistentScheduler, whose shelve file goes
to a fresh temporary directory (never the working directory, and never shared between
replicas); with ``redbeat`` it runs celery-redbeat on the broker Redis, where only the
holder of the lock (``beat_lock_timeout`` seconds, extended every tick) sends. The
scheduler announces the instance as component ``beat`` once its schedule is set up.
SIGTERM makes beat sync and exit (a redbeat holder releases its lock); SIGKILL leaves the
lock to expire.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

from services.settings import load_settings
from services.worker.app import beat_max_loop_interval, make_celery


def main() -> int:
    """Run beat until it is told to stop."""
    settings = load_settings()
    app = make_celery(settings)
    workdir = tempfile.mkdtemp(prefix=f"scalelab-beat-{settings.instance}-")
    try:
        app.Beat(
            schedule=os.path.join(workdir, "schedule"),
            loglevel="WARNING",
            max_interval=beat_max_loop_interval(settings),
            quiet=True,
        ).run()
    except SystemExit as stop:  # beat's SIGTERM handler
        return int(stop.code or 0) if not isinstance(stop.code, str) else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
