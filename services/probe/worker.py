"""``python -m services.probe.worker``: one Celery worker of the user's app (prefork).

Announced in the ledger once Celery says it consumes (``worker_ready``). The worker
runs with the user's own task settings (acks, prefetch, retries); only the broker is
the lab's. Its concurrency is ``SCALELAB_WORKER_CONCURRENCY``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from services.probe import celery_hooks, scheduler_hooks
from services.probe.context import current
from services.probe.load import CELERY, NotLoadable, load_celery, prepare


def main() -> int:
    prepare()
    probe = current()
    if probe is None:
        sys.stderr.write("scalelab probe: SCALELAB_PROBE is not set\n")
        return 2
    scheduler_hooks.install()
    celery_hooks.install()
    try:
        app = load_celery(os.environ[CELERY])
    except NotLoadable as exc:
        sys.stderr.write(f"scalelab probe: {exc}\n")
        return 2
    from celery import signals

    def on_ready(**_: Any) -> None:
        probe.announce()

    signals.worker_ready.connect(on_ready, weak=False)
    worker = app.Worker(
        hostname=f"{probe.instance}@%h",
        pool="prefork",
        concurrency=int(os.environ.get("SCALELAB_WORKER_CONCURRENCY", "2")),
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
