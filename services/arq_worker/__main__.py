"""``python -m services.arq_worker``: one arq worker instance, settings from the environment."""

from __future__ import annotations

import asyncio
import logging

from services.arq_worker.worker import build_worker
from services.settings import load_settings


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    asyncio.set_event_loop(asyncio.new_event_loop())  # arq's Worker takes the current loop
    build_worker(load_settings()).run()


if __name__ == "__main__":
    main()
