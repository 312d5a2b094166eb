"""``python -m services.huey_consumer``: one Huey consumer, settings from the environment."""

from __future__ import annotations

import logging

from services.huey_consumer.consumer import run
from services.settings import load_settings


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    run(load_settings())


if __name__ == "__main__":
    main()
