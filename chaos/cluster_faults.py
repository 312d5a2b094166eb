"""How the faults only a cluster can do are done: Kubernetes' own disruptions.

A platform that has them declares their capabilities (``chaos.platforms``) and
implements ``ClusterFaults`` besides the ``Platform`` protocol; the fault table
(``chaos.faults``) declares each fault and routes it to its handler here. A platform
without them is refused such a fault before a run starts, so ``cluster`` below only
guards against a table that routes one to the wrong platform.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from chaos.platform import Instance, Platform, PlatformError

if TYPE_CHECKING:  # chaos.faults routes its faults here
    from chaos.faults import FaultStep, Strike

RESTART_POLL = 0.5  # seconds between looks at the containers' restart counts


@runtime_checkable
class ClusterFaults(Protocol):
    """What Kubernetes does to pods, as the lab asks its API for it."""

    def force_delete(self, instance: Instance) -> None:
        """Delete the pod with no grace: its API object goes at once."""

    def evict(self, instance: Instance) -> float:
        """Evict the pod through the Eviction API, as its disruption budget allows;
        the seconds the budget held it back."""

    def set_deletion_cost(self, instance: Instance, cost: int) -> None:
        """Tell its ReplicaSet how costly the pod is to delete on a scale-down."""

    def container_restarts(self, component: str) -> dict[str, tuple[int, str]]:
        """Each pod's container restarts by kubelet and why its container last ended."""


def cluster(platform: Platform, fault: str) -> ClusterFaults:
    """The platform as a cluster, or a one-line refusal naming the fault."""
    if not isinstance(platform, ClusterFaults):
        raise PlatformError(f"{fault} needs Kubernetes: the {platform.name} platform has no "
                            "API server to ask for it")
    return platform


def drain(s: Strike, step: FaultStep) -> None:
    """Evict every instance of the component, oldest first, as ``kubectl drain`` does
    (each as its disruption budget allows); done when every evicted one is gone."""
    platform = cluster(s.platform, "drain")
    instances = s.platform.instances(step.component)
    for instance in instances:
        waited = platform.evict(instance)
        s.record(step, "evict", instance.name, s.inflight(instance.name), budget_wait=waited)
    s.gone(step.component, {i.name for i in instances}, timeout=120.0)


def scale_in_by_cost(s: Strike, step: FaultStep) -> None:
    """Before scaling down, give each instance a deletion cost of the work it runs (as
    an autoscaler that knows its workers would), so the idle ones should go first."""
    from chaos.faults import FAULTS

    platform = cluster(s.platform, "scale-in-by-cost")
    for instance in s.platform.instances(step.component):
        platform.set_deletion_cost(instance, s.inflight(instance.name))
    FAULTS["scale"].handler(s, step)


def watch_restarts(s: Strike, step: FaultStep) -> None:
    """For ``duration`` seconds, mark every container kubelet restarts (a failed
    liveness probe, an OOM kill): the platform's doing, not the nemesis's, recorded as
    it is seen (within ``RESTART_POLL``), with kubelet's reason."""
    platform = cluster(s.platform, "watch-restarts")
    seen = {name: n for name, (n, _) in platform.container_restarts(step.component).items()}
    waited = 0.0
    while waited < step.duration and not s.wait(RESTART_POLL):
        waited += RESTART_POLL
        for name, (count, why) in platform.container_restarts(step.component).items():
            if count > seen.get(name, 0):
                s.record(step, "container-restart", name, s.inflight(name),
                         restarts=count, reason=why)
            seen[name] = count
