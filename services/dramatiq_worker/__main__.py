"""``python -m services.dramatiq_worker``: one Dramatiq worker, settings from the env."""

from __future__ import annotations

import logging
import os

# Read by dramatiq.worker at import: each worker holds one message (and one delayed
# message) at a time rather than a thousand.
os.environ.setdefault("dramatiq_queue_prefetch", "1")
os.environ.setdefault("dramatiq_delay_queue_prefetch", "1")


def main() -> None:
    from services.dramatiq_worker.worker import run
    from services.settings import load_settings

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    run(load_settings())


if __name__ == "__main__":
    main()
