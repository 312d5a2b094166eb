"""Pure builders: what the platform execs into a pod, the NetworkPolicy of a
partition, and how a topology really runs (``as_run``). No request is made here."""

from __future__ import annotations

import math
from typing import Any

from chaos.kubernetes.names import (
    CLOCK_FILE,
    COMPONENT_LABEL,
    FAULT_LABEL,
    NAMESPACE,
    PARTITION_LABEL,
    PYTHON,
)
from chaos.platform import Topology
from chaos.skew import faketime_offset


def as_run(topology: Topology) -> dict[str, Any]:
    """Where this platform runs ``topology`` otherwise than it says (empty: exactly)."""
    ran: dict[str, Any] = {}
    if topology.replace_delay:
        ran["replace_delay"] = 0.0  # the ReplicaSet replaces a deleted pod at once
    grace = max(1, math.ceil(topology.grace))  # terminationGracePeriodSeconds is whole
    if grace != topology.grace:
        ran["grace"] = float(grace)
    return ran


def signal_argv(signame: str) -> list[str]:
    """Signal every process of the container but tini (PID 1) and the caller."""
    return [PYTHON, "-S", "-c", f"import os, signal; os.kill(-1, signal.{signame})"]


def partition_policy(pod: str, broker_ip: str, namespace: str = NAMESPACE) -> dict[str, Any]:
    """A NetworkPolicy that lets the pod labelled ``PARTITION_LABEL=pod`` reach
    everything but the broker: every pod of the lab that is not the broker (the ledger
    above all), every other namespace (DNS), and every address but the broker pod's
    (the API server, a DNS server on the node). Policies only ever allow, so "all but
    the broker" is spelled as the union of everything else. Some engines match
    ipBlocks against pod addresses too (kube-router does), hence the broker's address
    kept out of the last one; a broker replaced during the partition would be
    reachable at its new address there."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"scalelab-partition-{pod}", "namespace": namespace,
                     "labels": {FAULT_LABEL: "partition", PARTITION_LABEL: pod,
                                "app.kubernetes.io/part-of": "scalelab"}},
        "spec": {
            "podSelector": {"matchLabels": {PARTITION_LABEL: pod}},
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"podSelector": {"matchExpressions": [
                    {"key": COMPONENT_LABEL, "operator": "NotIn", "values": ["broker"]}]}}]},
                {"to": [{"namespaceSelector": {"matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                     "values": [namespace]}]}}]},
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [f"{broker_ip}/32"]}}]},
            ],
        },
    }


def cut_check_argv(host: str, port: int, seconds: float) -> list[str]:
    """In the pod: print ``cut`` once a new connection to host:port fails (the policy
    holds), ``reachable`` if every attempt for ``seconds`` still connects."""
    code = (
        "import socket, time\n"
        f"deadline = time.monotonic() + {seconds:g}\n"
        "state = 'reachable'\n"
        "while time.monotonic() < deadline:\n"
        "    try:\n"
        f"        socket.create_connection(({host!r}, {port}), timeout=0.5).close()\n"
        "    except OSError:\n"
        "        state = 'cut'\n"
        "        break\n"
        "    time.sleep(0.1)\n"
        "print(state)\n")
    return [PYTHON, "-S", "-c", code]


def kill_child_argv() -> list[str]:
    """In a worker container: SIGKILL the lowest-pid pool process of the app tini
    started (PID 1's child); print its pid, or 0 if it has none."""
    code = (
        "import os, signal\n"
        "from chaos.local_faults import pool_children\n"
        "apps = [int(p) for p in open('/proc/1/task/1/children').read().split()]\n"
        "pool = sorted(c for app in apps for c in pool_children(app))\n"
        "if pool:\n"
        "    os.kill(pool[0], signal.SIGKILL)\n"
        "print(pool[0] if pool else 0)\n")
    return [PYTHON, "-c", code]


def skew_argv(seconds: float) -> list[str]:
    """In a skewable container: write the clock offset libfaketime reads (whole, then
    renamed, so it never reads half an offset)."""
    partial = CLOCK_FILE + ".partial"
    unskewed = (f"no {CLOCK_FILE}: this pod was not started skewable by the image's "
                "entrypoint (rebuild the image: make cluster-up)")
    code = (
        "import os, sys\n"
        f"if not os.path.exists({CLOCK_FILE!r}):\n"
        f"    sys.exit({unskewed!r})\n"
        f"open({partial!r}, 'w').write({faketime_offset(seconds) + chr(10)!r})\n"
        f"os.replace({partial!r}, {CLOCK_FILE!r})\n")
    return [PYTHON, "-S", "-c", code]


