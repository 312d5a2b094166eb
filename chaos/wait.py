"""Waiting on a condition, the one way the lab waits: poll it until it holds or time runs out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(condition: Callable[[], T], timeout: float, interval: float = 0.05,
               give_up: Callable[[], bool] | None = None) -> T | None:
    """``condition()``'s first truthy value, or None once ``timeout`` seconds pass
    (or ``give_up()`` says so). The condition is always tried at least once."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline or (give_up is not None and give_up()):
            return None
        time.sleep(interval)
