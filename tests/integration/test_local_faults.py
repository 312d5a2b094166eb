"""The local platform's partition, clock skew and pool-child kill, on real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.local import LocalPlatform
from chaos.local_faults import pool_children
from chaos.platform import PlatformError, Topology
from services.ledger import Event, Ledger
from tests.conftest import wait_for

pytestmark = pytest.mark.slow

RUN = "local-faults"


@pytest.fixture
def lab(lab_tag: str, tmp_path: Path) -> Iterator[tuple[LocalPlatform, Ledger]]:
    platform = LocalPlatform(tmp_path / "lab")
    try:
        platform.deploy(Topology(
            replicas={"api": 1, "worker": 1},
            settings={"partitionable": True, "skewable": True, "scheduler_interval": 0.5,
                      "scheduler_guard": "redis-lock", "worker_concurrency": 1},
            replace_delay=30))
        ledger = Ledger.from_url(platform.ledger_url)
        ledger.begin_run(RUN)
        try:
            yield platform, ledger
        finally:
            ledger.end_run()
            ledger.client.close()
    finally:
        platform.teardown()


def ticks(ledger: Ledger, since: float) -> list[Event]:
    return [e for e in ledger.read_history(RUN) if e.kind == "start" and e.t >= since]


def test_a_partitioned_instance_loses_the_broker_and_gets_it_back(
        lab: tuple[LocalPlatform, Ledger]) -> None:
    platform, ledger = lab
    api = platform.instances("api")[0]
    start = ledger.now()
    wait_for(lambda: ticks(ledger, start), 10, "a tick under the lock")
    assert all("note" not in e.detail for e in ticks(ledger, start))
    platform.partition(api)
    cut = ledger.now()
    # The per-tick lock is on the broker: cut off, the guard fails open and says so.
    wait_for(lambda: any(e.detail.get("note") == "lock-unavailable"
                         for e in ticks(ledger, cut)), 10, "a tick without the broker")
    platform.heal(api)
    healed = ledger.now()
    wait_for(lambda: any("note" not in e.detail for e in ticks(ledger, healed + 1)), 10,
             "a tick under the lock again")
    # The ledger was reachable throughout: it is never partitioned.
    assert ledger.client.ping()


def test_a_skewed_instance_fires_its_ticks_early_on_the_ledger_clock(
        lab: tuple[LocalPlatform, Ledger]) -> None:
    platform, ledger = lab
    api = platform.instances("api")[0]

    def lateness(since: float) -> list[float]:
        return [e.t - e.detail["due"] for e in ticks(ledger, since)]

    start = ledger.now()
    wait_for(lambda: len(lateness(start)) >= 2, 10, "two ticks")
    assert all(-0.2 < x < 0.5 for x in lateness(start))
    platform.skew(api, 2.0)
    skewed = ledger.now() + 1.5  # the instance re-reads its offset within a second
    # Its clock is 2 s ahead: it fires each tick 2 s before the ledger's clock says.
    wait_for(lambda: len(lateness(skewed)) >= 2, 10, "two skewed ticks")
    assert all(-2.3 < x < -1.5 for x in lateness(skewed))
    with pytest.raises(ValueError, match="3600"):
        platform.skew(api, 3601)


def test_kill_child_kills_one_pool_process_not_the_worker(
        lab: tuple[LocalPlatform, Ledger]) -> None:
    platform, _ = lab
    worker = platform.instances("worker")[0]
    before = pool_children(worker.pid)
    assert len(before) == 1
    killed = platform.kill_child(worker)
    assert killed == before[0]
    # Celery's pool replaces its lost process; the worker instance itself lives on.
    wait_for(lambda: pool_children(worker.pid) and pool_children(worker.pid) != before, 10,
             "a new pool process")
    assert [i.name for i in platform.instances("worker")] == [worker.name]


def test_partition_and_skew_need_an_opted_in_lab(lab_tag: str, tmp_path: Path) -> None:
    platform = LocalPlatform(tmp_path / "lab")
    platform.deploy(Topology(replicas={"api": 1}, settings={"scheduler_enabled": False}))
    try:
        api = platform.instances("api")[0]
        with pytest.raises(PlatformError, match="partitionable"):
            platform.partition(api)
        with pytest.raises(PlatformError, match="skewable"):
            platform.skew(api, 1.0)
    finally:
        platform.teardown()
