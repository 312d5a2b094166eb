"""The cluster-only faults' handlers, against a fake cluster platform and a fake strike."""

from __future__ import annotations

from typing import Any

import pytest

from chaos.cluster_faults import ClusterFaults, cluster, drain, scale_in_by_cost, watch_restarts
from chaos.faults import FaultStep
from chaos.platform import Instance, PlatformError
from chaos.stub import StubPlatform


class Pods(StubPlatform):
    """The stub platform with the cluster's faults, recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.did: list[tuple[Any, ...]] = []
        self.restarts: dict[str, tuple[int, str]] = {}

    def force_delete(self, instance: Instance) -> None:
        self.did.append(("force-delete", instance.name))

    def evict(self, instance: Instance) -> float:
        self.did.append(("evict", instance.name))
        return 1.5

    def set_deletion_cost(self, instance: Instance, cost: int) -> None:
        self.did.append(("cost", instance.name, cost))

    def container_restarts(self, component: str) -> dict[str, tuple[int, str]]:
        return dict(self.restarts)


class Strike:
    def __init__(self, platform: Pods, polls: int = 0) -> None:
        self.platform = platform
        self.records: list[tuple[Any, ...]] = []
        self.polls = polls  # wait() calls before the run stops

    def inflight(self, name: str) -> int:
        return {"w-1": 2, "w-2": 0}.get(name, 1)

    def record(self, step: FaultStep, action: str, target: str, inflight: int | None,
               **detail: Any) -> None:
        self.records.append((action, target, inflight, detail))

    def wait(self, seconds: float) -> bool:
        self.polls -= 1
        if self.polls == 1:  # kubelet restarts a container meanwhile
            self.platform.restarts["api-1"] = (1, "Error")
        return self.polls < 0

    def gone(self, component: str, before: set[str], timeout: float) -> list[str]:
        return sorted(before)


def deployed(**replicas: int) -> Pods:
    from chaos.platform import Topology

    p = Pods()
    p.deploy(Topology(replicas=replicas))
    return p


def test_a_platform_without_an_api_server_is_refused_in_one_line() -> None:
    with pytest.raises(PlatformError, match=r"^drain needs Kubernetes: the stub platform"):
        cluster(StubPlatform(), "drain")
    assert isinstance(Pods(), ClusterFaults)


def test_drain_evicts_every_instance_oldest_first_and_marks_each() -> None:
    p = deployed(worker=2)
    s = Strike(p)
    drain(s, FaultStep("drain", "worker"))  # type: ignore[arg-type]
    names = [i.name for i in StubPlatform.instances(p, "worker")]
    assert p.did == [("evict", n) for n in names]
    assert [(r[0], r[1], r[3]) for r in s.records] == [
        ("evict", n, {"budget_wait": 1.5}) for n in names]


def test_scale_in_by_cost_prices_each_pod_by_its_work_then_scales() -> None:
    p = deployed(worker=2)
    s = Strike(p)
    names = [i.name for i in StubPlatform.instances(p, "worker")]
    step = FaultStep("scale-in-by-cost", "worker", replicas=1)
    scale_in_by_cost(s, step)  # type: ignore[arg-type]
    assert p.did == [("cost", n, s.inflight(n)) for n in names]
    assert len(StubPlatform.instances(p, "worker")) == 1
    assert [r[0] for r in s.records] == ["scale-down"] * len(s.records) and s.records


def test_watch_restarts_marks_what_kubelet_restarted_with_its_reason() -> None:
    p = deployed(api=1)
    s = Strike(p, polls=3)
    watch_restarts(s, FaultStep("watch-restarts", "api", duration=60))  # type: ignore[arg-type]
    assert s.records == [("container-restart", "api-1", 1, {"restarts": 1, "reason": "Error"})]
