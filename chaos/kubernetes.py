"""KubernetesPlatform: the lab as Deployments on a kind cluster (k8s/, make cluster-up).

Only this module imports the ``kubernetes`` client, and inside it only the small
functions under "the Kubernetes layer" call it: each does one API request (or one
watch) and returns plain values (``PodState``, dicts), with the client's errors
turned into one-line ``PlatformError``s. ``KubernetesPlatform`` above them is plain
logic, and unit tests replace those functions (tests/unit/test_kubernetes_platform.py).

How faults map onto a pod. Each app container runs ``tini`` as PID 1 with the
app as its only child (services/Dockerfile), and has its own PID namespace:

- *terminate*: delete the pod with a grace period. Kubelet sends SIGTERM to PID 1,
  tini forwards it to the app's main process, and SIGKILL follows after the grace
  period: the local platform's terminate.
- *pause*/*resume*: exec ``kill(-1, SIGSTOP/SIGCONT)`` in the container. Signal -1
  reaches every process of the container except PID 1 and the caller, i.e. the
  app and all its children; stopping tini would stop nothing (SIGSTOP is not
  forwarded). A paused API replica fails its probes: it leaves the Service within
  about 6 s and kubelet restarts it after 30 s (k8s/base/api.yaml).
- *kill*: deleting a pod, even with ``gracePeriodSeconds=0``, is not a SIGKILL:
  the API object goes at once, but kubelet still sends SIGTERM first, and SIGKILL
  only after a grace period: its 2 s minimum on the kubelet this lab is tested
  with (1.33: a frozen pod's processes lived 2.4 s with a 6 s pod grace), the
  pod's whole ``terminationGracePeriodSeconds`` on others
  (kubernetes/kubernetes#120449, #108741, #115819). A plain delete is thus a
  graceful terminate. ``kill`` therefore first SIGSTOPs every app process (from
  that instant no code of the instance runs, as after SIGKILL), then force-deletes
  the pod, so the ReplicaSet starts a replacement (a new instance, a new name) at
  once. Until kubelet's SIGKILL the frozen processes keep their sockets open and
  the pod its IP. SIGKILL through exec is no alternative: it ends tini with the
  app, and kubelet restarts the container *in the same pod*, under the same
  instance name.
- *kill_child*: exec a SIGKILL to one prefork pool process: a child, with the
  worker's own command line, of the app process that tini started (the
  process the OOM killer picks first: the biggest, a pool process running a task).
- *skew*: the image's entrypoint (services/entrypoint.sh) preloads libfaketime
  when the lab is skewable, with the offset read from ``CLOCK_FILE`` in the pod's
  writable /tmp; ``skew`` rewrites that file through exec, as the local platform
  does with FAKETIME_TIMESTAMP_FILE. The ``libfaketime`` wheel is tagged
  ``py3-none-any`` but ships an x86-64 library only, so a skewable lab needs amd64
  nodes (checked at deploy).
- *partition*: a NetworkPolicy that lets the pod reach everything but the broker
  (egress), then the broker closes the pod's open connections (``CLIENT KILL``).
  Both are needed: kind's policy engine (kindnet, kube-network-policies since kind
  v0.24) judges only the first packet of a connection and lets established ones
  run on (kube-network-policies v0.8.0, pkg/networkpolicy/controller.go: "network
  policies are applied ONLY at the time the connection is initiated"), as iptables-based
  engines do with their conntrack ESTABLISHED rule. A packet it refuses is dropped,
  not rejected: a reconnect times out (the app's socket timeouts) rather than being
  refused at once as by the local platform's proxy. ``partition`` checks from
  inside the pod that a new connection to the broker fails, and raises, removing
  the policy, where nothing enforces NetworkPolicy (a CNI without a policy engine
  ignores the object silently).
- *broker memory policy*: ``broker_maxmemory`` and ``broker_maxmemory_policy``
  are set with ``CONFIG SET`` on the broker after each deploy and outage (the
  broker pod comes back with Redis's defaults: no limit, ``noeviction``); a margin
  ("+120kb") over the broker's footprint once the lab is connected, as locally.

The harness reaches the API, the ledger and the broker through the NodePorts that
k8s/kind-config.yaml maps to 127.0.0.1; an API ``Instance.url`` is therefore the
Service's URL, not one replica's. kube-proxy picks a backend per *connection*
(kubernetes/kubernetes#38456), so a client must open one per request to spread
its requests over the replicas, and learns which replica took a request from the
reply. What runs differs from the topology in three ways, recorded by ``as_run``:
a killed pod is replaced at once (no ``replace_delay``), grace periods are whole
seconds, and so is a Lease's ``leaseDurationSeconds``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from chaos.platform import COMPONENTS, Instance, PlatformError, Topology
from chaos.redis_server import MemoryLimit, kilobytes
from chaos.redis_server import configure as configure_broker
from chaos.redis_server import footprint as broker_footprint
from chaos.skew import check_skew, faketime_offset

__all__ = [
    "API_PORT",
    "BROKER_PORT",
    "CONTEXT",
    "LEDGER_PORT",
    "NAMESPACE",
    "KubernetesPlatform",
    "PodState",
]

# Names shared with k8s/ (tests/unit/test_manifests.py checks they agree).
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

# The client is untyped; bind it as Any once rather than silence every call.
kube: Any = kubernetes


def selector(component: str) -> str:
    return f"{PART_OF},{COMPONENT_LABEL}={component}"


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


# --- the Kubernetes layer: the only code that calls the client -------------------------


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
    created = meta.creation_timestamp.timestamp() if meta.creation_timestamp else 0.0
    return PodState(
        name=str(meta.name),
        component=str((meta.labels or {}).get(COMPONENT_LABEL, "")),
        ready=ready,
        terminating=meta.deletion_timestamp is not None,
        created=float(created),
        restarted_at=str((meta.annotations or {}).get(RESTART_ANNOTATION, "")),
        ip=str((status.pod_ip if status else None) or ""),
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


def node_architectures(cluster: Cluster) -> dict[str, str]:
    """Each node's CPU architecture as its kubelet reports it (amd64, arm64, ...)."""
    with _errors(cluster, "list nodes"):
        nodes = cluster.core.list_node(_request_timeout=REQUEST_TIMEOUT)
    return {str(n.metadata.name): str(n.status.node_info.architecture) for n in nodes.items}


def redis_answers(url: str) -> bool:
    """Whether the Redis at ``url`` answers PING (through its NodePort, as the harness sees it)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def kill_broker_clients(url: str, ip: str) -> int:
    """Close every connection the broker has from ``ip``; how many there were."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        listed: list[dict[str, Any]] = client.client_list()  # type: ignore[assignment]
        mine = str(client.client_id())  # the harness's own, should it come from ``ip``
        ids = [c["id"] for c in listed
               if str(c.get("addr", "")).rpartition(":")[0] == ip and str(c["id"]) != mine]
        for client_id in ids:
            client.client_kill_filter(_id=client_id)
        return len(ids)
    except redis.RedisError as exc:
        raise PlatformError(f"cannot close {ip}'s connections on the broker at {url}: {exc}"
                            ) from None
    finally:
        client.close()


# --- the platform ----------------------------------------------------------------------


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


class KubernetesPlatform:
    """The Platform protocol on the kind cluster deployed from k8s/overlays/<variant>.

    The cluster must already run the lab (``make cluster-up``); ``deploy`` applies
    a topology to it: settings, replica counts, a restart so the settings apply.
    """

    name = "kubernetes"

    def __init__(
        self,
        context: str = CONTEXT,
        namespace: str = NAMESPACE,
        *,
        kubeconfig: str | None = None,
        host: str = "127.0.0.1",
        api_port: int = API_PORT,
        ledger_port: int = LEDGER_PORT,
        broker_port: int = BROKER_PORT,
        ready_timeout: float = 180.0,
        await_announcements: bool = True,
        logs: Path | None = None,
    ) -> None:
        self.context = context
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self.host = host
        self.api_port = api_port
        self.ledger_port = ledger_port
        self.broker_port = broker_port
        self.ready_timeout = ready_timeout
        self.await_announcements = await_announcements
        self.logs = logs  # where teardown keeps each app pod's log (the run's logs/)
        self.grace = 5.0
        self.as_run: dict[str, Any] = {}  # how the last deployed topology really runs
        self._cluster: Cluster | None = None
        self._cronjob_started = False  # deploy resumed the CronJob: teardown suspends it
        self._skewable = False  # the deployed topology's pods preload libfaketime
        self._broker_memory: dict[str, str] = {}  # CONFIG SET on the broker after each start
        self._partitioned: set[str] = set()  # pods cut off the broker now

    # Connect on first use: building a platform must not need a cluster.
    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = connect(self.context, self.namespace, self.kubeconfig)
        return self._cluster

    @property
    def ledger_url(self) -> str:
        return f"redis://{self.host}:{self.ledger_port}/0"

    @property
    def broker_url(self) -> str:
        return f"redis://{self.host}:{self.broker_port}/0"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    # --- topology --------------------------------------------------------------------
    def deploy(self, topology: Topology) -> None:
        policy = str(topology.settings.get("cronjob_concurrency_policy", "Forbid"))
        if topology.count("cronjob") and policy not in CONCURRENCY_POLICIES:
            raise PlatformError(f"cronjob_concurrency_policy must be one of "
                                f"{', '.join(CONCURRENCY_POLICIES)}, not {policy!r}")
        cluster = self.cluster
        self._skewable = bool(topology.settings.get(SKEWABLE))
        if self._skewable:  # before anything changes: a pod that cannot skew is no lab
            self._check_faketime_architecture()
        self.grace = topology.grace
        self.as_run = as_run(topology)
        # No partition of an earlier (crashed) run survives into this one.
        delete_network_policies(cluster, f"{FAULT_LABEL}=partition")
        self._partitioned.clear()
        replace_settings(cluster, topology.environment())
        # A fresh, empty broker per deploy, as locally: no task of an earlier run survives.
        # Its replica count is set too: a broker outage cut short leaves it at 0.
        stamp = self._restart(BROKER_DEPLOYMENT, {"replicas": 1})
        self._wait_rollout(BROKER_DEPLOYMENT, "broker", 1, stamp, self.ready_timeout)
        self._wait_broker_reachable()
        # The local platform starts its broker with a limit; here the fresh broker pod
        # has Redis's defaults until told otherwise (before any instance uses it). A
        # margin over the footprint is set once the lab is connected.
        memory = MemoryLimit(topology.settings)
        self._broker_memory = memory.config() if not memory.relative else {}
        if self._broker_memory:
            self._configure_broker()
        grace = max(1, math.ceil(topology.grace))
        stamps = {
            c: self._restart(c, {"replicas": topology.count(c)},
                             {"terminationGracePeriodSeconds": grace})
            for c in COMPONENTS
        }
        deadline = time.monotonic() + self.ready_timeout
        for c in COMPONENTS:
            self._wait_rollout(c, c, topology.count(c), stamps[c], deadline - time.monotonic())
        if self.await_announcements:
            self._wait_announced(deadline - time.monotonic())
        # The harness reads the broker as soon as this returns (a margin's footprint,
        # the drain). Seen on the local node: its NodePort, reachable before the
        # instances rolled out, refused a connection right after them.
        self._wait_broker_reachable()
        if memory.relative:
            self._broker_memory = memory.config(broker_footprint(self.broker_url))
            self._configure_broker()
            self.as_run["broker_maxmemory"] = kilobytes(int(self._broker_memory["maxmemory"]))
        if topology.count("cronjob"):
            # No Job of an earlier run left; then the controller creates one a minute.
            # instances("cronjob") is then the running Jobs' pods.
            delete_jobs(cluster, selector("cronjob"))
            self._wait(selector("cronjob"), lambda pods: not pods, deadline - time.monotonic(),
                       "no Job pod of an earlier run")
            self._cronjob_started = True
            patch_cronjob(cluster, CRONJOB, {"spec": {"concurrencyPolicy": policy,
                                                      "suspend": False}})

    def instances(self, component: str) -> list[Instance]:
        pods, _ = list_pods(self.cluster, selector(component))
        url = self.api_url if component == "api" else ""
        return [Instance(p.name, component, 0, url)
                for p in sorted(pods, key=lambda p: (p.created, p.name)) if p.live]

    def scale(self, component: str, replicas: int) -> None:
        scale_deployment(self.cluster, component, replicas)

    def wait_ready(self, component: str, replicas: int, timeout: float) -> None:
        self._wait(selector(component), lambda pods: sum(p.live for p in pods) == replicas,
                   timeout, f"{replicas} ready {component} pod(s)")

    def stop_instances(self) -> None:
        # Scaling to zero is a graceful stop of every pod, and the ledger stays up.
        self.teardown()

    def teardown(self) -> None:
        # The cluster and the Redis pair stay (make cluster-down removes them); what
        # deploy started, the app instances, stops. Idempotent, and quiet when
        # there is no lab to stop.
        try:
            cluster = self.cluster
        except PlatformError:
            return
        if self._cronjob_started:  # first: no new Job while the rest stops
            patch_cronjob(cluster, CRONJOB, {"spec": {"suspend": True}})
        if self._partitioned:  # a run stopped mid-partition
            delete_network_policies(cluster, f"{FAULT_LABEL}=partition")
            self._partitioned.clear()
        self._keep_logs(cluster)
        for c in COMPONENTS:
            scale_deployment(cluster, c, 0)
        for c in COMPONENTS:
            self._wait(selector(c), lambda pods: not pods, self.ready_timeout, f"no {c} pod")
        self._cluster = None
        disconnect(cluster)
        if self._cronjob_started:
            delete_jobs(cluster, selector("cronjob"))
            self._wait(selector("cronjob"), lambda pods: not pods, self.ready_timeout,
                       "no Job pod of the CronJob")
            self._cronjob_started = False

    # --- faults ----------------------------------------------------------------------
    def kill(self, instance: Instance) -> None:
        # Freeze, then force-delete: see the module docstring for why not a plain delete.
        cluster = self.cluster
        exec_in_pod(cluster, instance.name, instance.component, signal_argv("SIGSTOP"))
        delete_pod(cluster, instance.name, 0)

    def terminate(self, instance: Instance, grace: float | None = None) -> None:
        # Whole seconds, at least 1: 0 would be a force delete, not a grace period.
        seconds = max(1, math.ceil(self.grace if grace is None else grace))
        delete_pod(self.cluster, instance.name, seconds)

    def restart_in_place(self, instance: Instance) -> None:
        # SIGKILL every process of the container: its main process (tini) exits and the
        # kubelet restarts the container in the same pod (restartPolicy Always), which
        # keeps the pod's name, as a crash-looping container does.
        exec_in_pod(self.cluster, instance.name, instance.component, signal_argv("SIGKILL"))

    def pause(self, instance: Instance) -> None:
        exec_in_pod(self.cluster, instance.name, instance.component, signal_argv("SIGSTOP"))

    def resume(self, instance: Instance) -> None:
        exec_in_pod(self.cluster, instance.name, instance.component, signal_argv("SIGCONT"))

    def rolling_restart(self, component: str) -> None:
        # The Deployments' RollingUpdate (maxSurge 1, maxUnavailable 0) replaces one
        # pod at a time, each with its graceful termination; returns when done. The
        # count to wait for is the Deployment's own: just after a scale, the pods
        # have not caught up with it yet.
        replicas = deployment_replicas(self.cluster, component)
        stamp = self._restart(component, {})
        self._wait_rollout(component, component, replicas, stamp, self.ready_timeout)

    def datastore_outage(self, seconds: float) -> None:
        raise PlatformError("the data-store outage is not yet on kubernetes (a PostgreSQL "
                            "Deployment in an overlay for apscheduler4)")

    def partition(self, instance: Instance) -> None:
        """Cut the pod off the broker: a NetworkPolicy refuses its new connections (checked
        from inside the pod), then the broker closes the ones it has open."""
        cluster = self.cluster
        pod = self._pod(instance)
        if not pod.ip:
            raise PlatformError(f"pod {pod.name} has no IP yet: nothing to cut off")
        brokers = [b for b in list_pods(cluster, selector("broker"))[0] if b.live and b.ip]
        if not brokers:
            raise PlatformError("no ready broker pod to cut the instance off from")
        label_pod(cluster, pod.name, {PARTITION_LABEL: pod.name})
        create_network_policy(cluster, partition_policy(pod.name, brokers[0].ip,
                                                        self.namespace))
        self._partitioned.add(pod.name)
        try:
            broker = service_ip(cluster, BROKER_SERVICE)
            state = exec_in_pod(cluster, pod.name, instance.component,
                                cut_check_argv(broker, REDIS_PORT, PARTITION_CHECK_SECONDS))
            if state.strip() != "cut":
                raise PlatformError(
                    f"NetworkPolicy is not enforced in context {self.context!r}: pod "
                    f"{pod.name} still reached the broker {PARTITION_CHECK_SECONDS:g} s after "
                    "its partition policy was applied; the partition fault needs a CNI that "
                    "enforces NetworkPolicy (kind v0.24 or later)")
            # Only now: a connection opened before the policy held would outlive the kill.
            kill_broker_clients(self.broker_url, pod.ip)
        except PlatformError:
            self.heal(instance)
            raise

    def heal(self, instance: Instance) -> None:
        # By name: a pod that died while cut off has nothing left to heal but the policy.
        cluster = self.cluster
        delete_network_policies(cluster, f"{FAULT_LABEL}=partition,{PARTITION_LABEL}="
                                         f"{instance.name}")
        label_pod(cluster, instance.name, {PARTITION_LABEL: None})
        self._partitioned.discard(instance.name)

    def skew(self, instance: Instance, seconds: float) -> None:
        if not self._skewable:
            raise PlatformError(f"this lab was not started skewable (topology setting "
                                f"{SKEWABLE!r}): no instance's clock can be skewed")
        try:
            check_skew(seconds)
        except ValueError as exc:
            raise PlatformError(str(exc)) from None
        exec_in_pod(self.cluster, instance.name, instance.component, skew_argv(seconds))

    def kill_child(self, instance: Instance) -> int:
        """SIGKILL one pool process of a worker pod (the OOM killer's pick), not the pod.
        The pid returned is the one in the container's own PID namespace."""
        out = exec_in_pod(self.cluster, instance.name, instance.component, kill_child_argv())
        pid = int(out.split()[-1]) if out.split() and out.split()[-1].isdigit() else 0
        if not pid:
            raise PlatformError(f"{instance.name} has no pool process to kill")
        return pid

    def broker_outage(self, seconds: float) -> None:
        cluster = self.cluster
        scale_deployment(cluster, BROKER_DEPLOYMENT, 0)
        pods, _ = list_pods(cluster, selector("broker"))
        for pod in pods:  # don't wait out the grace period: the outage is now
            delete_pod(cluster, pod.name, 0)
        self._wait(selector("broker"), lambda pods: not pods, self.ready_timeout, "no broker pod")
        time.sleep(seconds)
        scale_deployment(cluster, BROKER_DEPLOYMENT, 1)
        self.wait_ready("broker", 1, self.ready_timeout)
        self._wait_broker_reachable()
        if self._broker_memory:  # back with Redis's defaults: the run's limit again
            self._configure_broker()

    # --- helpers ---------------------------------------------------------------------
    def _pod(self, instance: Instance) -> PodState:
        pods, _ = list_pods(self.cluster, selector(instance.component))
        for pod in pods:
            if pod.name == instance.name:
                return pod
        raise PlatformError(f"no such instance: {instance.name}")

    def _check_faketime_architecture(self) -> None:
        for node, arch in sorted(node_architectures(self.cluster).items()):
            if arch not in FAKETIME_ARCHITECTURES:
                raise PlatformError(
                    f"clock skew needs amd64 nodes: the libfaketime wheel ships an x86-64 "
                    f"library only, and node {node} is {arch}")

    def _keep_logs(self, cluster: Cluster) -> None:
        """Each app pod's log into ``logs``, before the pods go (as the local platform
        keeps each instance's); a pod that cannot be read is skipped."""
        if self.logs is None:
            return
        self.logs.mkdir(parents=True, exist_ok=True)
        for c in COMPONENTS:
            for pod in list_pods(cluster, selector(c))[0]:
                try:
                    text = pod_log(cluster, pod.name, c)
                except PlatformError:
                    continue
                (self.logs / f"{pod.name}.log").write_text(text)

    def _restart(self, deployment: str, spec: dict[str, Any],
                 pod_spec: dict[str, Any] | None = None) -> str:
        """Patch the Deployment with a new restart stamp; returns the stamp."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        template: dict[str, Any] = {"metadata": {"annotations": {RESTART_ANNOTATION: stamp}}}
        if pod_spec:
            template["spec"] = pod_spec
        patch_deployment(self.cluster, deployment, {"spec": {**spec, "template": template}})
        return stamp

    def _wait_rollout(self, deployment: str, component: str, replicas: int, stamp: str,
                      timeout: float) -> None:
        # Done when exactly the new pods remain, all ready: old instances (even
        # terminating ones) would otherwise still write to the ledger.
        def done(pods: list[PodState]) -> bool:
            return len(pods) == replicas and all(p.live and p.restarted_at == stamp for p in pods)

        self._wait(selector(component), done, timeout,
                   f"Deployment {deployment} to roll out {replicas} ready pod(s)")

    def _wait(self, label_selector: str, done: Callable[[list[PodState]], bool],
              timeout: float, what: str) -> None:
        """List, and watch from the list's version, until ``done(pods)`` or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            pods, version = list_pods(self.cluster, label_selector)
            if done(pods):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                state = ", ".join(f"{p.name}{'' if p.live else ' (not ready)'}"
                                  for p in pods) or "none"
                raise PlatformError(f"timed out after {timeout:.0f}s waiting for {what}"
                                    f" (pods: {state})")
            events = watch_pods(self.cluster, label_selector, version, left)
            try:
                next(events, None)  # something changed (or the watch ended): list again
            finally:
                events.close()

    def _wait_broker_reachable(self) -> None:
        # A ready pod is not yet a reachable NodePort: kube-proxy programs the new
        # endpoint a moment later, and with externalTrafficPolicy: Local the port
        # refuses connections until then.
        deadline = time.monotonic() + self.ready_timeout
        while not redis_answers(self.broker_url):
            if time.monotonic() > deadline:
                raise PlatformError(f"broker ready but unreachable at {self.broker_url}")
            time.sleep(0.1)

    def _configure_broker(self) -> None:
        # The NodePort that just answered a PING refused the next connection once on the
        # local node, right after a broker restart: a refused connection is tried again.
        deadline = time.monotonic() + self.ready_timeout
        while not configure_broker(self.broker_url, self._broker_memory):
            if time.monotonic() > deadline:
                raise PlatformError(f"cannot configure the broker: unreachable at "
                                    f"{self.broker_url}")
            time.sleep(0.2)

    def _wait_announced(self, timeout: float) -> None:
        """Wait until every app pod has announced itself in the ledger."""
        import redis

        from services.ledger import Ledger  # chaos -> services.ledger is the allowed direction

        ledger = Ledger.from_url(self.ledger_url)
        deadline = time.monotonic() + max(timeout, 1.0)
        try:
            while True:
                names = {i.name for c in COMPONENTS for i in self.instances(c)}
                try:
                    missing = names - set(ledger.instances())
                except redis.RedisError as exc:
                    raise PlatformError(f"ledger unreachable at {self.ledger_url}: {exc}") from None
                if not missing:
                    return
                if time.monotonic() > deadline:
                    raise PlatformError(f"ready but never announced in the ledger: "
                                        f"{', '.join(sorted(missing))}")
                time.sleep(0.2)
        finally:
            ledger.client.close()
