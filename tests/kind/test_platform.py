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


# --- kill_child, skew, partition, the broker's memory policy ----------------------------------

POOL = ("from chaos.local_faults import pool_children\n"
        "apps = [int(p) for p in open('/proc/1/task/1/children').read().split()]\n"
        "print(' '.join(str(c) for a in apps for c in pool_children(a)))\n")


def pool_pids(platform: KubernetesPlatform, pod: str) -> set[int]:
    from chaos.kubernetes import PYTHON, exec_in_pod

    out = exec_in_pod(platform.cluster, pod, "worker", [PYTHON, "-c", POOL])
    return {int(p) for p in out.split()}


def restarts(platform: KubernetesPlatform, pod: str) -> int:
    status = platform.cluster.core.read_namespaced_pod(pod, "scalelab").status
    return sum(c.restart_count for c in status.container_statuses or [])


def test_kill_child_kills_one_pool_process_and_the_worker_replaces_it(
        platform: KubernetesPlatform) -> None:
    from tests.conftest import wait_for

    platform.deploy(Topology(replicas={"worker": 1}, settings={"worker_concurrency": 2}))
    (worker,) = platform.instances("worker")
    before = wait_for(lambda: (p := pool_pids(platform, worker.name)) and len(p) == 2 and p,
                      30, "two pool processes", interval=0.5)
    killed = platform.kill_child(worker)
    assert killed in before
    # Celery's main process forks a new pool process; the pod and its container stay
    after = wait_for(lambda: (p := pool_pids(platform, worker.name)) and len(p) == 2
                     and killed not in p and p, 30, "the pool back to two, without the killed one",
                     interval=0.5)
    assert len(after & before) == 1
    assert [i.name for i in platform.instances("worker")] == [worker.name]
    assert restarts(platform, worker.name) == 0


def test_the_broker_takes_the_topologys_memory_policy_until_the_next_deploy(
        platform: KubernetesPlatform) -> None:
    settings = {"broker_maxmemory": "1100kb", "broker_maxmemory_policy": "allkeys-lru"}
    platform.deploy(Topology(replicas={"worker": 1}, settings=settings))

    def policy() -> tuple[str, str]:
        broker: Any = redis.Redis.from_url(platform.broker_url, decode_responses=True)
        try:
            return (broker.config_get("maxmemory")["maxmemory"],
                    broker.config_get("maxmemory-policy")["maxmemory-policy"])
        finally:
            broker.close()

    assert policy() == (str(1100 * 1024), "allkeys-lru")
    platform.broker_outage(1)  # a new broker pod: the policy is set again
    assert policy() == (str(1100 * 1024), "allkeys-lru")
    platform.deploy(Topology(replicas={"worker": 1}))
    assert policy() == ("0", "noeviction")


def test_skew_moves_the_apps_clock_not_the_ledgers(kube_context: str) -> None:
    # A replica 2 s ahead fires its ticks 2 s early, as the ledger's own clock sees them;
    # with the per-tick lock's 1 s TTL, ticks run twice.
    summary = run_experiment("clock-skew", ["--duration", "6"], kube_context)
    assert summary["valid"], summary["expectation"]
    measured = summary["measured"]
    assert measured["skewed"] and 1.5 <= measured["early_by"] <= 2.5, measured


def test_a_skewable_pod_preloads_libfaketime_and_an_unskewable_one_does_not(
        platform: KubernetesPlatform) -> None:
    from chaos.kubernetes import CLOCK_FILE, PYTHON, exec_in_pod

    environ = [PYTHON, "-S", "-c",
               "child = open('/proc/1/task/1/children').read().split()[0]\n"
               "env = open(f'/proc/{child}/environ').read().split(chr(0))\n"
               "print([e for e in env if e.startswith(('LD_PRELOAD=', "
               "'FAKETIME_TIMESTAMP_FILE='))])\n"]
    platform.deploy(Topology(replicas={"api": 1}, settings={"skewable": True}))
    (api,) = platform.instances("api")
    seen = exec_in_pod(platform.cluster, api.name, "api", environ)
    assert "LD_PRELOAD=/opt/venv/lib/libfaketime.so.1" in seen
    assert f"FAKETIME_TIMESTAMP_FILE={CLOCK_FILE}" in seen
    platform.skew(api, -3)
    read = [PYTHON, "-S", "-c", f"print(open({CLOCK_FILE!r}).read())"]
    assert exec_in_pod(platform.cluster, api.name, "api", read).strip() == "-3.000"
    platform.deploy(Topology(replicas={"api": 1}))
    (api,) = platform.instances("api")
    assert exec_in_pod(platform.cluster, api.name, "api", environ).strip() == "[]"


def connects(platform: KubernetesPlatform, pod: str, container: str, service: str) -> bool:
    from chaos.kubernetes import PYTHON, exec_in_pod

    probe = (f"import socket\ntry:\n    socket.create_connection(({service!r}, 6379), "
             "timeout=2).close()\n    print('yes')\nexcept OSError:\n    print('no')\n")
    return exec_in_pod(platform.cluster, pod, container, [PYTHON, "-S", "-c", probe]).strip() \
        == "yes"


def partition_policies(platform: KubernetesPlatform) -> list[str]:
    from kubernetes.client import NetworkingV1Api

    items: Any = NetworkingV1Api(platform.cluster.apps.api_client).list_namespaced_network_policy(
        "scalelab", label_selector="scalelab.io/fault=partition").items
    return [str(p.metadata.name) for p in items]


def test_partition_cuts_the_pod_off_the_broker_only(platform: KubernetesPlatform) -> None:
    from chaos.platform import PlatformError

    platform.deploy(Topology(replicas={"worker": 2}))
    victim, other = platform.instances("worker")
    try:
        platform.partition(victim)
    except PlatformError as exc:
        if "NetworkPolicy is not enforced" in str(exc):
            pytest.skip(f"this cluster does not enforce NetworkPolicy: {exc}")
        raise
    try:
        assert not connects(platform, victim.name, "worker", "redis-broker")
        assert connects(platform, victim.name, "worker", "redis-ledger")  # it still observes
        assert connects(platform, other.name, "worker", "redis-broker")
        ip = platform.cluster.core.read_namespaced_pod(victim.name, "scalelab").status.pod_ip
        broker: Any = redis.Redis.from_url(platform.broker_url)
        # its open connections were closed, and none came back
        assert not [c for c in broker.client_list() if c["addr"].startswith(f"{ip}:")]
    finally:
        platform.heal(victim)
    assert partition_policies(platform) == []
    assert connects(platform, victim.name, "worker", "redis-broker")


def test_partition_where_network_policy_is_not_enforced_fails_and_leaves_nothing(
        platform: KubernetesPlatform) -> None:
    from chaos.platform import PlatformError

    platform.deploy(Topology(replicas={"worker": 1}))
    (victim,) = platform.instances("worker")
    try:
        platform.partition(victim)
    except PlatformError as exc:
        assert str(exc).startswith("NetworkPolicy is not enforced") and "\n" not in str(exc)
    else:
        platform.heal(victim)
        pytest.skip("this cluster enforces NetworkPolicy")
    assert partition_policies(platform) == []
    labels = platform.cluster.core.read_namespaced_pod(victim.name, "scalelab").metadata.labels
    assert "scalelab.io/partition" not in labels
    assert connects(platform, victim.name, "worker", "redis-broker")
