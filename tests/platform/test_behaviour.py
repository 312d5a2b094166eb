"""One behaviour suite for every platform: what each fault does to its instances.

Parametrized over every registered platform (``chaos.platforms``), the in-memory one
included; each test says the capability it needs (``needs``) and runs on every
platform that declares it, skipping, with the platform's own reason, elsewhere.
Assertions go through the Platform protocol, and the ledger where the platform's
instances write one (``SERVES``), so they hold for any platform. A cluster platform's
lab (marked ``kind``: ``make test-kind`` runs it) needs its cluster to be reachable
(``make cluster-up``, or the project's own node): without one it skips saying why, or
fails where a cluster is required. One lab per platform is deployed for the module;
each test leaves it with the replica counts it found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from chaos.platform import Instance, Platform, Topology
from chaos.platforms import OWN_URL, PLATFORMS, SERVES, PlatformEntry
from services.ledger import Event, Kind, Ledger
from tests.conftest import wait_for

pytestmark = pytest.mark.slow

RUN = "behaviour"
REPLICAS = {"api": 2, "worker": 1}
MARGIN_MB = 64

Lab = tuple[Platform, Ledger | None]  # no ledger where the instances write none


def needs(*capabilities: str) -> Callable[[Any], Any]:
    """Run the test on the platforms that declare every one of ``capabilities``."""
    return pytest.mark.needs(*capabilities)


@pytest.fixture(scope="module", params=[
    pytest.param(name, marks=pytest.mark.kind) if entry.cluster else name
    for name, entry in PLATFORMS.items()])
def deployed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             ) -> Iterator[tuple[PlatformEntry, Lab]]:
    entry = PLATFORMS[request.param]
    options: dict[str, Any] = {}
    if entry.cluster:
        from tests.kind.conftest import CONTEXT, cluster_problem, no_cluster

        if why := cluster_problem():
            no_cluster(f"the {entry.name} platform: {why}")
        options["context"] = CONTEXT
    workdir: Path = tmp_path_factory.mktemp(f"behaviour-{entry.name}")
    platform = entry.make(workdir, options)
    try:
        platform.deploy(Topology(
            replicas=REPLICAS,
            settings={"scheduler_interval": 0.25, "scheduler_guard": "none",
                      "tick_seconds": 0.01, "worker_concurrency": 1,
                      # each instance through its own broker proxy, each clock skewable
                      "partitionable": True, "skewable": True,
                      # a margin far above what the tests use: set, never reached
                      "broker_maxmemory": f"+{MARGIN_MB}mb"},
            replace_delay=0.5, grace=3.0))
        if SERVES not in entry.capabilities:
            yield entry, (platform, None)
            return
        ledger = Ledger.from_url(platform.ledger_url)
        ledger.begin_run(RUN)
        try:
            yield entry, (platform, ledger)
        finally:
            ledger.end_run()
            ledger.client.close()
    finally:
        platform.teardown()


@pytest.fixture
def lab(request: pytest.FixtureRequest, deployed: tuple[PlatformEntry, Lab]) -> Lab:
    entry, found = deployed
    marker = request.node.get_closest_marker("needs")
    for capability in marker.args if marker else ():
        if why := entry.lacks(capability):
            pytest.skip(why)
    return found


def served(lab: Lab) -> tuple[Platform, Ledger]:
    platform, ledger = lab
    assert ledger is not None, "a test of the ledger needs(SERVES)"
    return platform, ledger


def names(platform: Platform, component: str) -> set[str]:
    return {i.name for i in platform.instances(component)}


def ticks_of(ledger: Ledger, instance: str, since: float) -> list[Event]:
    return [e for e in ledger.read_history(RUN)
            if e.kind == Kind.FINISH and e.instance == instance and e.t > since]


def one(platform: Platform, component: str) -> Instance:
    return sorted(platform.instances(component), key=lambda i: i.name)[0]


@needs("kill")
def test_a_killed_instance_is_replaced_under_a_new_name(lab: Lab) -> None:
    platform, _ = lab
    before = names(platform, "worker")
    victim = one(platform, "worker")
    platform.kill(victim)
    after = wait_for(lambda: (n := names(platform, "worker")) and victim.name not in n
                     and len(n) == len(before) and n, 90, "a replacement worker")
    assert not after & {victim.name}


@needs("pause", SERVES)
def test_a_paused_instance_does_nothing_until_resumed(lab: Lab) -> None:
    platform, ledger = served(lab)
    api = one(platform, "api")
    wait_for(lambda: ticks_of(ledger, api.name, ledger.now()), 20, "a tick before the pause")
    platform.pause(api)
    try:
        paused_at = ledger.now()
        other = next(i for i in platform.instances("api") if i.name != api.name)
        # the other replica keeps ticking meanwhile: time passes for the lab, not for api
        wait_for(lambda: len(ticks_of(ledger, other.name, paused_at)) >= 4, 20,
                 "the other replica's ticks")
        assert len(ticks_of(ledger, api.name, paused_at + 0.3)) == 0
    finally:
        platform.resume(api)
    resumed = ledger.now()
    wait_for(lambda: ticks_of(ledger, api.name, resumed), 20, "a tick after the resume")


@needs("terminate")
def test_a_terminated_instance_goes_within_its_grace(lab: Lab) -> None:
    platform, ledger = lab
    api = one(platform, "api")
    gone = ledger.now() if ledger else 0.0
    platform.terminate(api, grace=2.0)
    wait_for(lambda: api.name not in names(platform, "api"), 15, "the terminated instance")
    if ledger is not None:  # nothing from it after the grace period ran out
        wait_for(lambda: ledger.now() > gone + 3.0, 10, "the grace period")
        assert not ticks_of(ledger, api.name, gone + 2.5)
    wait_for(lambda: len(names(platform, "api")) == REPLICAS["api"], 90, "its replacement")


@needs("restart-in-place")
def test_a_restart_in_place_keeps_the_name(lab: Lab) -> None:
    platform, ledger = lab
    api = one(platform, "api")
    platform.restart_in_place(api)
    if ledger is not None:
        restarted = ledger.now()
        wait_for(lambda: ticks_of(ledger, api.name, restarted + 0.5), 90,
                 "ticks of the restarted instance, under its own name")
    # Its scheduler ticks from the lifespan, before the server answers: wait for ready.
    wait_for(lambda: api.name in names(platform, "api"), 30, "the restarted instance ready")
    new_pid = next(i.pid for i in platform.instances("api") if i.name == api.name)
    if api.pid and new_pid:  # a platform that knows process ids: a new process
        assert new_pid != api.pid


@needs("scale")
def test_scale_up_and_down(lab: Lab) -> None:
    platform, _ = lab
    platform.scale("api", 3)
    platform.wait_ready("api", 3, timeout=90)
    assert len(names(platform, "api")) == 3
    platform.scale("api", REPLICAS["api"])
    wait_for(lambda: len(names(platform, "api")) == REPLICAS["api"], 60, "the scale-down")


@needs("rolling-restart")
def test_a_rolling_restart_replaces_every_instance(lab: Lab) -> None:
    platform, _ = lab
    before = names(platform, "api")
    platform.rolling_restart("api")
    after = wait_for(lambda: (n := names(platform, "api")) and len(n) == len(before) and n,
                     90, "the restarted replicas")
    assert not before & after


def _maxmemory(broker: redis.Redis) -> int:
    return int(broker.config_get("maxmemory")["maxmemory"])


@needs("broker-outage", SERVES)
def test_a_broker_outage_empties_the_broker_and_keeps_its_memory_limit(lab: Lab) -> None:
    platform, ledger = served(lab)
    broker = redis.Redis.from_url(platform.broker_url, socket_timeout=5)
    try:
        # the margin was set over what the broker used with the lab connected (which
        # moves by some kilobytes as the clients' buffers do)
        limit = _maxmemory(broker)
        used = int(broker.info("memory")["used_memory"])
        assert abs(limit - MARGIN_MB * 2**20 - used) < 256 * 1024, (limit, used)
        assert platform.as_run["broker_maxmemory"] == f"{limit / 1024:.0f}kb"
        broker.set("scalelab:behaviour:marker", "1")
        platform.broker_outage(1.0)
        wait_for(lambda: broker.ping(), 60, "the broker back")
        assert broker.get("scalelab:behaviour:marker") is None
        assert _maxmemory(broker) == limit  # the same limit, not a margin over an empty one
        assert ledger.client.ping()  # the ledger is never the fault's target
    finally:
        broker.close()


# Where an instance's URL is a Service's, tests/kind/test_platform.py checks the
# partition from inside the pod.
@needs("partition", SERVES, OWN_URL)
def test_a_partitioned_instance_loses_the_broker_not_the_ledger(lab: Lab) -> None:
    platform, ledger = served(lab)
    cut, other = sorted(platform.instances("api"), key=lambda i: i.name)[:2]
    work = "behaviour-partition"

    wait_for(lambda: hands_to_celery(cut, work), 60, "the instance to reach the broker")
    platform.partition(cut)
    try:
        assert not hands_to_celery(cut, work)
        assert hands_to_celery(other, work)  # only the one instance is cut off
        since = ledger.now()
        wait_for(lambda: ticks_of(ledger, cut.name, since), 10,
                 "ticks from the cut-off instance (the ledger still hears it)")
    finally:
        platform.heal(cut)
    wait_for(lambda: hands_to_celery(cut, work), 30, "the healed instance to reach the broker")


@needs("clock-skew", SERVES)
def test_a_skewed_instance_fires_early_by_the_ledger_clock(lab: Lab) -> None:
    platform, ledger = served(lab)
    target = one(platform, "api")

    def early(since: float) -> list[float]:
        return [float(e.detail["due"]) - e.t for e in ledger.read_history(RUN)
                if e.kind == Kind.START and e.instance == target.name and e.t > since]

    platform.skew(target, 2.0)
    try:
        # The offset is re-read within a second; a tick already armed by the old clock
        # may still fire on it, one interval later (more on a loaded machine).
        since = ledger.now() + 3.0
        found = wait_for(lambda: len(e := early(since)) >= 3 and e, 15, "skewed ticks")
        assert all(1.7 < x < 2.3 for x in found), found
    finally:
        platform.skew(target, 0.0)


@needs("kill-child", SERVES)
def test_kill_child_kills_one_pool_process_and_the_worker_lives(lab: Lab) -> None:
    platform, ledger = served(lab)
    worker = one(platform, "worker")
    assert platform.kill_child(worker) > 0
    assert worker.name in names(platform, "worker")
    # The pool forks a new process for the one killed: the same worker runs the next task.
    since = ledger.now()
    wait_for(lambda: hands_to_celery(one(platform, "api"), "behaviour-kill-child"), 30,
             "the task handed to the broker")
    wait_for(lambda: [e for e in ledger.read_history(RUN)
                      if e.kind == Kind.FINISH and e.work_id == "behaviour-kill-child"
                      and e.instance == worker.name and e.t > since], 30,
             "the task finished by the same worker")
    assert worker.name in names(platform, "worker")


def hands_to_celery(instance: Instance, work_id: str) -> bool:
    try:  # the route sends a Celery task to the broker: 202 only if it reached it
        return httpx.post(f"{instance.url}/work/celery", timeout=20,
                          params={"work_id": work_id, "seconds": 0}).status_code == 202
    except httpx.HTTPError:
        return False


# --- what only a cluster does to pods (chaos.cluster_faults) ----------------------------------


@needs("rollout")
def test_a_rollout_replaces_every_instance_under_its_controller(lab: Lab) -> None:
    platform, _ = lab
    before = names(platform, "api")
    platform.rolling_restart("api")  # kubectl rollout restart: the controller's strategy
    after = wait_for(lambda: (n := names(platform, "api")) and len(n) == len(before) and n,
                     90, "the rolled-out replicas")
    assert not before & after


@needs("pod-delete")
def test_a_deleted_pod_is_replaced_under_a_new_name(lab: Lab) -> None:
    platform, _ = lab
    victim = one(platform, "api")
    platform.terminate(victim, grace=2.0)
    wait_for(lambda: victim.name not in (n := names(platform, "api"))
             and len(n) == REPLICAS["api"], 90, "a replacement for the deleted pod")


@needs("force-delete")
def test_a_force_deleted_pod_is_replaced_at_once(lab: Lab) -> None:
    from chaos.cluster_faults import ClusterFaults
    from chaos.faults import able

    platform, _ = lab
    victim = one(platform, "api")
    able(platform, ClusterFaults).force_delete(victim)
    wait_for(lambda: victim.name not in (n := names(platform, "api"))
             and len(n) == REPLICAS["api"], 90, "a replacement for the force-deleted pod")


@needs("drain")
def test_an_evicted_pod_is_replaced(lab: Lab) -> None:
    from chaos.cluster_faults import ClusterFaults
    from chaos.faults import able

    platform, _ = lab
    victim = one(platform, "worker")
    held_back = able(platform, ClusterFaults).evict(victim)
    assert held_back < 30, "one worker may always go (maxUnavailable 1)"
    wait_for(lambda: victim.name not in (n := names(platform, "worker"))
             and len(n) == REPLICAS["worker"], 90, "a replacement for the evicted worker")


@needs("scale-in-by-cost")
def test_a_scale_down_spares_the_costlier_pod(lab: Lab) -> None:
    from chaos.cluster_faults import ClusterFaults
    from chaos.faults import able

    platform, _ = lab
    kept, other = sorted(platform.instances("api"), key=lambda i: i.name)[:2]
    able(platform, ClusterFaults).set_deletion_cost(kept, 100)
    platform.scale("api", 1)
    left = wait_for(lambda: (n := names(platform, "api")) and len(n) == 1 and n, 60,
                    "the scale-down")
    assert left == {kept.name}, f"the cheaper {other.name} goes first"
    platform.scale("api", REPLICAS["api"])
    platform.wait_ready("api", REPLICAS["api"], timeout=90)


@needs("watch-restarts")
def test_container_restarts_are_counted_per_pod(lab: Lab) -> None:
    from chaos.cluster_faults import ClusterFaults
    from chaos.faults import able

    platform, _ = lab
    api = one(platform, "api")
    counts = able(platform, ClusterFaults).container_restarts("api")
    assert api.name in counts
    before = counts[api.name][0]
    platform.restart_in_place(api)  # every process killed: kubelet restarts the container
    wait_for(lambda: able(platform, ClusterFaults).container_restarts("api")[api.name][0]
             > before, 60, "kubelet's restart counted")
    wait_for(lambda: api.name in names(platform, "api"), 60, "the restarted pod ready")
