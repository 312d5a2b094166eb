"""The Kubernetes-native faults against a live cluster, one test each: what Kubernetes
itself does to the lab's pods (a controller's rollout, a force delete, an eviction held
by a disruption budget, a pod-deletion-cost, a liveness restart), then the experiments
that count their effect on the work (``make test-kind``; they skip without a cluster).
"""

from __future__ import annotations

import contextlib
import threading
import time

import httpx
import pytest

from chaos.kubernetes import KubernetesPlatform
from chaos.platform import Topology
from tests.kind.test_platform import run_experiment

pytestmark = [pytest.mark.kind, pytest.mark.timeout(600)]


def test_a_statefulset_runs_the_api_and_replaces_it_under_the_same_name(
        platform: KubernetesPlatform) -> None:
    platform.deploy(Topology(replicas={"api": 1}, settings={"api_controller": "statefulset"}))
    (api,) = platform.instances("api")
    assert api.name == "api-singleton-0"
    assert httpx.get(f"{platform.api_url}/healthz", timeout=5).json()["instance"] == api.name
    platform.rolling_restart("api")  # the StatefulSet deletes it, then makes it again
    (again,) = platform.instances("api")
    assert again.name == api.name


def test_recreate_leaves_no_api_pod_between_the_old_and_the_new(
        platform: KubernetesPlatform) -> None:
    platform.deploy(Topology(replicas={"api": 1}, settings={"api_controller": "recreate"}))
    (old,) = platform.instances("api")
    seen: list[int] = []
    done = threading.Event()

    def count() -> None:  # how many api pods exist at once, terminating ones included
        from chaos.kubernetes import api as kapi
        from chaos.kubernetes.names import selector

        while not done.is_set():
            seen.append(len(kapi.list_pods(platform.cluster, selector("api"))[0]))
            time.sleep(0.1)

    watcher = threading.Thread(target=count)
    watcher.start()
    try:
        platform.rolling_restart("api")
    finally:
        done.set()
        watcher.join()
    assert max(seen) == 1, "Recreate never runs the old and the new pod together"
    assert platform.instances("api")[0].name != old.name


def test_force_delete_replaces_the_pod_at_once(platform: KubernetesPlatform) -> None:
    platform.deploy(Topology(replicas={"api": 1}, settings={"api_controller": "statefulset"}))
    (api,) = platform.instances("api")
    platform.force_delete(api)
    platform.wait_ready("api", 1, timeout=120)  # the same name, a new pod


def test_an_eviction_waits_for_the_disruption_budget(platform: KubernetesPlatform) -> None:
    platform.deploy(Topology(replicas={"worker": 2}, grace=2))
    first, second = platform.instances("worker")
    assert platform.evict(first) < 1.0, "one worker may go at once"
    # the budget (maxUnavailable 1) holds the second until the first's replacement is Ready
    assert platform.evict(second) > 0.5
    platform.wait_ready("worker", 2, timeout=120)


def test_the_deletion_cost_is_set_on_the_pod(platform: KubernetesPlatform) -> None:
    platform.deploy(Topology(replicas={"worker": 1}))
    (worker,) = platform.instances("worker")
    platform.set_deletion_cost(worker, 3)
    pod = platform.cluster.core.read_namespaced_pod(worker.name, platform.namespace)
    assert pod.metadata.annotations["controller.kubernetes.io/pod-deletion-cost"] == "3"


def test_a_strict_liveness_probe_restarts_a_blocked_api(platform: KubernetesPlatform) -> None:
    platform.deploy(Topology(replicas={"api": 1}, settings={"liveness": "strict"}))
    (api,) = platform.instances("api")
    # block the event loop past three probe failures (one a second)
    with contextlib.suppress(httpx.HTTPError):  # the restart may cut the request short
        httpx.post(f"{platform.api_url}/block", params={"seconds": 6}, timeout=15)
    deadline = time.monotonic() + 60
    while platform.container_restarts("api")[api.name][0] < 1:
        assert time.monotonic() < deadline, "kubelet never restarted the blocked container"
        time.sleep(0.5)


@pytest.mark.parametrize(("experiment", "args"), [
    ("singleton-scheduler", ["--controller", "deployment", "--event", "rollout"]),
    ("singleton-scheduler", ["--controller", "recreate", "--event", "rollout"]),
    ("singleton-scheduler", ["--controller", "lease", "--event", "rollout"]),
    ("drain", ["--acks", "late", "--soft-shutdown", "3"]),
    ("scale-in", ["--deletion-cost"]),
    ("liveness-restart", ["--liveness", "strict"]),
], ids=["rollout-surge", "rollout-recreate", "rollout-lease", "drain-soft", "scale-in-cost",
        "liveness-strict"])
def test_experiment(experiment: str, args: list[str], kube_context: str) -> None:
    summary = run_experiment(experiment, args, kube_context)
    assert summary["valid"], summary["expectation"]
