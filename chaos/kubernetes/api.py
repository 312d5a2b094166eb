"""The Kubernetes layer: the only code of the lab that calls the ``kubernetes`` client.

Each function does one API request (or one watch) and returns plain values
(``PodState``, dicts), with the client's errors turned into one-line
``PlatformError``s. Everything above it is plain logic, and unit tests replace these
functions, never the HTTP library (tests/unit/test_kubernetes_platform.py).
"""

from __future__ import annotations

import math
import os
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from chaos.kubernetes.names import (
    COMPONENT_LABEL,
    NAMESPACE,
    REQUEST_TIMEOUT,
    RESTART_ANNOTATION,
    SETTINGS_CONFIGMAP,
)
from chaos.platform import PlatformError

# The client is untyped; bind it as Any once rather than silence every call.
kube: Any = kubernetes


@dataclass(frozen=True)
class PodState:
    """What the platform needs to know of one pod."""

    name: str
    component: str
    ready: bool
    terminating: bool
    created: float  # creation time, seconds since the epoch
    restarted_at: str = ""  # the pod template's restart annotation: which rollout made it
    ip: str = ""  # the pod's IP, once it has one
    node: str = ""  # the node it is bound to, once scheduled
    restarts: int = 0  # how often kubelet restarted its containers (a liveness kill, an OOM)
    last_exit: str = ""  # why its container last ended ("OOMKilled", "Error", ...), if it did

    @property
    def live(self) -> bool:
        return self.ready and not self.terminating


@dataclass
class Cluster:
    """Connected clients for one context and namespace."""

    context: str
    namespace: str
    server: str
    core: Any
    apps: Any
    exec_core: Any  # a separate client: kubernetes.stream patches the one it is given



@contextmanager
def _errors(cluster: Cluster | None, what: str, context: str = "") -> Iterator[None]:
    """Turn the client's exceptions into one-line PlatformErrors."""
    ctx = cluster.context if cluster else context
    try:
        yield
    except ApiException as exc:
        if exc.status == 404:
            raise PlatformError(
                f"lab not deployed: {what} not found in namespace {NAMESPACE!r} of context "
                f"{ctx!r}; run `make cluster-up`"
            ) from None
        if exc.status in (401, 403):
            raise PlatformError(f"not allowed to {what} in context {ctx!r}: {exc.reason}") from None
        raise PlatformError(
            f"kubernetes API refused to {what}: {exc.status} {exc.reason}") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        server = cluster.server if cluster else "its server"
        raise PlatformError(
            f"cluster of context {ctx!r} unreachable at {server} ({type(exc).__name__}); "
            "is it running? (`kind get clusters`, `make cluster-up`)"
        ) from None


def connect(context: str, namespace: str, kubeconfig: str | None = None) -> Cluster:
    """Load the user's kubeconfig for ``context`` and check the lab is deployed there."""
    # Read KUBECONFIG now, not at import as the client's default does; like kubectl,
    # it may list several files (merged).
    paths = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    if not any(Path(p).expanduser().is_file() for p in paths.split(os.pathsep) if p):
        raise PlatformError(
            f"no kubeconfig at {paths}: create the cluster with `make cluster-up`, "
            "or set KUBECONFIG"
        )
    try:
        names = _context_names(paths)
        if context not in names:
            raise PlatformError(
                f"no context {context!r} in the kubeconfig (have: {', '.join(names) or 'none'});"
                " `make cluster-up` creates kind-scalelab"
            )
        api = kube.config.new_client_from_config(config_file=paths, context=context)
        exec_api = kube.config.new_client_from_config(config_file=paths, context=context)
    except ConfigException as exc:
        raise PlatformError(f"unusable kubeconfig for context {context!r}: {exc}") from None
    cluster = Cluster(context, namespace, str(api.configuration.host), kube.client.CoreV1Api(api),
                      kube.client.AppsV1Api(api), kube.client.CoreV1Api(exec_api))
    read_settings(cluster)  # reachable, and the lab is there
    return cluster


def _context_names(paths: str) -> list[str]:
    """The contexts the kubeconfig files in ``paths`` define. Read from the files: the
    client's own listing fails on a kubeconfig whose current context is gone (``kind
    delete cluster``, the local node's ``down``: ``current-context: ""``)."""
    import yaml

    names: list[str] = []
    for path in (Path(p).expanduser() for p in paths.split(os.pathsep) if p):
        if not path.is_file():
            continue
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigException(f"cannot read {path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigException(f"{path} is not a kubeconfig")
        names += [str(c.get("name")) for c in loaded.get("contexts") or []
                  if isinstance(c, dict) and c.get("name") and str(c.get("name")) not in names]
    return names


def disconnect(cluster: Cluster) -> None:
    """Close the clients' connection pools (left to the GC, their sockets warn)."""
    for api in (cluster.core, cluster.exec_core):
        api.api_client.close()


def read_settings(cluster: Cluster) -> dict[str, str]:
    with _errors(cluster, f"read ConfigMap {SETTINGS_CONFIGMAP}"):
        cm = cluster.core.read_namespaced_config_map(
            SETTINGS_CONFIGMAP, cluster.namespace, _request_timeout=REQUEST_TIMEOUT)
    return {str(k): str(v) for k, v in (cm.data or {}).items()}


def replace_settings(cluster: Cluster, data: dict[str, str]) -> None:
    # A JSON merge patch cannot drop keys it does not name; replacing the whole
    # data field (JSON patch) does, so no setting of an earlier run lingers.
    body = [{"op": "add", "path": "/data", "value": data}]
    with _errors(cluster, f"update ConfigMap {SETTINGS_CONFIGMAP}"):
        cluster.core.patch_namespaced_config_map(
            SETTINGS_CONFIGMAP, cluster.namespace, body, _request_timeout=REQUEST_TIMEOUT)


def patch_deployment(cluster: Cluster, name: str, body: dict[str, Any]) -> None:
    with _errors(cluster, f"patch Deployment {name}"):
        cluster.apps.patch_namespaced_deployment(
            name, cluster.namespace, body, _request_timeout=REQUEST_TIMEOUT)


def deployment_replicas(cluster: Cluster, name: str) -> int:
    """The Deployment's desired replica count (its scale subresource's spec)."""
    with _errors(cluster, f"read Deployment {name}"):
        scale = cluster.apps.read_namespaced_deployment_scale(
            name, cluster.namespace, _request_timeout=REQUEST_TIMEOUT)
    return int(scale.spec.replicas or 0)


def scale_deployment(cluster: Cluster, name: str, replicas: int) -> None:
    with _errors(cluster, f"scale Deployment {name}"):
        cluster.apps.patch_namespaced_deployment_scale(
            name, cluster.namespace, {"spec": {"replicas": replicas}},
            _request_timeout=REQUEST_TIMEOUT)


def patch_statefulset(cluster: Cluster, name: str, body: dict[str, Any]) -> None:
    with _errors(cluster, f"patch StatefulSet {name}"):
        cluster.apps.patch_namespaced_stateful_set(
            name, cluster.namespace, body, _request_timeout=REQUEST_TIMEOUT)


def statefulset_replicas(cluster: Cluster, name: str) -> int:
    with _errors(cluster, f"read StatefulSet {name}"):
        scale = cluster.apps.read_namespaced_stateful_set_scale(
            name, cluster.namespace, _request_timeout=REQUEST_TIMEOUT)
    return int(scale.spec.replicas or 0)


def scale_statefulset(cluster: Cluster, name: str, replicas: int) -> None:
    with _errors(cluster, f"scale StatefulSet {name}"):
        cluster.apps.patch_namespaced_stateful_set_scale(
            name, cluster.namespace, {"spec": {"replicas": replicas}},
            _request_timeout=REQUEST_TIMEOUT)


def patch_cronjob(cluster: Cluster, name: str, body: dict[str, Any]) -> None:
    batch = kube.client.BatchV1Api(cluster.apps.api_client)
    with _errors(cluster, f"patch CronJob {name}"):
        try:
            batch.patch_namespaced_cron_job(
                name, cluster.namespace, body, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status != 404:
                raise
            raise PlatformError(
                f"no CronJob {name} in namespace {cluster.namespace!r} of context "
                f"{cluster.context!r}: deploy the fixes overlay (`OVERLAY=fixes make cluster-up`)"
            ) from None


def delete_jobs(cluster: Cluster, label_selector: str) -> None:
    """Delete the selected Jobs and their pods (a Job's own default leaves its pods)."""
    batch = kube.client.BatchV1Api(cluster.apps.api_client)
    with _errors(cluster, "delete Jobs"):
        batch.delete_collection_namespaced_job(
            cluster.namespace, label_selector=label_selector, propagation_policy="Background",
            _request_timeout=REQUEST_TIMEOUT)


def _pod_state(pod: Any) -> PodState:
    meta, status = pod.metadata, pod.status
    conditions = (status.conditions if status else None) or []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    statuses = (status.container_statuses if status else None) or []
    created = meta.creation_timestamp.timestamp() if meta.creation_timestamp else 0.0
    return PodState(
        name=str(meta.name),
        component=str((meta.labels or {}).get(COMPONENT_LABEL, "")),
        ready=ready,
        terminating=meta.deletion_timestamp is not None,
        created=float(created),
        restarted_at=str((meta.annotations or {}).get(RESTART_ANNOTATION, "")),
        ip=str((status.pod_ip if status else None) or ""),
        node=str((pod.spec.node_name if pod.spec else None) or ""),
        restarts=sum(int(c.restart_count or 0) for c in statuses),
        last_exit=next((str(c.last_state.terminated.reason or "") for c in statuses
                        if c.last_state and c.last_state.terminated), ""),
    )


def list_pods(cluster: Cluster, label_selector: str) -> tuple[list[PodState], str]:
    """The pods matching the selector, and the list's resourceVersion (to watch from)."""
    with _errors(cluster, "list pods"):
        result = cluster.core.list_namespaced_pod(
            cluster.namespace, label_selector=label_selector, _request_timeout=REQUEST_TIMEOUT)
    return [_pod_state(p) for p in result.items], str(result.metadata.resource_version)


def watch_pods(cluster: Cluster, label_selector: str, resource_version: str,
               timeout: float) -> Generator[None, None, None]:
    """Yield once per change to the selected pods after ``resource_version``, until timeout."""
    w = kube.watch.Watch()
    stream = w.stream(cluster.core.list_namespaced_pod, cluster.namespace,
                      label_selector=label_selector, resource_version=resource_version,
                      timeout_seconds=max(1, math.ceil(timeout)),
                      _request_timeout=(REQUEST_TIMEOUT[0], timeout + 5))
    try:
        with _errors(cluster, "watch pods"):
            for _event in stream:
                yield None
    except PlatformError:
        # 410 Gone (the version is too old) and the like: the caller lists again.
        return
    finally:
        # Closing the client's generator closes its HTTP response now, not at GC.
        stream.close()
        w.stop()


def delete_pod(cluster: Cluster, name: str, grace: int) -> None:
    with _errors(cluster, f"delete pod {name}"):
        cluster.core.delete_namespaced_pod(
            name, cluster.namespace, grace_period_seconds=grace, _request_timeout=REQUEST_TIMEOUT)


def evict_pod(cluster: Cluster, name: str) -> bool:
    """Ask the Eviction API to evict the pod, as ``kubectl drain`` does: False when a
    PodDisruptionBudget refuses it now (429, try again later), True once accepted."""
    body = {"apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": name, "namespace": cluster.namespace}}
    with _errors(cluster, f"evict pod {name}"):
        try:
            cluster.core.create_namespaced_pod_eviction(
                name, cluster.namespace, body, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status != 429:
                raise
            return False
    return True


def set_node_unschedulable(cluster: Cluster, node: str, unschedulable: bool) -> None:
    """Cordon (or uncordon) a node: ``kubectl cordon``'s one patch."""
    with _errors(cluster, f"cordon node {node}"):
        cluster.core.patch_node(node, {"spec": {"unschedulable": unschedulable or None}},
                                _request_timeout=REQUEST_TIMEOUT)


def annotate_pod(cluster: Cluster, name: str, annotations: dict[str, str | None]) -> None:
    """Set (or, for None, remove) annotations of a pod."""
    with _errors(cluster, f"annotate pod {name}"):
        cluster.core.patch_namespaced_pod(name, cluster.namespace,
                                          {"metadata": {"annotations": annotations}},
                                          _request_timeout=REQUEST_TIMEOUT)


def pod_log(cluster: Cluster, name: str, container: str) -> str:
    with _errors(cluster, f"read the log of pod {name}"):
        return str(cluster.core.read_namespaced_pod_log(
            name, cluster.namespace, container=container, tail_lines=5000,
            _request_timeout=REQUEST_TIMEOUT))


def exec_in_pod(cluster: Cluster, pod: str, container: str, argv: list[str]) -> str:
    """Run ``argv`` in the container; its stdout. PlatformError unless it exits 0."""
    with _errors(cluster, f"exec in pod {pod}"):
        resp = kube.stream.stream(
            cluster.exec_core.connect_get_namespaced_pod_exec, pod, cluster.namespace,
            container=container, command=argv, stdin=False, stdout=True, stderr=True,
            tty=False, _preload_content=False)
        try:
            resp.run_forever(timeout=REQUEST_TIMEOUT[1])
            code = resp.returncode
            out = resp.read_stdout() if resp.peek_stdout() else ""
            err = resp.read_stderr() if resp.peek_stderr() else ""
        finally:
            resp.close()
            # The exec ended from the server's side, so websocket-client's close()
            # returns early and leaves the socket open; shutdown() closes it.
            if resp.sock is not None:
                resp.sock.shutdown()
    if code != 0:
        said = (err.strip().splitlines() or [""])[-1][:200]
        raise PlatformError(f"exec {argv[-1].splitlines()[0]!r}... in pod {pod} failed ({code}): "
                            f"{said}")
    return str(out)


def label_pod(cluster: Cluster, name: str, labels: dict[str, str | None]) -> None:
    """Set (or, for None, remove) labels of a pod; a pod that is gone is no error."""
    with _errors(cluster, f"label pod {name}"):
        try:
            cluster.core.patch_namespaced_pod(name, cluster.namespace,
                                              {"metadata": {"labels": labels}},
                                              _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status != 404:
                raise


def create_network_policy(cluster: Cluster, body: dict[str, Any]) -> None:
    net = kube.client.NetworkingV1Api(cluster.apps.api_client)
    with _errors(cluster, f"create NetworkPolicy {body['metadata']['name']}"):
        net.create_namespaced_network_policy(cluster.namespace, body,
                                             _request_timeout=REQUEST_TIMEOUT)


def delete_network_policies(cluster: Cluster, label_selector: str) -> None:
    net = kube.client.NetworkingV1Api(cluster.apps.api_client)
    with _errors(cluster, "delete NetworkPolicies"):
        net.delete_collection_namespaced_network_policy(
            cluster.namespace, label_selector=label_selector, _request_timeout=REQUEST_TIMEOUT)


def service_ip(cluster: Cluster, name: str) -> str:
    with _errors(cluster, f"read Service {name}"):
        service = cluster.core.read_namespaced_service(name, cluster.namespace,
                                                       _request_timeout=REQUEST_TIMEOUT)
    return str(service.spec.cluster_ip)


def kubelet_versions(cluster: Cluster) -> dict[str, str]:
    """Each node's kubelet version as it reports it (v1.33.1, ...)."""
    with _errors(cluster, "list nodes"):
        nodes = cluster.core.list_node(_request_timeout=REQUEST_TIMEOUT)
    return {str(n.metadata.name): str(n.status.node_info.kubelet_version) for n in nodes.items}


def node_architectures(cluster: Cluster) -> dict[str, str]:
    """Each node's CPU architecture as its kubelet reports it (amd64, arm64, ...)."""
    with _errors(cluster, "list nodes"):
        nodes = cluster.core.list_node(_request_timeout=REQUEST_TIMEOUT)
    return {str(n.metadata.name): str(n.status.node_info.architecture) for n in nodes.items}


