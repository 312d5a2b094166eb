"""``python -m services.rq_worker``: one RQ worker with its scheduler, settings from the env."""

from __future__ import annotations

import logging

from services.rq_worker.worker import run
from services.settings import load_settings


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    run(load_settings())


if __name__ == "__main__":
    main()
