"""Two local nodes, and the loss of one: ``node.py up --nodes 2``, ``isolate``, ``rejoin``.

The second node's kubelet, containerd and kube-proxy run in a network namespace of
their own (as kind's node containers do), its pods on their own bridge and /24.
Cutting it off the API server leaves its containers running and reaching Redis;
after the controller-manager's node-monitor grace and the pods' unreachable
toleration a Deployment's pod is replaced on the first node, so both copies run at
once until the node rejoins (the node-loss mechanism of
https://kubernetes.io/docs/concepts/architecture/nodes/#condition and
https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/#taint-based-evictions).

Opt-in like test_node.py (``make test-node``); the bad-input test runs everywhere.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.node.nodeparts import kubeconfig, layout, left_behind, run_node, shell, why_not

pytestmark = pytest.mark.timeout(1200)
SECOND = layout.NodeSpec(2)
KEY = "scalelab-node-test:alive:"
# Each pod counts its own heartbeats in the ledger Redis, through the Service.
HEARTBEAT = (
    "import os, socket, time\n"
    "name = os.environ['HOSTNAME']\n"
    "while True:\n"
    "    try:\n"
    "        with socket.create_connection(('redis-ledger', 6379), timeout=2) as c:\n"
    f"            c.sendall(f'INCR {KEY}{{name}}\\r\\n'.encode()); c.recv(64)\n"
    "    except OSError:\n"
    "        pass\n"
    "    time.sleep(0.5)\n"
)


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    return str(kubeconfig.kubectl(*args, stdin=stdin, check=check))


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[float]:
    if why := why_not():
        pytest.skip(why)
    built = run_node("images", timeout=1800)  # depends on the code, not the node: untimed
    assert built.returncode == 0, built.stderr[-2000:]
    started = time.monotonic()
    up = run_node("up", "--nodes", "2", "--overlay", "kind", timeout=900)
    took = time.monotonic() - started
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        from tests.node.test_node import record

        record("up, two nodes, warm caches", took)
        yield took
    finally:
        run_node("down", timeout=900)


def ledger() -> redis.Redis:
    return redis.Redis(port=30379, socket_timeout=5)


def heartbeat_deployment(name: str, node_role: str) -> str:
    """A Deployment of one pod that prefers the node with ``node_role`` and beats."""
    template = json.loads(kubectl("-n", "scalelab", "get", "deployment/worker", "-o", "json"))
    pod = template["spec"]["template"]["spec"]
    container = {**pod["containers"][0], "name": "beat",
                 "args": ["/opt/venv/bin/python", "-c", HEARTBEAT]}
    for k in ("livenessProbe", "readinessProbe", "startupProbe", "env", "envFrom"):
        container.pop(k, None)
    labels = {"app.kubernetes.io/part-of": "scalelab", "app.kubernetes.io/component": name}
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {**pod, "containers": [container], "terminationGracePeriodSeconds": 1,
                     "affinity": {"nodeAffinity": {
                         "preferredDuringSchedulingIgnoredDuringExecution": [{
                             "weight": 100, "preference": {"matchExpressions": [{
                                 "key": layout.NODE_LABEL, "operator": "In",
                                 "values": [node_role]}]}}]}}}}}})


def pods_of(component: str) -> list[dict[str, object]]:
    return list(json.loads(kubectl("-n", "scalelab", "get", "pods", "-l",
                                   f"app.kubernetes.io/component={component}",
                                   "-o", "json"))["items"])


def beats(pod: str) -> int:
    value: bytes | None = ledger().get(f"{KEY}{pod}")  # type: ignore[assignment]
    return int(value or 0)


def beating(pod: str, within: float = 5) -> bool:
    before = beats(pod)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if beats(pod) > before:
            return True
        time.sleep(0.25)
    return False


def test_both_nodes_are_ready_with_their_labels(two_nodes: float) -> None:
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    got = {n["metadata"]["name"]: n["metadata"]["labels"].get(layout.NODE_LABEL) for n in nodes}
    assert got == {"scalelab-node": "primary", "scalelab-node-2": "secondary"}
    for n in nodes:
        ready = {c["type"]: c["status"] for c in n["status"]["conditions"]}["Ready"]
        assert ready == "True", n["metadata"]["name"]
    # the harness's Redis stays on the first node (its NodePorts are the first node's)
    for component in ("ledger", "broker"):
        (pod,) = pods_of(component)
        assert pod["spec"]["nodeName"] == "scalelab-node"  # type: ignore[index]


def test_the_second_nodes_runtime_lives_in_its_own_network_namespace(two_nodes: float) -> None:
    pids = json.loads(layout.PIDS.read_text())
    netns = os.stat(layout.NETNS_DIR / "scalelab-node-2").st_ino
    host = os.stat("/proc/self/ns/net").st_ino
    for name in ("containerd-2", "kubelet-2", "kube-proxy-2"):
        assert os.stat(f"/proc/{pids[name]}/ns/net").st_ino == netns, name
    for name in ("containerd", "kubelet", "kube-proxy", "kube-apiserver"):
        assert os.stat(f"/proc/{pids[name]}/ns/net").st_ino == host, name
    # its pods on its own bridge and /24
    kubectl("-n", "scalelab", "apply", "-f", "-", stdin=heartbeat_deployment("probe",
                                                                            "secondary"))
    kubectl("-n", "scalelab", "rollout", "status", "deployment/probe", "--timeout=120s")
    (pod,) = pods_of("probe")
    assert pod["spec"]["nodeName"] == "scalelab-node-2"  # type: ignore[index]
    assert str(pod["status"]["podIP"]).startswith("10.244.1.")  # type: ignore[index]
    assert beating(str(pod["metadata"]["name"]), 30)  # type: ignore[index]
    kubectl("-n", "scalelab", "delete", "deployment/probe", "--wait=true")


def node_ready(name: str) -> str:
    return kubectl("get", "node", name, "-o",
                   'jsonpath={.status.conditions[?(@.type=="Ready")].status}').strip()


def test_a_cut_node_keeps_its_pods_running_while_a_replacement_starts(two_nodes: float) -> None:
    kubectl("-n", "scalelab", "apply", "-f", "-", stdin=heartbeat_deployment("stray",
                                                                            "secondary"))
    kubectl("-n", "scalelab", "rollout", "status", "deployment/stray", "--timeout=120s")
    (old,) = pods_of("stray")
    old_name = str(old["metadata"]["name"])  # type: ignore[index]
    assert old["spec"]["nodeName"] == "scalelab-node-2"  # type: ignore[index]
    cut = run_node("isolate", "scalelab-node-2", timeout=60)
    assert cut.returncode == 0, cut.stderr
    settings = json.loads(run_node("nodes", timeout=30).stdout)
    assert [n["isolated"] for n in settings["nodes"]] == [None, "cut"]
    grace = settings["settings"]["node_monitor_grace_period_s"]
    toleration = settings["settings"]["default_unreachable_toleration_s"]
    try:
        shell.wait_until("scalelab-node-2 to go unready",
                         lambda: node_ready("scalelab-node-2") != "True", grace + 30)
        assert beating(old_name), "the cut node's pod stopped reaching Redis"

        def replaced() -> str | None:
            for p in pods_of("stray"):
                meta, status = p["metadata"], p["status"]
                if (meta["name"] != old_name  # type: ignore[index]
                        and status.get("phase") == "Running"):  # type: ignore[attr-defined]
                    return str(meta["name"])  # type: ignore[index]
            return None

        shell.wait_until("a replacement of the unreachable pod", lambda: replaced() is not None,
                         toleration + 90)
        new_name = replaced()
        assert new_name is not None
        (new,) = (p for p in pods_of("stray") if p["metadata"]["name"] == new_name)  # type: ignore[index]
        assert new["spec"]["nodeName"] == "scalelab-node"  # type: ignore[index]
        # Both copies run at once: the lost node's, which nobody could stop, and its
        # replacement.
        assert beating(new_name, 30) and beating(old_name)
    finally:
        back = run_node("rejoin", "scalelab-node-2", timeout=60)
    assert back.returncode == 0, back.stderr
    shell.wait_until("scalelab-node-2 to be Ready again",
                     lambda: node_ready("scalelab-node-2") == "True", 90)
    # Back in touch, its kubelet learns the old pod was deleted and stops it.
    shell.wait_until("the old pod's container to stop", lambda: not beating(old_name, 2), 90)
    kubectl("-n", "scalelab", "delete", "deployment/stray", "--wait=true")


def test_freeze_stops_the_second_kubelet_and_rejoin_resumes_it(two_nodes: float) -> None:
    pid = json.loads(layout.PIDS.read_text())["kubelet-2"]

    def state() -> str:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]

    assert run_node("isolate", "scalelab-node-2", "--how", "freeze", timeout=60).returncode == 0
    shell.wait_until("kubelet-2 to stop", lambda: state() == "T", 10)
    assert run_node("rejoin", "scalelab-node-2", timeout=60).returncode == 0
    shell.wait_until("kubelet-2 to run again", lambda: state() != "T", 10)
    shell.wait_until("scalelab-node-2 Ready", lambda: node_ready("scalelab-node-2") == "True", 90)


def test_down_leaves_no_namespace_veth_route_rule_or_ipset(two_nodes: float) -> None:
    down = run_node("down", timeout=900)
    assert down.returncode == 0, down.stderr[-2000:]
    assert left_behind() == {}
    assert not (layout.NETNS_DIR / "scalelab-node-2").exists()
    assert not Path(f"/sys/class/net/{SECOND.veth}").exists()
    assert "10.244." not in shell.run("ip", "-4", "route", "show")


@pytest.mark.parametrize("args, says", [
    (("isolate", "nosuch"), "nosuch"),
    (("isolate", "scalelab-node"), "control plane"),
    (("rejoin", "scalelab-node-3"), "scalelab-node-3"),
    (("up", "--nodes", "3"), "--nodes"),
    (("isolate", "scalelab-node-2", "--how", "melt"), "melt"),
])
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], says: str) -> None:
    out = run_node(*args, timeout=60)
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert "Traceback" not in out.stderr
    assert says in lines[-1] or os.geteuid() != 0, lines
