"""The schedulers users reach for, as real processes: APScheduler 4 on PostgreSQL, arq cron."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos.local import LocalPlatform
from chaos.platform import Topology
from chaos.processes import lab_processes
from services.ledger import Ledger, parse_scheduled
from tests.conftest import start_scalelab, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def platform(lab_tag: str, tmp_path: Path) -> Iterator[LocalPlatform]:
    p = LocalPlatform(workdir=tmp_path / "logs")
    try:
        yield p
    finally:
        p.teardown()


def finished_ticks(ledger: Ledger, run: str) -> dict[str, list[Any]]:
    """work_id -> its finish events, for scheduled ticks."""
    found: dict[str, list[Any]] = collections.defaultdict(list)
    for e in ledger.history(run):
        if e.kind == "finish" and parse_scheduled(e.work_id):
            found[e.work_id].append(e)
    return found


def run_until(platform: LocalPlatform, run: str, ticks: int,
              timeout: float) -> dict[str, list[Any]]:
    ledger = platform.ledger
    ledger.begin_run(run)
    try:
        wait_for(lambda: len(finished_ticks(ledger, run)) >= ticks, timeout,
                 f"{ticks} ticks finished")
    finally:
        ledger.end_run()
    return finished_ticks(ledger, run)


def on_grid(work_id: str, interval: float) -> bool:
    parsed = parse_scheduled(work_id)
    assert parsed is not None
    return abs(parsed[1] / interval - round(parsed[1] / interval)) < 1e-6


def test_apscheduler4_replicas_share_one_data_store(platform: LocalPlatform,
                                                     lab_tag: str) -> None:
    interval = 0.5
    platform.deploy(Topology(replicas={"api": 3}, settings={
        "scheduler_library": "apscheduler4", "scheduler_interval": interval,
        "tick_seconds": 0.05}))
    assert platform.datastore_server is not None
    # the data store is this lab's PostgreSQL, seen by the orphan check
    pg = platform.datastore_server.group
    assert pg is not None and pg.pid in {pid for pid, _ in lab_processes(lab_tag)}
    ticks = run_until(platform, "aps4", 12, timeout=40)
    assert all(e.mechanism == "apscheduler4" for es in ticks.values() for e in es)
    assert all(on_grid(w, interval) for w in ticks), sorted(ticks)
    twice = {w: [e.instance for e in es] for w, es in ticks.items() if len(es) > 1}
    assert not twice, f"ticks run more than once with no fault: {twice}"


def test_apscheduler4_data_store_outage_and_back(platform: LocalPlatform) -> None:
    asyncpg = pytest.importorskip("asyncpg")
    platform.deploy(Topology(replicas={"api": 2}, settings={
        "scheduler_library": "apscheduler4", "scheduler_interval": 0.5}))
    server = platform.datastore_server
    assert server is not None and server.group is not None
    before, port = server.group.pid, server.port
    platform.datastore_outage(1.0)
    assert server.group is not None and server.group.pid != before
    assert server.port == port  # back where the replicas look for it

    async def schedules() -> list[str]:
        conn = await asyncpg.connect(server.url, timeout=5)
        try:
            return [r["id"] for r in await conn.fetch("select id from schedules")]
        finally:
            await conn.close()

    # the data store came back with what the replicas had written (what they do
    # next is the experiment's measurement, not this test's)
    assert asyncio.run(schedules()) == ["tick"]
    assert len(platform.instances("api")) == 2


def test_arq_cron_workers_record_ticks_on_the_grid(platform: LocalPlatform) -> None:
    platform.deploy(Topology(replicas={"arq": 3}, settings={"scheduler_interval": 1.0}))
    assert len(platform.instances("arq")) == 3
    ticks = run_until(platform, "arq", 5, timeout=30)
    assert all(e.mechanism == "arq" for es in ticks.values() for e in es)
    assert all(on_grid(w, 1.0) for w in ticks), sorted(ticks)
    twice = {w: [e.instance for e in es] for w, es in ticks.items() if len(es) > 1}
    assert not twice, f"arq cron ran ticks more than once with no fault: {twice}"


def test_apscheduler3_replicas_do_not_see_apscheduler4(platform: LocalPlatform) -> None:
    platform.deploy(Topology(replicas={"api": 1}, settings={"scheduler_interval": 0.5}))
    assert platform.datastore_server is None  # no data store for APScheduler 3
    ticks = run_until(platform, "aps3", 2, timeout=20)
    assert {e.mechanism for es in ticks.values() for e in es} == {"apscheduler"}
    assert "apscheduler4" not in os.environ.get("PYTHONPATH", "")


def test_apscheduler4_not_installable_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    from chaos import apscheduler4
    from chaos.platform import PlatformError

    monkeypatch.setenv(apscheduler4.TARGET_ENV, str(tmp_path / "aps4"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # nowhere to install it from
    with pytest.raises(PlatformError) as caught:
        apscheduler4.ensure_installed()
    assert "4.0.0a6 (pre-release) is not installed" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_postgres_does_not_outlive_an_interrupted_or_killed_harness(
        lab_tag: str, tmp_path: Path, sig: signal.Signals) -> None:
    harness = start_scalelab(lab_tag, "run", "scheduler-duplicates", "--scheduler",
                             "apscheduler4", "--replicas", "2", "--duration", "60",
                             "--results", str(tmp_path / "results"))
    try:
        def lab_running() -> bool:
            commands = [cmd for _, cmd in lab_processes(lab_tag)]
            return (sum("-m services.api " in c for c in commands) == 2
                    and any("postgres" in c and "-D" in c for c in commands))

        wait_for(lab_running, 90, "two APScheduler 4 replicas and their PostgreSQL")
        harness.send_signal(sig)
        harness.communicate(timeout=30)
    finally:
        if harness.poll() is None:
            harness.kill()
        harness.communicate()
    wait_for(lambda: not lab_processes(lab_tag), 10, "every lab process, postgres too, to end")
    if sig == signal.SIGINT:
        assert harness.returncode == 130
        # the cluster's private directory (tmp_path is not reachable by nobody) is gone
        assert not list(Path(tempfile.gettempdir()).glob(f"scalelab-postgres-{lab_tag}-*"))
