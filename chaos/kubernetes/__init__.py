"""The lab on Kubernetes, one job per module:

- ``names``: the names shared with k8s/ (context, namespace, NodePorts, labels);
- ``api``: the Kubernetes layer, the only code that imports the ``kubernetes``
  client: one request per function, plain values back, one-line errors;
- ``broker``: the broker's Redis as the harness reaches it;
- ``builders``: pure builders of what is exec'd into pods and of policies;
- ``lab``: deploying a topology, listing and waiting for pods, teardown;
- ``platform``: ``KubernetesPlatform``, the lab and its faults.

Unit tests replace the functions of ``api`` and ``broker``
(tests/unit/test_kubernetes_platform.py); the platform calls them through their
modules so that one replacement reaches every caller.
"""

from chaos.kubernetes.api import (
    Cluster,
    PodState,
    connect,
    deployment_replicas,
    disconnect,
    exec_in_pod,
    patch_cronjob,
    read_settings,
    scale_deployment,
)
from chaos.kubernetes.builders import (
    as_run,
    cut_check_argv,
    kill_child_argv,
    partition_policy,
    signal_argv,
    skew_argv,
)
from chaos.kubernetes.names import (
    API_PORT,
    BROKER_DEPLOYMENT,
    BROKER_PORT,
    CLOCK_FILE,
    COMPONENT_LABEL,
    CONCURRENCY_POLICIES,
    CONTEXT,
    CRONJOB,
    LEDGER_PORT,
    NAMESPACE,
    PARTITION_LABEL,
    PYTHON,
    RESTART_ANNOTATION,
    SETTINGS_CONFIGMAP,
    selector,
)
from chaos.kubernetes.platform import KubernetesPlatform

__all__ = [
    "API_PORT",
    "BROKER_DEPLOYMENT",
    "BROKER_PORT",
    "CLOCK_FILE",
    "COMPONENT_LABEL",
    "CONCURRENCY_POLICIES",
    "CONTEXT",
    "CRONJOB",
    "LEDGER_PORT",
    "NAMESPACE",
    "PARTITION_LABEL",
    "PYTHON",
    "RESTART_ANNOTATION",
    "SETTINGS_CONFIGMAP",
    "Cluster",
    "KubernetesPlatform",
    "PodState",
    "as_run",
    "connect",
    "cut_check_argv",
    "deployment_replicas",
    "disconnect",
    "exec_in_pod",
    "kill_child_argv",
    "partition_policy",
    "patch_cronjob",
    "read_settings",
    "scale_deployment",
    "selector",
    "signal_argv",
    "skew_argv",
]
