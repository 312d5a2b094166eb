"""KubernetesPlatform and experiments against the live kind cluster (``make cluster-up``).

Run with ``make test-kind``; results go under results/kind/ (the kind workflow
uploads them). Without a reachable cluster every test here skips with the reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from chaos.kubernetes import KubernetesPlatform
from chaos.platform import Topology

pytestmark = [pytest.mark.kind, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results" / "kind"
TOPOLOGY = Topology(replicas={"api": 2, "worker": 1, "beat": 1}, grace=3)


def test_deploy_makes_every_instance_reachable(platform: KubernetesPlatform) -> None:
    platform.deploy(TOPOLOGY)
    for component in ("api", "worker", "beat"):
        assert len(platform.instances(component)) == TOPOLOGY.count(component)
    assert redis.Redis.from_url(platform.ledger_url).ping()
    assert redis.Redis.from_url(platform.broker_url).ping()
    assert httpx.get(f"{platform.api_url}/healthz", timeout=5).status_code == 200


def test_kill_and_terminate_are_replaced_by_new_pods(platform: KubernetesPlatform) -> None:
    platform.deploy(TOPOLOGY)
    before = {i.name for i in platform.instances("api")}
    platform.kill(platform.instances("api")[0])
    platform.terminate(platform.instances("worker")[0], grace=2)
    platform.wait_ready("api", 2, timeout=120)
    platform.wait_ready("worker", 1, timeout=120)
    after = {i.name for i in platform.instances("api")}
    assert len(after - before) == 1


def test_pause_takes_an_api_replica_out_until_resumed(platform: KubernetesPlatform) -> None:
    platform.deploy(Topology(replicas={"api": 1}))
    (api,) = platform.instances("api")
    platform.pause(api)
    platform.wait_ready("api", 0, timeout=30)  # its readiness probe fails
    platform.resume(api)
    platform.wait_ready("api", 1, timeout=30)
    assert [i.name for i in platform.instances("api")] == [api.name]


def test_rolling_restart_and_broker_outage(platform: KubernetesPlatform) -> None:
    platform.deploy(TOPOLOGY)
    before = {i.name for i in platform.instances("api")}
    platform.rolling_restart("api")
    assert not before & {i.name for i in platform.instances("api")}
    broker = redis.Redis.from_url(platform.broker_url)
    broker.set("scalelab:test:survives", "no")
    platform.broker_outage(2)
    assert broker.get("scalelab:test:survives") is None  # it came back empty


@pytest.mark.parametrize(("experiment", "args"), [
    # Unguarded: every API replica runs every tick, as locally.
    ("scheduler-duplicates", ["--replicas", "3", "--duration", "15", "--guard", "none"]),
    # The Lease guard (this platform's own leader backend) brings duplicates to zero.
    ("scheduler-duplicates", ["--replicas", "3", "--duration", "15", "--guard", "leader"]),
    # A paused leader (SIGSTOP through exec) loses the Lease; fencing refuses its
    # stale ticks when it resumes.
    ("leader-failover", ["--fencing", "--duration", "12"]),
], ids=["duplicates-unguarded", "duplicates-lease", "failover-fenced"])
def test_experiment(experiment: str, args: list[str], kube_context: str) -> None:
    summary = run_experiment(experiment, args, kube_context)
    assert summary["valid"], summary["expectation"]


def run_experiment(name: str, args: list[str], context: str) -> dict[str, Any]:
    """``scalelab run NAME ARGS`` on the cluster, as a user runs it; its summary."""
    proc = subprocess.run([sys.executable, "-m", "experiments.cli", "run", name, *args,
                           "--platform", "kubernetes", "--context", context, "--seed", "1",
                           "--results", str(RESULTS), "--json"],
                          capture_output=True, text=True, timeout=540, cwd=ROOT)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    summary: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["fault_errors"] == [], summary["fault_errors"]
    return summary


def test_requests_spread_over_the_replicas_only_with_a_connection_each(
        platform: KubernetesPlatform) -> None:
    # kube-proxy picks a backend per connection (kubernetes/kubernetes#38456): one
    # keep-alive connection pins every request to one replica; the harness's
    # connection per request (experiments/workload.py) reaches them all.
    platform.deploy(Topology(replicas={"api": 3}))

    def takers(client: httpx.Client, requests: int) -> set[str]:
        return {client.get(f"{platform.api_url}/healthz").json()["instance"]
                for _ in range(requests)}

    # kube-proxy programs a replica shortly after it turns ready: wait for all three
    with httpx.Client(timeout=5, limits=httpx.Limits(max_keepalive_connections=0)) as fresh:
        deadline = time.monotonic() + 30
        while len(takers(fresh, 30)) < 3:
            assert time.monotonic() < deadline, "not every replica behind the Service"
        assert len(takers(fresh, 60)) == 3
    with httpx.Client(timeout=5) as pinned:
        assert len(takers(pinned, 60)) == 1


def test_rolling_restart_right_after_a_scale_replaces_the_new_count(
        platform: KubernetesPlatform) -> None:
    platform.deploy(Topology(replicas={"api": 1}))
    platform.scale("api", 2)  # the second pod does not exist yet
    platform.rolling_restart("api")
    assert len(platform.instances("api")) == 2


def test_deploy_brings_back_a_broker_left_at_zero(platform: KubernetesPlatform) -> None:
    from chaos.kubernetes import BROKER_DEPLOYMENT, scale_deployment

    scale_deployment(platform.cluster, BROKER_DEPLOYMENT, 0)  # an outage cut short
    platform.deploy(Topology(replicas={"api": 1}))
    assert redis.Redis.from_url(platform.broker_url).ping()


def test_loop_starvation_keeps_its_replica_in_the_service(kube_context: str) -> None:
    # A request that blocks the event loop for the experiment's 1.5 s delays /healthz
    # as much: the readiness probe's timeout must outlast it (k8s/base/api.yaml).
    def timed_out_probes(since: str) -> list[str]:
        # Only timeouts: a starting pod's refused probes are not the experiment's doing.
        out = subprocess.run(["kubectl", "--context", kube_context, "-n", "scalelab", "get",
                              "events", "--field-selector", "reason=Unhealthy", "-o", "json"],
                             capture_output=True, text=True, check=True, timeout=60).stdout
        return [e["message"] for e in json.loads(out)["items"]
                if "Readiness probe failed" in e.get("message", "")
                and ("Timeout" in e["message"] or "deadline" in e["message"])
                and e["involvedObject"]["name"].startswith("api-")
                and (e.get("lastTimestamp") or e.get("eventTime") or "") >= since]

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    summary = run_experiment("loop-starvation", ["--duration", "10"], kube_context)
    assert summary["valid"], summary["expectation"]
    assert timed_out_probes(started) == []
