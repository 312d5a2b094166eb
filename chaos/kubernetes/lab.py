"""The lab on a cluster: connecting, deploying a topology, listing and waiting for pods,
tearing down. ``KubernetesPlatform`` (chaos.kubernetes.platform) adds the faults.

The harness reaches the API, the ledger and the broker through the NodePorts that
k8s/kind-config.yaml maps to 127.0.0.1; an API ``Instance.url`` is therefore the
Service's URL, not one replica's. kube-proxy picks a backend per *connection*
(kubernetes/kubernetes#38456), so a client must open one per request to spread
its requests over the replicas, and learns which replica took a request from the
reply. What runs differs from the topology in three ways, recorded by ``as_run``:
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaos.kubernetes import api, broker
from chaos.kubernetes.api import Cluster, PodState
from chaos.kubernetes.builders import (
    API_CONTROLLERS,
    API_STATEFULSET,
    LIVENESS,
    as_run,
    cgroup_argv,
    container_overrides,
    deployment_strategy,
    surge_of,
)
from chaos.kubernetes.names import (
    API_PORT,
    BROKER_DEPLOYMENT,
    BROKER_PORT,
    CONCURRENCY_POLICIES,
    CONTEXT,
    CRONJOB,
    FAKETIME_ARCHITECTURES,
    FAULT_LABEL,
    LEDGER_PORT,
    NAMESPACE,
    RESTART_ANNOTATION,
    SKEWABLE,
    selector,
)
from chaos.platform import COMPONENTS, Instance, PlatformError, Topology
from chaos.redis_server import MemoryLimit, kilobytes


class KubernetesLab:
    """A lab deployed from k8s/overlays/<variant> on a cluster, and its pods.

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
        self._api_controller = "deployment"  # what runs the api replicas (API_CONTROLLERS)

    # Connect on first use: building a platform must not need a cluster.
    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = api.connect(self.context, self.namespace, self.kubeconfig)
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
        controller = str(topology.settings.get("api_controller", ""))  # "": k8s/base's
        if controller and controller not in API_CONTROLLERS:
            raise PlatformError(f"api_controller must be one of {', '.join(API_CONTROLLERS)}, "
                                f"not {controller!r}")
        liveness = str(topology.settings.get("liveness", "lenient"))
        if liveness not in LIVENESS:
            raise PlatformError(f"liveness must be one of {', '.join(LIVENESS)}, not "
                                f"{liveness!r}")
        cluster = self.cluster
        self._skewable = bool(topology.settings.get(SKEWABLE))
        if self._skewable:  # before anything changes: a pod that cannot skew is no lab
            self._check_faketime_architecture()
        self.grace = topology.grace
        self.as_run = as_run(topology)
        # No partition of an earlier (crashed) run survives into this one.
        api.delete_network_policies(cluster, f"{FAULT_LABEL}=partition")
        self._partitioned.clear()
        api.replace_settings(cluster, topology.environment())
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
        self._api_controller = controller or "deployment"
        if controller:
            self.as_run.update(self._settings_as_run(topology, controller))
        if "liveness" in topology.settings:
            self.as_run["liveness_probe"] = {"kind": liveness, **LIVENESS[liveness]}
        for name in ("prestop_seconds", "soft_shutdown_timeout"):
            if topology.settings.get(name):
                self.as_run[name] = topology.settings[name]
        stamps = {}
        for c in COMPONENTS:
            spec: dict[str, Any] = {"replicas": topology.count(c)}
            pod_spec: dict[str, Any] = {"terminationGracePeriodSeconds": grace, "containers": [
                container_overrides(c, topology.settings)]}
            if c != "api":
                stamps[c] = self._restart(c, spec, pod_spec)
                continue
            in_set = controller == "statefulset"
            stamps[c] = self._restart(c, {"replicas": 0 if in_set else spec["replicas"],
                                          "strategy": deployment_strategy(controller)}, pod_spec)
            if in_set:  # its stamp is the one the api's pods must carry
                stamps[c] = self._restart(c, spec, pod_spec, statefulset=True)
            else:  # none left by an earlier run
                api.scale_statefulset(cluster, API_STATEFULSET, 0)
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
            self._broker_memory = memory.config(broker.broker_footprint(self.broker_url))
            self._configure_broker()
            self.as_run["broker_maxmemory"] = kilobytes(int(self._broker_memory["maxmemory"]))
        if topology.settings.get("worker_memory_mb") and topology.count("worker"):
            self.as_run.update(self._oom_setting(self.instances("worker")[0].name))
        if topology.count("cronjob"):
            # No Job of an earlier run left; then the controller creates one a minute.
            # instances("cronjob") is then the running Jobs' pods.
            api.delete_jobs(cluster, selector("cronjob"))
            self._wait(selector("cronjob"), lambda pods: not pods, deadline - time.monotonic(),
                       "no Job pod of an earlier run")
            self._cronjob_started = True
            api.patch_cronjob(cluster, CRONJOB, {"spec": {"concurrencyPolicy": policy,
                                                      "suspend": False}})

    def instances(self, component: str) -> list[Instance]:
        pods, _ = api.list_pods(self.cluster, selector(component))
        url = self.api_url if component == "api" else ""
        return [Instance(p.name, component, 0, url)
                for p in sorted(pods, key=lambda p: (p.created, p.name)) if p.live]

    def scale(self, component: str, replicas: int) -> None:
        if component == "api" and self._api_controller == "statefulset":
            api.scale_statefulset(self.cluster, API_STATEFULSET, replicas)
        else:
            api.scale_deployment(self.cluster, component, replicas)

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
            api.patch_cronjob(cluster, CRONJOB, {"spec": {"suspend": True}})
        if self._partitioned:  # a run stopped mid-partition
            api.delete_network_policies(cluster, f"{FAULT_LABEL}=partition")
            self._partitioned.clear()
        self._keep_logs(cluster)
        for c in COMPONENTS:
            api.scale_deployment(cluster, c, 0)
        api.scale_statefulset(cluster, API_STATEFULSET, 0)
        for c in COMPONENTS:
            self._wait(selector(c), lambda pods: not pods, self.ready_timeout, f"no {c} pod")
        self._cluster = None
        api.disconnect(cluster)
        if self._cronjob_started:
            api.delete_jobs(cluster, selector("cronjob"))
            self._wait(selector("cronjob"), lambda pods: not pods, self.ready_timeout,
                       "no Job pod of the CronJob")
            self._cronjob_started = False


    # --- helpers ---------------------------------------------------------------------
    def _pod(self, instance: Instance) -> PodState:
        pods, _ = api.list_pods(self.cluster, selector(instance.component))
        for pod in pods:
            if pod.name == instance.name:
                return pod
        raise PlatformError(f"no such instance: {instance.name}")

    def _check_faketime_architecture(self) -> None:
        for node, arch in sorted(api.node_architectures(self.cluster).items()):
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
            for pod in api.list_pods(cluster, selector(c))[0]:
                try:
                    text = api.pod_log(cluster, pod.name, c)
                except PlatformError:
                    continue
                (self.logs / f"{pod.name}.log").write_text(text)

    def _restart(self, deployment: str, spec: dict[str, Any],
                 pod_spec: dict[str, Any] | None = None, *, statefulset: bool = False) -> str:
        """Patch the Deployment (the api's StatefulSet) with a new restart stamp, as
        ``kubectl rollout restart`` does; returns the stamp."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        template: dict[str, Any] = {"metadata": {"annotations": {RESTART_ANNOTATION: stamp}}}
        if pod_spec:
            template["spec"] = pod_spec
        body = {"spec": {**spec, "template": template}}
        if statefulset:
            api.patch_statefulset(self.cluster, API_STATEFULSET, body)
        else:
            api.patch_deployment(self.cluster, deployment, body)
        return stamp

    def _oom_setting(self, worker: str) -> dict[str, Any]:
        """What decides whom the OOM killer ends in a container past its limit: cgroup v2
        with kubelet 1.28 or later sets memory.oom.group, so the whole container goes
        (kubernetes/kubernetes#117793) unless its singleProcessOOMKill says otherwise
        (1.32+, #126096); on cgroup v1 the kernel kills one process."""
        found = api.exec_in_pod(self.cluster, worker, "worker", cgroup_argv()).strip()
        return {"cgroup": found, "kubelet": sorted(set(api.kubelet_versions(self.cluster)
                                                       .values()))}

    @staticmethod
    def _settings_as_run(topology: Topology, controller: str) -> dict[str, Any]:
        """The Kubernetes settings an experiment on the api's controller depends on."""
        strategy = {"recreate": "Recreate", "statefulset": "StatefulSet"}.get(
            controller, "RollingUpdate")
        return {"api_controller": controller, "strategy": strategy,
                **surge_of(controller, topology.count("api")),
                "termination_grace_seconds": max(1, math.ceil(topology.grace))}

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
            pods, version = api.list_pods(self.cluster, label_selector)
            if done(pods):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                state = ", ".join(f"{p.name}{'' if p.live else ' (not ready)'}"
                                  for p in pods) or "none"
                raise PlatformError(f"timed out after {timeout:.0f}s waiting for {what}"
                                    f" (pods: {state})")
            events = api.watch_pods(self.cluster, label_selector, version, left)
            try:
                next(events, None)  # something changed (or the watch ended): list again
            finally:
                events.close()

    def _wait_broker_reachable(self) -> None:
        # A ready pod is not yet a reachable NodePort: kube-proxy programs the new
        # endpoint a moment later, and with externalTrafficPolicy: Local the port
        # refuses connections until then.
        deadline = time.monotonic() + self.ready_timeout
        while not broker.redis_answers(self.broker_url):
            if time.monotonic() > deadline:
                raise PlatformError(f"broker ready but unreachable at {self.broker_url}")
            time.sleep(0.1)

    def _configure_broker(self) -> None:
        # The NodePort that just answered a PING refused the next connection once on the
        # local node, right after a broker restart: a refused connection is tried again.
        deadline = time.monotonic() + self.ready_timeout
        while not broker.configure_broker(self.broker_url, self._broker_memory):
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


