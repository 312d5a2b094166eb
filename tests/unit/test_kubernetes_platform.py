"""The lab's Kubernetes side without a cluster.

- KubernetesPlatform: its own Kubernetes-layer functions are replaced by a small
  fake cluster (kopf style), never the HTTP library. The connection errors are
  checked against the real client, with kubeconfigs made here and a closed
  loopback port.
- KubernetesLease: tests/unit/test_kubernetes_lease.py.
"""

from __future__ import annotations

import ast
import dataclasses
import http.server
import inspect
import itertools
import json
import os
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from chaos import kubernetes as k
from chaos.kubernetes import api as kapi
from chaos.kubernetes import broker as kbroker
from chaos.kubernetes import builders as kbuilders
from chaos.platform import Instance, Platform, PlatformError, Topology

ROOT = Path(__file__).resolve().parents[2]


class FakeCluster:
    """Pods appear ready at once; a restart replaces a component's pods."""

    def __init__(self) -> None:
        self.pods: list[k.PodState] = []
        self.settings: dict[str, str] = {"SCALELAB_OLD": "1"}
        self.calls: list[tuple[Any, ...]] = []
        self.deployed = True
        self.desired: dict[str, int] = {}  # each Deployment's spec.replicas, once set
        self.counter = itertools.count()
        self.clock = itertools.count(1000)
        self.pool_pid = 17  # what a worker's kill_child exec prints
        self.enforced = True  # whether the cluster enforces NetworkPolicy
        self.policies: dict[str, dict[str, Any]] = {}
        self.nodes = {"scalelab-control-plane": "amd64"}
        self.broker_refusals = 0
        self.footprint = 1250 * 1024  # the broker's used_memory with the lab connected
        self.statefulset = 0  # the api StatefulSet's replicas
        self.budget_refusals = 0  # evictions the PodDisruptionBudget refuses first

    def pod(self, component: str, stamp: str = "", ready: bool = True) -> k.PodState:
        serial = next(self.counter)
        pod = k.PodState(f"{component}-{serial}", component, ready, False,
                         float(next(self.clock)), stamp, f"10.244.0.{10 + serial}")
        self.pods.append(pod)
        return pod

    def of(self, component: str) -> list[k.PodState]:
        return [p for p in self.pods if p.component == component]

    # --- the functions chaos.kubernetes calls ----------------------------------------
    def connect(self, context: str, namespace: str, kubeconfig: str | None = None) -> str:
        if not self.deployed:
            raise PlatformError("lab not deployed: ...")
        return "cluster"

    def read_settings(self, cluster: object) -> dict[str, str]:
        return dict(self.settings)

    def replace_settings(self, cluster: object, data: dict[str, str]) -> None:
        self.calls.append(("settings", dict(data)))
        self.settings = dict(data)

    def patch_deployment(self, cluster: object, name: str, body: dict[str, Any]) -> None:
        self.calls.append(("patch", name, body))
        component = "broker" if name == k.BROKER_DEPLOYMENT else name
        stamp = body["spec"]["template"]["metadata"]["annotations"][k.RESTART_ANNOTATION]
        replicas = body["spec"].get("replicas", self.desired.get(name, len(self.of(component))))
        self.desired[name] = replicas
        self.pods = [p for p in self.pods if p.component != component]
        for _ in range(replicas):
            self.pod(component, stamp)

    def scale_deployment(self, cluster: object, name: str, replicas: int) -> None:
        self.calls.append(("scale", name, replicas))
        self.desired[name] = replicas
        component = "broker" if name == k.BROKER_DEPLOYMENT else name
        current = self.of(component)
        for p in current[replicas:]:
            self.pods.remove(p)
        for _ in range(replicas - len(current)):
            self.pod(component)

    def patch_statefulset(self, cluster: object, name: str, body: dict[str, Any]) -> None:
        self.calls.append(("patch-statefulset", name, body))
        self.statefulset = body["spec"].get("replicas", self.statefulset)
        stamp = body["spec"]["template"]["metadata"]["annotations"][k.RESTART_ANNOTATION]
        self.pods = [p for p in self.pods if p.component != "api"]
        for _ in range(self.statefulset):  # the same name: one pod per ordinal
            self.pods.append(k.PodState(f"api-singleton-{_}", "api", True, False,
                                        float(next(self.clock)), stamp, "10.244.0.9"))

    def scale_statefulset(self, cluster: object, name: str, replicas: int) -> None:
        self.calls.append(("scale-statefulset", name, replicas))
        self.statefulset = replicas
        if replicas == 0:
            self.pods = [p for p in self.pods if not p.name.startswith("api-singleton-")]

    def statefulset_replicas(self, cluster: object, name: str) -> int:
        return self.statefulset

    def deployment_replicas(self, cluster: object, name: str) -> int:
        component = "broker" if name == k.BROKER_DEPLOYMENT else name
        return self.desired.get(name, len(self.of(component)))

    def list_pods(self, cluster: object, selector: str) -> tuple[list[k.PodState], str]:
        component = selector.rsplit("=", 1)[1]
        return self.of(component), "42"

    def watch_pods(self, cluster: object, selector: str, version: str,
                   timeout: float) -> Generator[None, None, None]:
        self.calls.append(("watch", selector))
        yield None

    def delete_pod(self, cluster: object, name: str, grace: int) -> None:
        self.calls.append(("delete", name, grace))
        (pod,) = [p for p in self.pods if p.name == name]
        self.pods.remove(pod)
        self.pod(pod.component, pod.restarted_at)  # the ReplicaSet's replacement

    def annotate_pod(self, cluster: object, name: str,
                     annotations: dict[str, str | None]) -> None:
        self.calls.append(("annotate", name, annotations))

    def evict_pod(self, cluster: object, name: str) -> bool:
        self.calls.append(("evict", name))
        if self.budget_refusals:  # 429: the disruption budget allows none now
            self.budget_refusals -= 1
            return False
        self.delete_pod(cluster, name, 5)
        return True

    def exec_in_pod(self, cluster: object, pod: str, container: str, argv: list[str]) -> str:
        self.calls.append(("exec", pod, container, argv[-1]))
        if "pool_children" in argv[-1]:
            return f"{self.pool_pid}\n"
        if "create_connection" in argv[-1]:
            return f"{'cut' if self.enforced else 'reachable'}\n"
        return ""

    # --- NetworkPolicy, nodes, the broker's own settings --------------------------------
    def label_pod(self, cluster: object, name: str, labels: dict[str, str | None]) -> None:
        self.calls.append(("label", name, labels))

    def create_network_policy(self, cluster: object, body: dict[str, Any]) -> None:
        self.calls.append(("policy", body["metadata"]["name"]))
        self.policies[body["metadata"]["name"]] = body

    def delete_network_policies(self, cluster: object, selector: str) -> None:
        self.calls.append(("unpolicy", selector))
        wanted = dict(term.split("=") for term in selector.split(","))
        self.policies = {n: b for n, b in self.policies.items()
                         if any(b["metadata"]["labels"].get(k) != v for k, v in wanted.items())}

    def service_ip(self, cluster: object, name: str) -> str:
        return "10.96.0.80"

    def node_architectures(self, cluster: object) -> dict[str, str]:
        return dict(self.nodes)

    def broker_footprint(self, url: str) -> int:
        self.calls.append(("footprint",))
        return self.footprint

    def configure_broker(self, url: str, settings: dict[str, str]) -> bool:
        self.calls.append(("broker-config", dict(settings)))
        if self.broker_refusals:  # the NodePort refuses a connection or two
            self.broker_refusals -= 1
            return False
        return True

    def kill_broker_clients(self, url: str, ip: str) -> int:
        self.calls.append(("client-kill", ip))
        return 2

    def pod_log(self, cluster: object, name: str, container: str) -> str:
        self.calls.append(("log", name))
        if not any(p.name == name for p in self.pods):
            raise PlatformError(f"pod {name} not found")
        return f"the log of {name}\n"


def replace_layer(monkeypatch: pytest.MonkeyPatch, cluster: object, names: tuple[str, ...]) -> None:
    """Replace the named functions of the Kubernetes layer (chaos.kubernetes.api) and of
    the broker's (chaos.kubernetes.broker) with ``cluster``'s methods of those names."""
    for name in names:
        module = kbroker if hasattr(kbroker, name) and name in kbroker.__all__ else kapi
        assert hasattr(module, name), name
        monkeypatch.setattr(module, name, getattr(cluster, name))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    cluster = FakeCluster()
    monkeypatch.setattr(kapi, "disconnect", lambda cluster: None)
    monkeypatch.setattr(kbroker, "redis_answers", lambda url: True)
    replace_layer(monkeypatch, cluster, (
        "connect", "read_settings", "replace_settings", "patch_deployment",
        "scale_deployment", "deployment_replicas", "list_pods", "watch_pods",
        "delete_pod", "exec_in_pod", "pod_log", "label_pod", "create_network_policy",
        "delete_network_policies", "service_ip", "node_architectures",
        "configure_broker", "broker_footprint", "kill_broker_clients", "patch_statefulset",
        "scale_statefulset", "statefulset_replicas", "evict_pod", "annotate_pod"))
    monkeypatch.setattr("time.sleep", lambda s: cluster.calls.append(("sleep", s)))
    cluster.pod("broker")  # what cluster-up deployed
    return cluster


@pytest.fixture
def platform(fake: FakeCluster) -> k.KubernetesPlatform:
    return k.KubernetesPlatform(await_announcements=False, ready_timeout=5)


def signal_of(call: tuple[Any, ...]) -> str:
    return str(call[3]).rsplit(".", 1)[1].rstrip(")")


def test_is_a_platform() -> None:
    p = k.KubernetesPlatform()
    assert isinstance(p, Platform)
    assert p.name == "kubernetes"
    assert p.ledger_url == "redis://127.0.0.1:30379/0"
    assert p.broker_url == "redis://127.0.0.1:30380/0"


def test_deploy_applies_settings_restarts_and_waits(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    topology = Topology(replicas={"api": 3, "worker": 2}, settings={"scheduler_guard": "leader"},
                        grace=2.5)
    platform.deploy(topology)
    # the settings are replaced wholesale: nothing of an earlier run lingers
    assert fake.settings == {"SCALELAB_SCHEDULER_GUARD": "leader"}
    patches = [c for c in fake.calls if c[0] == "patch"]
    assert [c[1] for c in patches] == [k.BROKER_DEPLOYMENT, "api", "worker", "beat"]
    for _, name, body in patches[1:]:
        assert body["spec"]["replicas"] == topology.count(name)
        assert body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 3
    assert [len(fake.of(c)) for c in ("api", "worker", "beat", "broker")] == [3, 2, 0, 1]
    assert [i.name for i in platform.instances("api")] == [p.name for p in fake.of("api")]


def test_deploy_waits_for_the_new_pods_only(
        platform: k.KubernetesPlatform, fake: FakeCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    original = fake.patch_deployment
    stale: list[k.PodState] = []

    def slow_rollout(cluster: object, name: str, body: dict[str, Any]) -> None:
        original(cluster, name, body)
        if name == "api":  # an old pod is still terminating after the patch
            stale.append(k.PodState("api-old", "api", True, True, 1.0, "before"))
            fake.pods.append(stale[0])

    def watch(cluster: object, selector: str, version: str,
              timeout: float) -> Generator[None, None, None]:
        if stale and stale[0] in fake.pods:
            fake.pods.remove(stale[0])  # it goes away: the next list sees the new pods only
        yield None

    monkeypatch.setattr(kapi, "patch_deployment", slow_rollout)
    monkeypatch.setattr(kapi, "watch_pods", watch)
    platform.deploy(Topology(replicas={"api": 2}))
    assert "api-old" not in {p.name for p in fake.pods}


def test_instances_are_ready_live_pods_oldest_first(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    a, b = fake.pod("api"), fake.pod("api")
    fake.pod("api", ready=False)
    fake.pods.append(k.PodState("api-going", "api", True, True, 1.0))
    fake.pods.insert(0, k.PodState("api-young", "api", True, False, 5000.0))
    got = platform.instances("api")
    assert [i.name for i in got] == [a.name, b.name, "api-young"]
    assert all(i.url == "http://127.0.0.1:30800" and i.component == "api" for i in got)
    fake.pod("worker")
    assert platform.instances("worker")[0].url == ""


def test_kill_freezes_every_process_then_force_deletes(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    pod = fake.pod("worker")
    platform.kill(Instance(pod.name, "worker"))
    exec_call, delete_call = fake.calls
    assert exec_call[:3] == ("exec", pod.name, "worker") and signal_of(exec_call) == "SIGSTOP"
    assert delete_call == ("delete", pod.name, 0)
    assert len(fake.of("worker")) == 1 and fake.of("worker")[0].name != pod.name


def test_kill_has_no_mode_that_is_not_a_kill() -> None:
    # A plain (even force) delete is a graceful terminate: kubelet sends SIGTERM and
    # waits the pod's grace period (kubernetes/kubernetes#120449). SIGKILL through
    # exec ends tini too, and kubelet restarts the container in the same pod under
    # the same instance name. Neither is the Platform's kill.
    assert "kill_mode" not in inspect.signature(k.KubernetesPlatform).parameters
    assert not hasattr(k, "KillMode")


def test_terminate_grace_values(platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    for grace, want in ((2.2, 3), (0, 1), (None, 5)):
        pod = fake.pod("api")
        fake.calls.clear()
        platform.terminate(Instance(pod.name, "api"), grace=grace)
        assert fake.calls == [("delete", pod.name, want)]
    platform.deploy(Topology(replicas={"api": 1}, grace=7))  # the topology's grace by default
    fake.calls.clear()
    platform.terminate(platform.instances("api")[0])
    assert [c[2] for c in fake.calls] == [7]


def test_pause_and_resume_signal_every_app_process(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    pod = fake.pod("beat")
    platform.pause(Instance(pod.name, "beat"))
    platform.resume(Instance(pod.name, "beat"))
    assert [(c[1], c[2], signal_of(c)) for c in fake.calls] == [
        (pod.name, "beat", "SIGSTOP"), (pod.name, "beat", "SIGCONT")]
    # kill(-1, ...) spares PID 1 (tini) and the caller: it reaches the app and its children
    assert k.signal_argv("SIGSTOP")[-1] == "import os, signal; os.kill(-1, signal.SIGSTOP)"


def test_rolling_restart_waits_for_the_deployments_count_not_the_pods(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    fake.pod("api")
    fake.pod("api")
    fake.desired["api"] = 3  # just scaled to 3: the third pod is not there yet
    platform.rolling_restart("api")
    assert len(fake.of("api")) == 3


def test_deploy_brings_the_broker_back_after_an_outage_cut_short(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    fake.scale_deployment("cluster", k.BROKER_DEPLOYMENT, 0)  # the run died mid-outage
    platform.deploy(Topology(replicas={"api": 1}))
    (patch,) = [c for c in fake.calls if c[0] == "patch" and c[1] == k.BROKER_DEPLOYMENT]
    assert patch[2]["spec"]["replicas"] == 1
    assert len(fake.of("broker")) == 1


def test_as_run_says_where_the_topology_runs_otherwise(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    assert k.as_run(Topology(replicas={}, replace_delay=30, grace=2.5)) == {
        "replace_delay": 0.0, "grace": 3.0}
    assert k.as_run(Topology(replicas={}, replace_delay=0, grace=3)) == {}
    platform.deploy(Topology(replicas={"beat": 2}, replace_delay=30))
    assert platform.as_run == {"replace_delay": 0.0}


def test_rolling_restart_replaces_every_pod(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    old = {fake.pod("api").name for _ in range(3)}
    platform.rolling_restart("api")
    new = {p.name for p in fake.of("api")}
    assert len(new) == 3 and not new & old
    (patch,) = [c for c in fake.calls if c[0] == "patch"]
    assert "replicas" not in patch[2]["spec"]


def test_broker_outage_takes_the_broker_away_then_back(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    (broker,) = fake.of("broker")
    platform.broker_outage(2.5)
    steps = [c for c in fake.calls if c[0] in ("scale", "delete", "sleep")]
    assert steps == [("scale", k.BROKER_DEPLOYMENT, 0), ("sleep", 2.5),
                     ("scale", k.BROKER_DEPLOYMENT, 1)]
    assert [p.name for p in fake.of("broker")] != [broker.name]
    assert len(fake.of("broker")) == 1


def test_scale_and_wait_ready(platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    platform.scale("worker", 4)
    assert fake.calls == [("scale", "worker", 4)]
    platform.wait_ready("worker", 4, timeout=1)


def test_wait_ready_times_out_with_what_it_saw(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    fake.pod("api", ready=False)
    with pytest.raises(PlatformError, match=r"timed out after 0s waiting for 2 ready api pod\(s\)"
                       r" \(pods: api-1 \(not ready\)\)"):
        platform.wait_ready("api", 2, timeout=0)


def test_teardown_scales_the_app_to_zero_and_is_idempotent(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    platform.deploy(Topology(replicas={"api": 2, "worker": 1, "beat": 1}))
    platform.teardown()
    platform.teardown()
    assert not [p for p in fake.pods if p.component in ("api", "worker", "beat")]
    assert fake.of("broker")  # the Redis pair stays


def test_teardown_keeps_every_app_pods_log_before_the_pods_go(
        fake: FakeCluster, tmp_path: Path) -> None:
    # A failing run's evidence: once scaled to zero, the pods and their logs are gone.
    platform = k.KubernetesPlatform(await_announcements=False, ready_timeout=5, logs=tmp_path)
    platform.deploy(Topology(replicas={"api": 2, "worker": 1}))
    names = {p.name for p in fake.pods if p.component in ("api", "worker")}
    fake.calls.clear()
    platform.teardown()
    assert {f.stem for f in tmp_path.glob("*.log")} == names
    kinds = [c[0] for c in fake.calls]
    assert kinds.index("scale") > max(i for i, kind in enumerate(kinds) if kind == "log")


def test_teardown_without_a_lab_does_nothing(fake: FakeCluster) -> None:
    fake.deployed = False
    k.KubernetesPlatform().teardown()
    assert fake.calls == []


# --- kill_child, skew, partition, the broker's memory policy ---------------------------------


def test_kill_child_sigkills_one_pool_process_and_returns_its_pid(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    pod = fake.pod("worker")
    assert platform.kill_child(Instance(pod.name, "worker")) == 17
    (call,) = fake.calls
    assert call[:3] == ("exec", pod.name, "worker")
    # the pool processes are the children of the app tini (PID 1) started, found as the
    # local platform finds them; the pod itself stays
    assert "/proc/1/task/1/children" in call[3] and "pool_children" in call[3]
    assert "signal.SIGKILL" in call[3] and fake.of("worker") == [pod]
    fake.pool_pid = 0
    with pytest.raises(PlatformError, match=rf"^{pod.name} has no pool process to kill$"):
        platform.kill_child(Instance(pod.name, "worker"))


def test_the_broker_gets_the_topologys_memory_policy_and_loses_it_at_the_next_deploy(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    settings = {"broker_maxmemory": "1100kb", "broker_maxmemory_policy": "allkeys-lru"}
    platform.deploy(Topology(replicas={"worker": 1}, settings=settings))
    steps = [c[0] if c[0] != "patch" else c[1] for c in fake.calls
             if c[0] in ("patch", "broker-config")]
    # a size is set on the fresh broker before any instance starts using it
    assert steps == [k.BROKER_DEPLOYMENT, "broker-config", "api", "worker", "beat"]
    limit = {"maxmemory": str(1100 * 1024), "maxmemory-policy": "allkeys-lru"}
    assert ("broker-config", limit) in fake.calls
    assert "broker_maxmemory" not in platform.as_run
    fake.calls.clear()
    platform.broker_outage(0.1)  # the broker comes back with Redis's defaults: set again
    assert [c for c in fake.calls if c[0] == "broker-config"] == [("broker-config", limit)]
    fake.calls.clear()
    platform.deploy(Topology(replicas={"worker": 1}))
    assert [c for c in fake.calls if c[0] == "broker-config"] == [
        ("broker-config", {"maxmemory": "0", "maxmemory-policy": "noeviction"})]


def test_a_margin_is_set_over_the_brokers_footprint_once_the_lab_is_connected(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    settings = {"broker_maxmemory": "+120kb", "broker_maxmemory_policy": "noeviction"}
    platform.deploy(Topology(replicas={"worker": 1}, settings=settings))
    steps = [c[0] if c[0] != "patch" else c[1] for c in fake.calls
             if c[0] in ("patch", "broker-config", "footprint")]
    # measured after every instance is up, not on the empty broker
    assert steps == [k.BROKER_DEPLOYMENT, "api", "worker", "beat", "footprint",
                     "broker-config"]
    limit = {"maxmemory": str(fake.footprint + 120 * 1024), "maxmemory-policy": "noeviction"}
    assert ("broker-config", limit) in fake.calls
    assert platform.as_run["broker_maxmemory"] == "1370kb"
    fake.calls.clear()
    fake.footprint = 100  # an empty broker after the outage: the same limit, not a new one
    platform.broker_outage(0.1)
    assert [c for c in fake.calls if c[0] in ("broker-config", "footprint")] == [
        ("broker-config", limit)]


def test_a_broker_that_refuses_a_connection_right_after_its_ping_is_configured_anyway(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    # Seen on the local node: the NodePort answered PING, then refused the next connection.
    fake.broker_refusals = 2
    platform.deploy(Topology(replicas={"worker": 1}, settings={"broker_maxmemory": "2mb"}))
    assert len([c for c in fake.calls if c[0] == "broker-config"]) == 3


def test_kill_broker_clients_closes_only_that_addresss_connections(tmp_path: Path) -> None:
    # A real redis-server: the harness's own connection comes from the same loopback
    # address here, and must survive its own CLIENT KILLs.
    import socket
    import subprocess

    import redis

    from chaos.redis_server import redis_server_binary
    from tests.conftest import wait_for

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([redis_server_binary(), "--port", str(port), "--save", "",
                               "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        victims = [redis.Redis.from_url(url) for _ in range(2)]
        wait_for(lambda: all(_pings(c) for c in victims), 10, "redis up")
        ids = {str(c.client_id()) for c in victims}
        assert kbroker.kill_broker_clients(url, "127.0.0.2") == 0
        assert kbroker.kill_broker_clients(url, "127.0.0.1") == 2
        probe = redis.Redis.from_url(url)
        listed: list[dict[str, Any]] = probe.client_list()  # type: ignore[assignment]
        assert not ids & {str(c["id"]) for c in listed}  # their connections went
        for c in victims:
            c.close()
        probe.close()
    finally:
        server.terminate()
        server.wait(10)


def _pings(client: Any) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_skew_writes_the_offset_file_of_a_skewable_pod(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    api = Instance(fake.pod("api").name, "api")
    with pytest.raises(PlatformError, match=r"^this lab was not started skewable"):
        platform.skew(api, 2)
    platform.deploy(Topology(replicas={"api": 2}, settings={"skewable": True}))
    api = platform.instances("api")[0]
    with pytest.raises(PlatformError, match=r"^a clock skew must be within ±3600 s, not 4000$"):
        platform.skew(api, 4000)
    fake.calls.clear()
    platform.skew(api, 2)
    (call,) = fake.calls
    assert call[:3] == ("exec", api.name, "api") and "'+2.000\\n'" in call[3]


def test_skew_argv_replaces_the_file_whole_and_refuses_a_pod_started_unskewed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    clock = tmp_path / "scalelab.faketime"
    monkeypatch.setattr(kbuilders, "CLOCK_FILE", str(clock))
    code = k.skew_argv(-1.5)[-1]
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1 and "was not started skewable" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    clock.write_text("+0.000\n")  # what the entrypoint writes at start
    subprocess.run([sys.executable, "-S", "-c", code], check=True)
    assert clock.read_text() == "-1.500\n" and not list(tmp_path.glob("*.partial"))


def test_a_skewable_lab_needs_amd64_nodes(platform: k.KubernetesPlatform,
                                          fake: FakeCluster) -> None:
    # The libfaketime wheel is tagged py3-none-any but holds an x86-64 library: on arm64
    # the loader would ignore it and the clock would silently stay true.
    fake.nodes = {"scalelab-control-plane": "arm64"}
    with pytest.raises(PlatformError) as info:
        platform.deploy(Topology(replicas={"api": 1}, settings={"skewable": True}))
    assert str(info.value) == ("clock skew needs amd64 nodes: the libfaketime wheel ships an "
                               "x86-64 library only, and node scalelab-control-plane is arm64")
    assert fake.calls == []  # refused before anything changed
    platform.deploy(Topology(replicas={"api": 1}))  # unskewable labs run anywhere


def test_the_libfaketime_wheel_ships_an_x86_64_library_only() -> None:
    # What the arm64 check above stands on: the wheel the lock pins, as installed here.
    from chaos.skew import faketime_library

    lib = Path(faketime_library())
    if "site-packages" not in str(lib):
        pytest.skip(f"libfaketime from {lib}, not the wheel")
    header = lib.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 62  # x86-64
    record = (lib.parents[4] / next(p.name for p in lib.parents[4].glob("libfaketime-*.dist-info"))
              / "WHEEL").read_text()
    assert "Tag: py3-none-any" in record


def test_partition_labels_the_pod_applies_the_policy_checks_it_then_closes_its_connections(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    pod = fake.pod("worker")
    victim = Instance(pod.name, "worker")
    platform.partition(victim)
    kinds = [c[0] for c in fake.calls]
    assert kinds == ["label", "policy", "exec", "client-kill"]
    assert fake.calls[0] == ("label", pod.name, {k.PARTITION_LABEL: pod.name})
    assert "('10.96.0.80', 6379)" in fake.calls[2][3]  # the broker Service, from the pod
    assert fake.calls[3] == ("client-kill", pod.ip)
    assert list(fake.policies) == [f"scalelab-partition-{pod.name}"]
    fake.calls.clear()
    platform.heal(victim)
    assert fake.policies == {}
    assert ("label", pod.name, {k.PARTITION_LABEL: None}) in fake.calls


def test_partition_where_nothing_enforces_network_policy_fails_loudly_and_leaves_nothing(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    fake.enforced = False  # a CNI with no policy engine accepts the object and ignores it
    pod = fake.pod("api")
    with pytest.raises(PlatformError) as info:
        platform.partition(Instance(pod.name, "api"))
    message = str(info.value)
    assert message.startswith("NetworkPolicy is not enforced in context 'kind-scalelab': pod "
                              f"{pod.name} still reached the broker") and "\n" not in message
    assert fake.policies == {} and not [c for c in fake.calls if c[0] == "client-kill"]
    assert fake.calls[-1] == ("label", pod.name, {k.PARTITION_LABEL: None})


def test_deploy_and_teardown_remove_a_partition_left_behind(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    fake.policies["scalelab-partition-api-0"] = k.partition_policy("api-0", "10.244.0.9")
    platform.deploy(Topology(replicas={"api": 1}))
    assert fake.policies == {}
    platform.partition(platform.instances("api")[0])
    platform.teardown()
    assert fake.policies == {}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, want in selector.get("matchLabels", {}).items():
        if labels.get(key) != want:
            return False
    for e in selector.get("matchExpressions", []):
        has = labels.get(e["key"])
        if (e["operator"] == "In" and has not in e["values"]) or \
                (e["operator"] == "NotIn" and has in e["values"]):
            return False
    return True


def test_the_partition_policy_cuts_the_broker_only(tmp_path: Path) -> None:
    import ipaddress

    body = k.partition_policy("worker-abc", "10.244.0.31")
    spec = body["spec"]
    assert spec["policyTypes"] == ["Egress"]  # what reaches the pod is not touched
    assert _selects(spec["podSelector"], {k.PARTITION_LABEL: "worker-abc"})
    assert not _selects(spec["podSelector"], {k.COMPONENT_LABEL: "worker"})

    def reaches(labels: dict[str, str] | None, namespace: str = "scalelab", ip: str = "") -> bool:
        # labels None: not a pod (an address outside the pod network)
        for rule in spec["egress"]:
            for peer in rule["to"]:
                if labels is not None and "podSelector" in peer and namespace == "scalelab" \
                        and _selects(peer["podSelector"], labels):
                    return True
                if labels is not None and "namespaceSelector" in peer and _selects(
                        peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace}):
                    return True
                if "ipBlock" in peer and ip:
                    block = peer["ipBlock"]
                    addr = ipaddress.ip_address(ip)
                    if addr in ipaddress.ip_network(block["cidr"]) and not any(
                            addr in ipaddress.ip_network(x) for x in block["except"]):
                        return True
        return False

    # nor by its pod address, for engines that match ipBlocks against pod addresses too
    assert not reaches({k.COMPONENT_LABEL: "broker"}, ip="10.244.0.31")
    assert reaches(None, ip="10.244.0.1")  # the local node: API server and DNS on the bridge
    assert reaches({k.COMPONENT_LABEL: "ledger"})  # the ledger observes: never cut off
    assert reaches({k.COMPONENT_LABEL: "api"})
    assert reaches({"k8s-app": "kube-dns"}, namespace="kube-system")
    assert reaches(None, ip="172.18.0.2")  # kind's node: the API server
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for version in ("1.29.0", "1.33.0"):
        kubernetes_validate.validate(body, version, strict=True)


def test_cut_check_tells_a_reachable_broker_from_a_cut_one() -> None:
    # Run for real against loopback sockets: one that accepts, one that refuses.
    import socket
    import subprocess
    import sys

    with socket.socket() as listening, socket.socket() as closed:
        listening.bind(("127.0.0.1", 0))
        listening.listen(64)
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        for port, want in ((listening.getsockname()[1], "reachable"),
                           (closed.getsockname()[1], "cut")):
            code = k.cut_check_argv("127.0.0.1", port, 0.5)[-1]
            out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True,
                                 text=True, timeout=30, check=True).stdout
            assert out.strip() == want


def test_a_named_target_is_the_nth_pod_oldest_first(platform: k.KubernetesPlatform) -> None:
    # Experiments name targets as the local platform names instances (api-1); pods are
    # named by their ReplicaSet, so api-1 is the oldest API pod.
    from chaos.faults import FaultStep, _target

    oldest, newest = (Instance(name, "api", 0, platform.api_url)
                      for name in ("api-7d9f8c6b5-x2b4q", "api-7d9f8c6b5-24567"))

    class Pods:
        def instances(self, component: str) -> list[Instance]:
            return [oldest, newest] if component == "api" else []

    class Strike:
        def __init__(self, p: Any) -> None:
            self.platform = p

        def pick(self, step: FaultStep) -> Instance:
            raise AssertionError("a named target is not picked")

    s = Strike(Pods())
    assert _target(s, FaultStep("clock-skew", "api-1")) == oldest  # type: ignore[arg-type]
    assert _target(s, FaultStep("clock-skew", "api-2")) == newest  # type: ignore[arg-type]
    with pytest.raises(PlatformError, match="no instance api-3 to clock-skew"):
        _target(s, FaultStep("clock-skew", "api-3"))  # type: ignore[arg-type]

    class Local:  # serial names: only the exact name is the target
        def instances(self, component: str) -> list[Instance]:
            return [Instance("api-2", "api"), Instance("api-3", "api")]

    s = Strike(Local())
    assert _target(s, FaultStep("clock-skew", "api-3")).name == "api-3"  # type: ignore[arg-type]
    with pytest.raises(PlatformError, match="no instance api-1 to clock-skew"):
        _target(s, FaultStep("clock-skew", "api-1"))  # type: ignore[arg-type]


# --- errors, against the real client ---------------------------------------------------------


def kubeconfig(path: Path, context: str, server: str) -> Path:
    path.write_text(f"""
apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{server}", insecure-skip-tls-verify: true}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: {context}, context: {{cluster: c, user: u}}}}]
current-context: {context}
""")
    return path


def test_no_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(PlatformError, match=r"^no kubeconfig at .*missing: create the cluster"):
        k.connect("kind-scalelab", "scalelab")


def test_no_such_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", "other",
                                                    "https://127.0.0.1:1")))
    with pytest.raises(PlatformError,
                       match=r"^no context 'kind-scalelab' in the kubeconfig \(have: other\)"):
        k.KubernetesPlatform().deploy(Topology(replicas={"api": 1}))


def test_a_kubeconfig_whose_clusters_were_deleted_has_no_context(tmp_path: Path) -> None:
    # What `kind delete cluster` or the local node's `down` leaves: no context, and an
    # empty current context, which the client's own listing cannot get past.
    path = tmp_path / "config"
    path.write_text('apiVersion: v1\nkind: Config\nclusters: null\ncontexts: null\n'
                    'current-context: ""\nusers: null\npreferences: {}\n')
    with pytest.raises(PlatformError,
                       match=r"^no context 'kind-scalelab' in the kubeconfig \(have: none\)"):
        k.connect("kind-scalelab", "scalelab", kubeconfig=str(path))


def test_contexts_are_listed_from_every_kubeconfig_file(tmp_path: Path) -> None:
    first = kubeconfig(tmp_path / "a", "kind-scalelab", "https://127.0.0.1:1")
    second = kubeconfig(tmp_path / "b", "scalelab-local", "https://127.0.0.1:1")
    assert kapi._context_names(os.pathsep.join([str(first), str(tmp_path / "none"),
                                             str(second)])) == ["kind-scalelab",
                                                                "scalelab-local"]
    (tmp_path / "bad").write_text("- a list, not a kubeconfig\n")
    with pytest.raises(PlatformError, match=r"^unusable kubeconfig .*is not a kubeconfig"):
        k.connect("kind-scalelab", "scalelab", kubeconfig=str(tmp_path / "bad"))


def test_cluster_unreachable(tmp_path: Path) -> None:
    # Port 1 on the loopback: connection refused at once, nothing leaves the machine.
    path = kubeconfig(tmp_path / "config", "kind-scalelab", "https://127.0.0.1:1")
    with pytest.raises(PlatformError, match=r"^cluster of context 'kind-scalelab' unreachable at "
                                            r"https://127.0.0.1:1 .*make cluster-up"):
        k.connect("kind-scalelab", "scalelab", kubeconfig=str(path))


def test_lab_not_deployed_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes.client.exceptions import ApiException

    class Core:
        def read_namespaced_config_map(self, *a: object, **kw: object) -> None:
            raise ApiException(status=404, reason="Not Found")

    cluster = k.Cluster("kind-scalelab", "scalelab", "https://x", Core(), None, None)
    with pytest.raises(PlatformError) as info:
        k.read_settings(cluster)
    message = str(info.value)
    assert message.startswith("lab not deployed: read ConfigMap scalelab-settings not found")
    assert "\n" not in message and "make cluster-up" in message


def test_only_the_kubernetes_layer_imports_the_kubernetes_client() -> None:
    importers = []
    for path in ROOT.glob("**/*.py"):
        if ".venv" in path.parts or path.is_relative_to(ROOT / "tests"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "kubernetes" or n.startswith("kubernetes.") for n in names):
                importers.append(path.relative_to(ROOT).as_posix())
    assert sorted(set(importers)) == ["chaos/kubernetes/api.py"]


# --- the harness's requests behind a Service ------------------------------------------------


class _OneService(http.server.BaseHTTPRequestHandler):
    """Answers as the replica ``api-b`` whatever the client asked for, on keep-alive
    connections (HTTP/1.1), counting the connections it was given."""

    protocol_version = "HTTP/1.1"
    connections: ClassVar[list[int]] = []

    def handle(self) -> None:  # once per connection
        self.connections.append(1)
        super().handle()

    def do_POST(self) -> None:
        body = json.dumps({"work_id": "x", "instance": "api-b"}).encode()
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_requests_are_spread_per_request_and_credited_to_the_replica_that_took_them() -> None:
    # kube-proxy picks a backend per connection (kubernetes/kubernetes#38456): one
    # keep-alive connection would send every request to one replica.
    from experiments.model import RequestLoad
    from experiments.workload import RequestClient

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OneService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    recorded: list[tuple[Any, ...]] = []

    class Platform:  # every instance has the Service's URL, as on kubernetes
        def instances(self, component: str) -> list[Instance]:
            return [Instance("api-a", "api", 0, url)]

    class Ledger:
        def record(self, *args: Any) -> None:
            recorded.append(args)

    client = RequestClient(Platform(), Ledger(), RequestLoad("/work/background", 1, 0),  # type: ignore[arg-type]
                           "req", 10)
    try:
        for k in range(3):
            client.send(k)
    finally:
        client.close()
        server.shutdown()
        server.server_close()
    assert client.acknowledged == 3
    assert len(_OneService.connections) == 3, "one connection per request"
    assert {r[3] for r in recorded} == {"api-b"}, "the replica that answered took the work"


def test_parallel_suite_on_kubernetes_is_refused_in_one_line(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # The runs would share the cluster's Deployments, settings ConfigMap and run key.
    from experiments.cli import main

    with pytest.raises(SystemExit) as info:
        main(["suite", "--platform", "kubernetes", "--jobs", "2", "--results", str(tmp_path)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--jobs 2" in err and "use --jobs 1" in err


# --- what runs the api: Deployment strategies, the StatefulSet ------------------------------


@pytest.mark.parametrize(("controller", "strategy"), [
    ("deployment", {"type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
    ("deployment-surge0", {"type": "RollingUpdate",
                           "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}),
    ("recreate", {"type": "Recreate", "rollingUpdate": None}),
])
def test_the_api_deployment_gets_the_controllers_strategy(
        platform: k.KubernetesPlatform, fake: FakeCluster, controller: str,
        strategy: dict[str, Any]) -> None:
    platform.deploy(Topology(replicas={"api": 1}, settings={"api_controller": controller}))
    (patch,) = [c for c in fake.calls if c[0] == "patch" and c[1] == "api"]
    assert patch[2]["spec"]["strategy"] == strategy and patch[2]["spec"]["replicas"] == 1
    assert ("scale-statefulset", "api-singleton", 0) in fake.calls
    assert platform.as_run["strategy"] == strategy["type"]
    assert platform.as_run["termination_grace_seconds"] == 5
    # one replica: 25% surge rounds up to 1, 25% unavailable down to 0
    surge = {"deployment": (1, 0), "deployment-surge0": (0, 1), "recreate": (0, 1)}[controller]
    assert (platform.as_run["max_surge"], platform.as_run["max_unavailable"]) == surge


def test_a_statefulset_runs_the_api_instead_of_the_deployment(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    platform.deploy(Topology(replicas={"api": 1}, settings={"api_controller": "statefulset"}))
    (patch,) = [c for c in fake.calls if c[0] == "patch" and c[1] == "api"]
    assert patch[2]["spec"]["replicas"] == 0
    assert [i.name for i in platform.instances("api")] == ["api-singleton-0"]
    assert platform.as_run["strategy"] == "StatefulSet"
    fake.calls.clear()
    platform.rolling_restart("api")  # rollout restart: a new stamp on the StatefulSet
    assert [c[0] for c in fake.calls if c[0].startswith("patch")] == ["patch-statefulset"]
    platform.scale("api", 0)
    assert ("scale-statefulset", "api-singleton", 0) in fake.calls
    platform.teardown()
    assert not fake.of("api")


def test_an_unknown_controller_is_refused_before_anything_changes(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    with pytest.raises(PlatformError, match="api_controller must be one of"):
        platform.deploy(Topology(replicas={"api": 1}, settings={"api_controller": "daemonset"}))
    assert not [c for c in fake.calls if c[0] == "patch" and c[1] == "api"]


def test_force_delete_is_a_delete_with_no_grace_and_no_freeze(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    platform.deploy(Topology(replicas={"api": 1}))
    (target,) = platform.instances("api")
    fake.calls.clear()
    platform.force_delete(target)
    assert fake.calls == [("delete", target.name, 0)]


def test_an_eviction_is_asked_again_while_the_budget_refuses_it(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    platform.deploy(Topology(replicas={"worker": 2}))
    first = platform.instances("worker")[0]
    fake.calls.clear()
    fake.budget_refusals = 2
    platform.evict(first)
    assert [c for c in fake.calls if c[0] in ("evict", "sleep", "delete")] == [
        ("evict", first.name), ("sleep", 1.0), ("evict", first.name), ("sleep", 1.0),
        ("evict", first.name), ("delete", first.name, 5)]
    fake.budget_refusals = 10**6
    platform.ready_timeout = 0
    with pytest.raises(PlatformError, match=r"disruption budget of .* refused its eviction"):
        platform.evict(platform.instances("worker")[0])


def test_the_soft_shutdown_remaps_sigterm_in_the_workers_environment(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    def remap() -> str:
        (patch,) = [c for c in fake.calls if c[0] == "patch" and c[1] == "worker"]
        (container,) = patch[2]["spec"]["template"]["spec"]["containers"]
        assert container["name"] == "worker"
        (env,) = container["env"]
        assert env["name"] == "REMAP_SIGTERM"
        return str(env["value"])

    platform.deploy(Topology(replicas={"worker": 1}, settings={"soft_shutdown_timeout": 4}))
    assert remap() == "SIGQUIT"
    fake.calls.clear()
    platform.deploy(Topology(replicas={"worker": 1}))
    assert remap() == "", "off again: no earlier run's setting stays"


def test_the_deletion_cost_is_the_pods_annotation(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    platform.deploy(Topology(replicas={"worker": 2}))
    busy = platform.instances("worker")[1]
    fake.calls.clear()
    platform.set_deletion_cost(busy, 2)
    assert fake.calls == [("annotate", busy.name,
                           {"controller.kubernetes.io/pod-deletion-cost": "2"})]


def test_the_liveness_probe_and_prestop_follow_the_topology(
        platform: k.KubernetesPlatform, fake: FakeCluster) -> None:
    def api_container() -> dict[str, Any]:
        (patch,) = [c for c in fake.calls if c[0] == "patch" and c[1] == "api"]
        (container,) = patch[2]["spec"]["template"]["spec"]["containers"]
        return dict(container)

    platform.deploy(Topology(replicas={"api": 1}, settings={"liveness": "strict",
                                                            "prestop_seconds": 3}))
    container = api_container()
    assert container["livenessProbe"]["periodSeconds"] == 1
    assert container["lifecycle"]["preStop"]["exec"]["command"][-1] == "import time; time.sleep(3)"
    assert platform.as_run["liveness_probe"]["kind"] == "strict"
    assert platform.as_run["prestop_seconds"] == 3
    fake.calls.clear()
    platform.deploy(Topology(replicas={"api": 1}))
    container = api_container()
    assert container["livenessProbe"]["periodSeconds"] == 5 and container["lifecycle"] is None
    with pytest.raises(PlatformError, match="liveness must be one of lenient, strict"):
        platform.deploy(Topology(replicas={"api": 1}, settings={"liveness": "none"}))


def test_container_restarts_are_kubelets_counts(platform: k.KubernetesPlatform,
                                                fake: FakeCluster) -> None:
    platform.deploy(Topology(replicas={"worker": 1}))
    (pod,) = fake.of("worker")
    fake.pods[fake.pods.index(pod)] = dataclasses.replace(pod, restarts=1, last_exit="OOMKilled")
    assert platform.container_restarts("worker") == {pod.name: (1, "OOMKilled")}
