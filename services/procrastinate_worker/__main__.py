"""``python -m services.procrastinate_worker``: one procrastinate worker, settings from the env."""

from __future__ import annotations

import asyncio
import logging

from services.procrastinate_worker.worker import run
from services.settings import load_settings


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run(load_settings()))


if __name__ == "__main__":
    main()
