"""Pure builders: what the platform execs into a pod, the NetworkPolicy of a
partition, and how a topology really runs (``as_run``). No request is made here."""

from __future__ import annotations

import math
from collections.abc import Mapping
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




# How the API's replicas are controlled (topology setting ``api_controller``), each with
# what Kubernetes does on a rollout and on a pod delete:
# - deployment: RollingUpdate at Kubernetes' defaults (maxSurge 25% rounds up to 1,
#   maxUnavailable 25% rounds down to 0 for up to 3 replicas): the new pod is started
#   and must be Ready before the old one is deleted: two at once for a while.
# - deployment-surge0: maxSurge 0, maxUnavailable 1: the old pod is deleted first, but
#   its replacement is created as soon as the old one is terminating, not once it is
#   gone (kubernetes/kubernetes#99513): they still overlap by the old one's shutdown.
# - recreate: every old pod is gone before a new one is created (a gap).
# - statefulset: the StatefulSet api-singleton (k8s/base/api-singleton.yaml): at most
#   one pod per ordinal; a replacement is created only once the old pod is gone, unless
#   it is force deleted ("Force Delete StatefulSet Pods" in the Kubernetes docs).
API_CONTROLLERS = ("deployment", "deployment-surge0", "recreate", "statefulset")
API_STATEFULSET = "api-singleton"


def deployment_strategy(controller: str) -> dict[str, Any]:
    """The api Deployment's ``spec.strategy`` for a controller (a strategic merge patch:
    ``rollingUpdate: None`` removes it, as Recreate requires); "" is k8s/base's."""
    if controller == "recreate":
        return {"type": "Recreate", "rollingUpdate": None}
    surge, unavailable = {"deployment-surge0": (0, 1), "deployment": ("25%", "25%")}.get(
        controller, (1, 0))  # "": k8s/base's own, one at a time, never below the count
    return {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}


def surge_of(controller: str, replicas: int) -> dict[str, int]:
    """maxSurge and maxUnavailable as the Deployment controller resolves them for
    ``replicas`` (a percentage of surge rounds up, of unavailability down)."""
    if controller == "recreate" or controller == "statefulset":
        return {"max_surge": 0, "max_unavailable": replicas}
    if controller == "deployment-surge0":
        return {"max_surge": 0, "max_unavailable": 1}
    return {"max_surge": math.ceil(replicas * 0.25), "max_unavailable": replicas * 25 // 100}


# The api's liveness probe (topology setting ``liveness``). ``lenient`` is k8s/base's
# (tests/unit/test_manifests.py checks): kubelet restarts the container only after 30 s
# of failed probes. ``strict`` is a common chart's: three failures a second apart, so
# an event loop blocked for ~3 s gets the container restarted (kubelet's liveness
# restart keeps the pod, its name and IP: "Configure Liveness, Readiness and Startup
# Probes" in the Kubernetes docs).
LIVENESS: dict[str, dict[str, Any]] = {
    "lenient": {"initialDelaySeconds": 10, "periodSeconds": 5, "failureThreshold": 6,
                "timeoutSeconds": 2},
    "strict": {"initialDelaySeconds": 5, "periodSeconds": 1, "failureThreshold": 3,
               "timeoutSeconds": 1},
}


WORKER_MEMORY_MB = 512  # k8s/base/worker.yaml's limit and request
WORKER_REQUEST_MB = 192


def container_overrides(component: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """What the topology's Kubernetes-only settings change in the component's container
    (a strategic merge patch item, merged by the container's name; None removes a field,
    so nothing of an earlier run's settings stays):

    - ``prestop_seconds`` (api): a preStop hook that sleeps, as charts add to let the
      endpoint's removal reach every proxy before the app gets SIGTERM. Kubelet runs
      it first, within terminationGracePeriodSeconds, and the app runs on meanwhile.
    - ``liveness`` (api): its liveness probe's timings, one of ``LIVENESS``.
    - ``worker_memory_mb`` (worker): its container's memory limit (k8s/base's 512 Mi
      when unset), past which the kernel's OOM killer ends a process of it.
    - ``soft_shutdown_timeout`` (worker): REMAP_SIGTERM=SIGQUIT, so kubelet's SIGTERM
      starts Celery's cold shutdown and with it the soft shutdown (Celery's workers
      guide, "Soft Shutdown", 5.5+); billiard reads it at import, hence the container's
      environment. Empty when off: billiard takes an empty value as unset.
    """
    patch: dict[str, Any] = {"name": component}
    if component == "worker":
        soft = float(settings.get("soft_shutdown_timeout", 0) or 0) > 0
        patch["env"] = [{"name": "REMAP_SIGTERM", "value": "SIGQUIT" if soft else ""}]
        limit = int(settings.get("worker_memory_mb", 0) or 0) or WORKER_MEMORY_MB
        patch["resources"] = {"limits": {"memory": f"{limit}Mi"},
                              "requests": {"memory": f"{min(limit, WORKER_REQUEST_MB)}Mi"}}
    if component == "api":
        probe = LIVENESS[str(settings.get("liveness", "lenient"))]
        patch["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": "http"}, **probe}
        prestop = float(settings.get("prestop_seconds", 0) or 0)
        patch["lifecycle"] = ({"preStop": {"exec": {"command": [
            PYTHON, "-S", "-c", f"import time; time.sleep({prestop:g})"]}}}
            if prestop > 0 else None)
    return patch


def cgroup_argv() -> list[str]:
    """In a container: print ``v2`` on a unified (cgroup v2) hierarchy, else ``v1``."""
    return [PYTHON, "-S", "-c", "import os; print('v2' if os.path.exists("
                                "'/sys/fs/cgroup/cgroup.controllers') else 'v1')"]
