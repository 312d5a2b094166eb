"""``python -m services.worker.other_app``: another Celery app on the same broker.

Celery's Redis transport keeps every app's delivered-but-unacknowledged messages in the
same ``unacked`` hash, and every consuming worker's restore sweep requeues any message
older than *its own* visibility timeout — so with two apps on one broker the shortest
timeout wins (Celery's Redis caveats; kombu #337). This app consumes only its own queue
and runs no task of the lab; it is there for its sweep, with
``settings.other_visibility_timeout``. A worker instance started with that setting runs
it as a child in its own process group, so it lives and dies with the instance.
"""

from __future__ import annotations

import subprocess
import sys

from services.settings import LabSettings, load_settings
from services.worker.app import make_celery

OTHER_QUEUE = "scalelab.other"


def start_beside(settings: LabSettings) -> subprocess.Popen[bytes] | None:
    """Start the other app next to this worker (same process group), if one is asked for."""
    if settings.other_visibility_timeout <= 0:
        return None
    return subprocess.Popen([sys.executable, "-m", "services.worker.other_app"],
                            stdin=subprocess.DEVNULL)


def main() -> int:
    settings = load_settings()
    settings = settings.model_copy(update={
        "visibility_timeout": settings.other_visibility_timeout,
        "other_visibility_timeout": 0.0})
    app = make_celery(settings)
    app.conf.task_default_queue = OTHER_QUEUE
    worker = app.Worker(
        hostname=f"{settings.instance}-other@%h",
        pool="solo",
        concurrency=1,
        queues=[OTHER_QUEUE],
        loglevel="WARNING",
        without_mingle=True,
        without_gossip=True,
        without_heartbeat=True,
        quiet=True,
    )
    worker.start()
    return int(worker.exitcode or 0)


if __name__ == "__main__":
    sys.exit(main())
