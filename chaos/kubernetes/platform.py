"""KubernetesPlatform: the Platform protocol on a cluster (k8s/, make cluster-up).

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
"""

from __future__ import annotations

import math
import time

from chaos.kubernetes import api, broker
from chaos.kubernetes.builders import (
    API_STATEFULSET,
    cut_check_argv,
    kill_child_argv,
    partition_policy,
    signal_argv,
    skew_argv,
)
from chaos.kubernetes.lab import KubernetesLab
from chaos.kubernetes.names import (
    BROKER_DEPLOYMENT,
    BROKER_SERVICE,
    FAULT_LABEL,
    PARTITION_CHECK_SECONDS,
    PARTITION_LABEL,
    REDIS_PORT,
    SKEWABLE,
    selector,
)
from chaos.platform import Instance, PlatformError
from chaos.skew import check_skew

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
# kubectl drain tries a refused eviction again every 5 s; the lab asks every second, so
# the moment the budget allows one more disruption is seen within a second.
EVICTION_RETRY = 1.0


class KubernetesPlatform(KubernetesLab):
    """The Platform protocol on the cluster: the lab (``KubernetesLab``) and its faults."""

    def kill(self, instance: Instance) -> None:
        # Freeze, then force-delete: see the module docstring for why not a plain delete.
        cluster = self.cluster
        api.exec_in_pod(cluster, instance.name, instance.component, signal_argv("SIGSTOP"))
        api.delete_pod(cluster, instance.name, 0)

    def terminate(self, instance: Instance, grace: float | None = None) -> None:
        # Whole seconds, at least 1: 0 would be a force delete, not a grace period.
        seconds = max(1, math.ceil(self.grace if grace is None else grace))
        api.delete_pod(self.cluster, instance.name, seconds)

    def restart_in_place(self, instance: Instance) -> None:
        # SIGKILL every process of the container: its main process (tini) exits and the
        # kubelet restarts the container in the same pod (restartPolicy Always), which
        # keeps the pod's name, as a crash-looping container does.
        api.exec_in_pod(self.cluster, instance.name, instance.component, signal_argv("SIGKILL"))

    def pause(self, instance: Instance) -> None:
        api.exec_in_pod(self.cluster, instance.name, instance.component, signal_argv("SIGSTOP"))

    def resume(self, instance: Instance) -> None:
        api.exec_in_pod(self.cluster, instance.name, instance.component, signal_argv("SIGCONT"))

    def rolling_restart(self, component: str) -> None:
        # What `kubectl rollout restart` does: a new restart stamp on the pod template.
        # The Deployments' RollingUpdate (maxSurge 1, maxUnavailable 0 unless the api's
        # controller says otherwise) replaces one pod at a time, each with its graceful
        # termination; the StatefulSet deletes its pod, then creates the new one. Returns
        # when done. The count to wait for is the controller's own: just after a scale,
        # the pods have not caught up with it yet.
        in_set = component == "api" and self._api_controller == "statefulset"
        replicas = (api.statefulset_replicas(self.cluster, API_STATEFULSET) if in_set
                    else api.deployment_replicas(self.cluster, component))
        stamp = self._restart(component, {}, statefulset=in_set)
        self._wait_rollout(component, component, replicas, stamp, self.ready_timeout)

    def force_delete(self, instance: Instance) -> None:
        """``kubectl delete pod --force --grace-period=0``: the API object goes at once,
        so its controller may create the replacement at once (a StatefulSet too, under
        the same name), while kubelet still stops the old containers with SIGTERM and a
        short grace (see the module docstring): they run on meanwhile."""
        api.delete_pod(self.cluster, instance.name, 0)

    def evict(self, instance: Instance) -> float:
        """Evict the pod through the Eviction API, as ``kubectl drain`` does for each pod
        of a node: while its PodDisruptionBudget allows no disruption (429) the request
        is made again, every second, until accepted. The pod then terminates gracefully
        (its terminationGracePeriodSeconds) and its controller replaces it. Returns the
        seconds the budget held the eviction back."""
        began = time.monotonic()
        while not api.evict_pod(self.cluster, instance.name):
            if time.monotonic() - began > self.ready_timeout:
                raise PlatformError(f"the disruption budget of {instance.name} refused its "
                                    f"eviction for {self.ready_timeout:g} s")
            time.sleep(EVICTION_RETRY)
        return round(time.monotonic() - began, 3)

    def container_restarts(self, component: str) -> dict[str, tuple[int, str]]:
        """Each pod's container restarts by kubelet (a failed liveness probe, an OOM kill,
        a crash) and why its container last ended (``OOMKilled``, ``Error``, ...)."""
        pods, _ = api.list_pods(self.cluster, selector(component))
        return {p.name: (p.restarts, p.last_exit) for p in pods}

    def set_deletion_cost(self, instance: Instance, cost: int) -> None:
        """Annotate the pod with ``controller.kubernetes.io/pod-deletion-cost``: on a
        scale-down its ReplicaSet deletes pods of lower cost first — best effort, as the
        annotation's reference says ("Well-Known Labels, Annotations and Taints")."""
        api.annotate_pod(self.cluster, instance.name, {DELETION_COST: str(int(cost))})

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
        brokers = [b for b in api.list_pods(cluster, selector("broker"))[0] if b.live and b.ip]
        if not brokers:
            raise PlatformError("no ready broker pod to cut the instance off from")
        api.label_pod(cluster, pod.name, {PARTITION_LABEL: pod.name})
        api.create_network_policy(cluster, partition_policy(pod.name, brokers[0].ip,
                                                        self.namespace))
        self._partitioned.add(pod.name)
        try:
            broker_ip = api.service_ip(cluster, BROKER_SERVICE)
            state = api.exec_in_pod(cluster, pod.name, instance.component,
                                cut_check_argv(broker_ip, REDIS_PORT, PARTITION_CHECK_SECONDS))
            if state.strip() != "cut":
                raise PlatformError(
                    f"NetworkPolicy is not enforced in context {self.context!r}: pod "
                    f"{pod.name} still reached the broker {PARTITION_CHECK_SECONDS:g} s after "
                    "its partition policy was applied; the partition fault needs a CNI that "
                    "enforces NetworkPolicy (kind v0.24 or later)")
            # Only now: a connection opened before the policy held would outlive the kill.
            broker.kill_broker_clients(self.broker_url, pod.ip)
        except PlatformError:
            self.heal(instance)
            raise

    def heal(self, instance: Instance) -> None:
        # By name: a pod that died while cut off has nothing left to heal but the policy.
        cluster = self.cluster
        api.delete_network_policies(cluster, f"{FAULT_LABEL}=partition,{PARTITION_LABEL}="
                                         f"{instance.name}")
        api.label_pod(cluster, instance.name, {PARTITION_LABEL: None})
        self._partitioned.discard(instance.name)

    def skew(self, instance: Instance, seconds: float) -> None:
        if not self._skewable:
            raise PlatformError(f"this lab was not started skewable (topology setting "
                                f"{SKEWABLE!r}): no instance's clock can be skewed")
        try:
            check_skew(seconds)
        except ValueError as exc:
            raise PlatformError(str(exc)) from None
        api.exec_in_pod(self.cluster, instance.name, instance.component, skew_argv(seconds))

    def kill_child(self, instance: Instance) -> int:
        """SIGKILL one pool process of a worker pod (the OOM killer's pick), not the pod.
        The pid returned is the one in the container's own PID namespace."""
        out = api.exec_in_pod(self.cluster, instance.name, instance.component, kill_child_argv())
        pid = int(out.split()[-1]) if out.split() and out.split()[-1].isdigit() else 0
        if not pid:
            raise PlatformError(f"{instance.name} has no pool process to kill")
        return pid

    def broker_outage(self, seconds: float) -> None:
        cluster = self.cluster
        api.scale_deployment(cluster, BROKER_DEPLOYMENT, 0)
        pods, _ = api.list_pods(cluster, selector("broker"))
        for pod in pods:  # don't wait out the grace period: the outage is now
            api.delete_pod(cluster, pod.name, 0)
        self._wait(selector("broker"), lambda pods: not pods, self.ready_timeout, "no broker pod")
        time.sleep(seconds)
        api.scale_deployment(cluster, BROKER_DEPLOYMENT, 1)
        self.wait_ready("broker", 1, self.ready_timeout)
        self._wait_broker_reachable()
        if self._broker_memory:  # back with Redis's defaults: the run's limit again
            self._configure_broker()

