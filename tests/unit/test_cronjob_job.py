"""The CronJob's Job reads its scheduled time from the name the controller gives it."""

from __future__ import annotations

import pytest

from services.cronjob.__main__ import scheduled_time


def test_the_job_name_carries_the_scheduled_minute() -> None:
    assert scheduled_time("scalelab-tick-29412345") == 29412345 * 60.0


@pytest.mark.parametrize("name", ["", "scalelab-tick", "scalelab-tick-abc", "tick-12x"])
def test_a_name_without_its_minute_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a CronJob's Job name"):
        scheduled_time(name)
