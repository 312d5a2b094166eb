"""The pure parts of the APScheduler 4 and arq instances: grid, URLs, job ids, the pin."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from chaos import apscheduler4
from services.api import scheduler4
from services.arq_worker.worker import cron_seconds, fire_time_of


def test_one_pin_for_the_pre_release() -> None:
    assert scheduler4.PINNED == apscheduler4.PINNED == "4.0.0a6"


def test_the_first_fire_time_is_on_the_labs_grid() -> None:
    assert scheduler4.next_grid_time(1.0, now=100.2) == datetime.fromtimestamp(101, UTC)
    assert scheduler4.next_grid_time(0.5, now=100.0) == datetime.fromtimestamp(100, UTC)
    assert scheduler4.next_grid_time(2.0, now=101.0) == datetime.fromtimestamp(102, UTC)


def test_the_data_store_url_names_the_asyncpg_driver() -> None:
    assert (scheduler4.asyncpg_url("postgresql://postgres@127.0.0.1:5432/postgres")
            == "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        scheduler4.asyncpg_url("redis://127.0.0.1:6379/0")


def test_arq_cron_fires_on_the_grid_and_its_job_id_carries_the_fire_time() -> None:
    assert cron_seconds(1.0) == set(range(60))
    assert cron_seconds(15) == {0, 15, 30, 45}
    for bad in (0.5, 7.0, 90.0):
        with pytest.raises(ValueError, match="whole seconds dividing 60"):
            cron_seconds(bad)
    assert fire_time_of("cron:tick:1796048441000") == 1796048441.0


def test_python_path_puts_the_pre_release_first() -> None:
    directory = Path("/x/apscheduler4")
    assert apscheduler4.python_path(directory, None) == "/x/apscheduler4"
    assert apscheduler4.python_path(directory, "/a:/b") == "/x/apscheduler4:/a:/b"
