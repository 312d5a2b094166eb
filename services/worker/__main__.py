"""``python -m services.worker``: one Celery worker instance (prefork, settings from env).

Announced in the ledger as component ``worker`` once Celery says it is consuming
(``worker_ready``). Mingle, gossip and heartbeats are off: they cost start-up time and
broker traffic, and the lab never uses them. SIGTERM is Celery's warm shutdown: running
tasks finish, then every pool child reports its event counts and exits.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from celery import signals

from services.settings import load_settings
from services.worker.app import make_celery
from services.worker.context import WorkerContext
from services.worker.other_app import start_beside


def _connect(lab: WorkerContext) -> None:
    # weak=False: the receivers are closures that nothing else references.
    def on_ready(**_: Any) -> None:
        lab.announce("worker", concurrency=lab.settings.worker_concurrency,
                     acks=lab.settings.acks)

    def on_child_shutdown(**_: Any) -> None:
        lab.report_counts(f"{lab.instance}:{os.getpid()}")

    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_process_shutdown.connect(on_child_shutdown, weak=False)


def main() -> int:
    """Run the worker until it is told to stop; returns its exit code."""
    settings = load_settings()
    app = make_celery(settings)
    _connect(app.lab)
    worker = app.Worker(
        hostname=f"{settings.instance}@%h",
        pool="prefork",
        concurrency=settings.worker_concurrency,
        loglevel="WARNING",
        without_mingle=True,
        without_gossip=True,
        without_heartbeat=True,
        quiet=True,
    )
    other = start_beside(settings)  # a second app on the broker, if the settings ask
    try:
        worker.start()
    finally:
        if other is not None:
            other.terminate()
            other.wait(timeout=10)
    return int(worker.exitcode or 0)


if __name__ == "__main__":
    sys.exit(main())
