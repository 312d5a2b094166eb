"""The names the lab shares with k8s/: context, namespace, NodePorts, labels, the
image's paths. tests/unit/test_manifests*.py check that the manifests agree."""

from __future__ import annotations

CONTEXT = "kind-scalelab"
NAMESPACE = "scalelab"
API_PORT = 30800
LEDGER_PORT = 30379
BROKER_PORT = 30380
SETTINGS_CONFIGMAP = "scalelab-settings"
BROKER_DEPLOYMENT = "redis-broker"
CRONJOB = "scalelab-tick"  # k8s/overlays/fixes/cronjob.yaml; its Jobs' pods are component "cronjob"
CONCURRENCY_POLICIES = ("Allow", "Forbid", "Replace")  # CronJobSpec.concurrencyPolicy
PART_OF = "app.kubernetes.io/part-of=scalelab"
COMPONENT_LABEL = "app.kubernetes.io/component"
RESTART_ANNOTATION = "kubectl.kubernetes.io/restartedAt"  # what `kubectl rollout restart` sets
PYTHON = "/opt/venv/bin/python"  # the image's interpreter (services/Dockerfile)
# The offset file libfaketime reads in a skewable pod (services/entrypoint.sh writes
# +0 at start; tests/unit/test_manifests.py checks they agree).
CLOCK_FILE = "/tmp/scalelab.faketime"
SKEWABLE = "skewable"  # topology setting, as on the local platform (chaos.local_faults)
FAKETIME_ARCHITECTURES = ("amd64",)  # what the libfaketime wheel's library is built for
BROKER_SERVICE = "redis-broker"
REDIS_PORT = 6379
PARTITION_LABEL = "scalelab.io/partition"  # on a cut-off pod: its own name
FAULT_LABEL = "scalelab.io/fault"  # on what a fault created, to find it again
PARTITION_CHECK_SECONDS = 8.0  # how long a new connection may still reach the broker

REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read: an unreachable cluster fails fast



def selector(component: str) -> str:
    """The label selector of one component's pods."""
    return f"{PART_OF},{COMPONENT_LABEL}={component}"
