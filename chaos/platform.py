"""The Platform protocol: what the harness can do to the instances of a lab.

Implementations register in ``chaos.platforms``: ``chaos.local.LocalPlatform`` (real
OS process groups, supervised like a ReplicaSet) and
``chaos.kubernetes.KubernetesPlatform`` (Deployments on a cluster); ``chaos.stub``
holds an in-memory one for unit tests. Experiments only ever talk to this protocol,
so the same experiment runs on each; the behaviour suite in ``tests/platform``
checks that every platform does what each method says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

COMPONENTS = ("api", "worker", "beat")


class PlatformError(RuntimeError):
    """The platform cannot do what was asked (say why in one line); the CLI exits 2."""


@dataclass(frozen=True)
class Topology:
    """How many replicas of each component run, and the settings they all run with.

    ``settings`` maps a ``services.settings.LabSettings`` field name to its value; a
    platform hands them to every instance as ``SCALELAB_<NAME>`` environment variables.
    """

    replicas: Mapping[str, int]
    settings: Mapping[str, Any] = field(default_factory=dict)
    replace_delay: float = 1.0  # a killed instance is replaced after this many seconds
    grace: float = 5.0  # terminate: SIGTERM, then SIGKILL after this many seconds
    # component -> the module its instances run (``python -m``) instead of the lab's own
    # service, and the path an API instance answers 200 on once it serves (``scalelab
    # probe`` runs a user's app this way; the local platform only).
    modules: Mapping[str, str] = field(default_factory=dict)
    ready_path: str = "/healthz"

    def count(self, component: str) -> int:
        return int(self.replicas.get(component, 0))

    def environment(self) -> dict[str, str]:
        return {f"SCALELAB_{k.upper()}": str(v) for k, v in self.settings.items()}


@dataclass(frozen=True)
class Instance:
    """One running replica of a component (a process group, or a pod)."""

    name: str
    component: str
    pid: int = 0
    url: str = ""  # base URL of an API instance, reachable from the harness


@runtime_checkable
class Platform(Protocol):
    """Runs a topology and applies faults to its instances.

    Every method either does what it says or raises ``PlatformError``. ``teardown``
    is idempotent and must leave nothing running that ``deploy`` started.
    """

    name: str
    # How the last deployed topology really runs where that differs from what it says
    # (a whole grace period, a memory margin resolved to a size); recorded with a run.
    as_run: dict[str, Any]

    def deploy(self, topology: Topology) -> None:
        """Start the lab for this topology and return when every instance is ready."""

    @property
    def ledger_url(self) -> str:
        """Redis URL of the ledger, reachable from the harness."""

    @property
    def broker_url(self) -> str:
        """Redis URL of the broker, reachable from the harness."""

    def instances(self, component: str) -> list[Instance]:
        """The ready instances of a component, oldest first."""

    def scale(self, component: str, replicas: int) -> None:
        """Set the desired replica count; returns without waiting for readiness."""

    def wait_ready(self, component: str, replicas: int, timeout: float) -> None:
        """Block until ``replicas`` instances of the component are ready."""

    def kill(self, instance: Instance) -> None:
        """SIGKILL the whole instance (every process of it); the platform replaces it."""

    def terminate(self, instance: Instance, grace: float | None = None) -> None:
        """SIGTERM the instance's main process, SIGKILL after the grace period."""

    def restart_in_place(self, instance: Instance) -> None:
        """SIGKILL every process of the instance and start it again under the same name,
        as a container runtime restarts a crashed container in its pod."""

    def pause(self, instance: Instance) -> None:
        """SIGSTOP every process of the instance."""

    def resume(self, instance: Instance) -> None:
        """SIGCONT every process of the instance."""

    def rolling_restart(self, component: str) -> None:
        """Replace every instance of the component, one at a time, gracefully."""

    def broker_outage(self, seconds: float) -> None:
        """Kill the broker Redis and bring it back (empty) after ``seconds``."""

    def datastore_outage(self, seconds: float) -> None:
        """Kill the data store (PostgreSQL, where a lab has one) and bring it back, its
        data intact, after ``seconds``."""

    def partition(self, instance: Instance) -> None:
        """Cut the instance off the broker: open connections dropped, new ones refused.
        The ledger stays reachable (it observes; it is never partitioned)."""

    def heal(self, instance: Instance) -> None:
        """End the instance's partition: it reaches the broker again."""

    def skew(self, instance: Instance, seconds: float) -> None:
        """Set the instance's wall clock ``seconds`` off the real time (within ±3600)."""

    def kill_child(self, instance: Instance) -> int:
        """SIGKILL one pool process of a worker instance (not the instance); its pid."""

    def stop_instances(self) -> None:
        """Stop every instance gracefully (each reports its own counts); the ledger stays."""

    def teardown(self) -> None:
        """Stop everything ``deploy`` started."""
