"""No process the lab starts outlives it: normal end, Ctrl-C, SIGTERM, the harness SIGKILLed."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
import redis

from chaos.processes import free_port, lab_processes
from services import keys
from tests.conftest import REPO, start_scalelab, wait_for

pytestmark = pytest.mark.slow


# What each harness runs: one of the lab's experiments, or a user's app under the probe
# (the naive shop example: three replicas of its API, a Celery worker).
HARNESSES = {
    "run": ("run", "scheduler-duplicates"),
    "probe": ("probe", "--app-dir", str(REPO / "examples" / "shop" / "naive"),
              "--asgi", "shop.main:app", "--celery", "shop.tasks:app",
              "--env", "SHOP_BROKER_URL={broker}"),
}


def start_harness(tag: str, tmp_path: Path, ledger_port: int,
                  harness: str = "run") -> subprocess.Popen[str]:
    return start_scalelab(tag, *HARNESSES[harness], "--replicas", "3",
                          "--duration", "60", "--results", str(tmp_path / "results"),
                          "--ledger-port", str(ledger_port))


def running_replicas(ledger_port: int) -> int:
    """API replicas that announced themselves in the ledger (exec'd or forked alike)."""
    try:
        with redis.Redis(port=ledger_port, socket_timeout=2) as ledger:
            announced = ledger.hgetall(keys.INSTANCES)
    except redis.RedisError:
        return 0
    return sum(json.loads(v).get("component") == "api" for v in announced.values())


@pytest.mark.parametrize("kind", list(HARNESSES))
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=["ctrl-c", "sigterm", "sigkill"])
def test_nothing_outlives_an_interrupted_or_killed_harness(
        lab_tag: str, tmp_path: Path, sig: signal.Signals, kind: str) -> None:
    port = free_port()
    harness = start_harness(lab_tag, tmp_path, port, kind)
    try:
        wait_for(lambda: running_replicas(port) == 3, 90, "three API replicas")
        assert any("redis-server" in cmd for _, cmd in lab_processes(lab_tag))
        harness.send_signal(sig)
        _, err = harness.communicate(timeout=30)
    finally:
        if harness.poll() is None:
            harness.kill()
        harness.communicate()
    wait_for(lambda: not lab_processes(lab_tag), 10, "every lab process to end")
    if sig != signal.SIGKILL:  # Ctrl-C and SIGTERM (timeout, a CI cancel) end the same way
        assert harness.returncode == (130 if sig == signal.SIGINT else 143)
        # piped, the progress says a line per phase; then one line says what happened
        *progress, last = [line for line in err.splitlines() if line.strip()]
        assert "Traceback" not in err and all(line.startswith("[") for line in progress), err
        assert ("interrupted" if sig == signal.SIGINT else "terminated") in last
        # the run is left as interrupted, with its logs and what interrupted it, when
        (stopped,) = (tmp_path / "results").glob("*.interrupted")
        assert list((stopped / "logs").glob("api-*.log"))
        record = json.loads((stopped / "interrupted.json").read_text())
        assert record["signal"] == sig.name, record
        assert record["phase"] in ("starting instances", "running"), record
    # no directory claims to be a complete run
    assert not list((tmp_path / "results").glob("*/summary.json"))
