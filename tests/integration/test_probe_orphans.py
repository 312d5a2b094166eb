"""Nothing `scalelab probe` starts outlives it: Ctrl-C, SIGTERM, the harness SIGKILLed."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from chaos.processes import free_port, lab_processes
from tests.conftest import REPO, start_scalelab, wait_for
from tests.integration.test_orphans import running_replicas

pytestmark = pytest.mark.slow
NAIVE = REPO / "examples" / "shop" / "naive"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=["ctrl-c", "sigterm", "sigkill"])
def test_nothing_the_probe_started_outlives_it(lab_tag: str, tmp_path: Path,
                                               sig: signal.Signals) -> None:
    port = free_port()
    harness = start_scalelab(
        lab_tag, "probe", "--app-dir", str(NAIVE), "--asgi", "shop.main:app",
        "--celery", "shop.tasks:app", "--env", "SHOP_BROKER_URL={broker}",
        "--replicas", "3", "--duration", "60", "--results", str(tmp_path / "results"),
        "--ledger-port", str(port))
    try:
        wait_for(lambda: running_replicas(port) == 3, 90, "three replicas of the user's app")
        commands = [cmd for _, cmd in lab_processes(lab_tag)]
        assert any("services.probe.worker" in cmd for cmd in commands), commands
        harness.send_signal(sig)
        _, err = harness.communicate(timeout=30)
    finally:
        if harness.poll() is None:
            harness.kill()
        harness.communicate()
    wait_for(lambda: not lab_processes(lab_tag), 10, "every process of the probe to end")
    if sig != signal.SIGKILL:
        assert harness.returncode == (130 if sig == signal.SIGINT else 143)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        failed = list((tmp_path / "results").glob("*.failed"))
        assert len(failed) == 1 and list((failed[0] / "logs").glob("api-*.log"))
    assert not list((tmp_path / "results").glob("*/summary.json"))
