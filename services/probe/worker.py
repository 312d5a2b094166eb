"""``python -m services.probe.worker``: one Celery worker of the user's app (prefork).

Announced in the ledger once Celery says it consumes (``worker_ready``). The worker
runs with the user's own task settings (acks, prefetch, retries); only the broker is
the lab's. Its concurrency is ``SCALELAB_WORKER_CONCURRENCY``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from celery import signals

from services.probe import celery_hooks, scheduler4_hooks, scheduler_hooks
from services.probe.instance import begin, load_app
from services.probe.load import CELERY, load_celery


def main() -> int:
    probe = begin(scheduler_hooks.install, scheduler4_hooks.install, celery_hooks.install)
    app = load_app(load_celery, CELERY)

    def on_ready(**_: Any) -> None:
        probe.announce()

    signals.worker_ready.connect(on_ready, weak=False)
    worker = app.Worker(hostname=f"{probe.instance}@%h", pool="prefork",
                        concurrency=int(os.environ.get("SCALELAB_WORKER_CONCURRENCY", "2")),
                        loglevel="WARNING", quiet=True,
                        # mingle, gossip, heartbeats: start-up time the probe never uses
                        without_mingle=True, without_gossip=True, without_heartbeat=True)
    worker.start()
    return int(worker.exitcode or 0)


if __name__ == "__main__":
    sys.exit(main())
