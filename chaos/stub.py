"""An in-memory platform and ledger, for unit tests of the nemesis, the drain and seeding.

``StubPlatform`` keeps instances as names and does to them what the ``Platform``
protocol says, instantly and without processes: a killed instance is replaced
under a new name, a scale-down removes the newest, a rolling restart replaces every
instance. Each call is appended to ``calls``. ``MemoryLedger`` is the part of the
ledger the nemesis and the drain use, as a list; its clock is a counter, so
histories are repeatable. Neither is registered as a platform of the CLI.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from chaos.platform import COMPONENTS, Instance, PlatformError, Topology
from services.history import Event, Kind


class MemoryLedger:
    """Events in a list; ``t`` advances by one millisecond per event."""

    def __init__(self, run: str = "stub-run") -> None:
        self.run = run
        self.events: list[Event] = []
        self._clock = itertools.count(1)

    def record(self, kind: Kind | str, work_id: str, mechanism: str, instance: str, *,
               pid: int | None = None, attempt: int = 1, exec_id: str = "",
               detail: dict[str, Any] | None = None, **_: Any) -> str:
        self.events.append(Event(next(self._clock) / 1000, str(kind), work_id, mechanism,
                                 instance, pid or 0, attempt, exec_id, detail or {}, self.run))
        return str(kind)

    def history(self, run: str, start: int = 0) -> Iterator[Event]:
        yield from (e for e in self.events[start:] if e.run == run)

    def start(self, work_id: str, instance: str, mechanism: str = "celery") -> str:
        """Record a start on ``instance`` as an instance would; returns its exec id."""
        exec_id = f"{instance}:{work_id}"
        self.record(Kind.START, work_id, mechanism, instance, exec_id=exec_id)
        return exec_id


class StubPlatform:
    """The Platform protocol in memory; see the module docstring."""

    name = "stub"

    def __init__(self) -> None:
        self.topology = Topology(replicas={})
        self.as_run: dict[str, Any] = {}  # runs every topology as it says
        self.calls: list[tuple[str, str]] = []  # (method, instance or component)
        self.paused: set[str] = set()
        self.broker_up = True
        self._live: dict[str, list[str]] = {c: [] for c in COMPONENTS}
        self._serial = itertools.count(1)
        self._deployed = False

    @property
    def ledger_url(self) -> str:
        return "memory://ledger"

    @property
    def broker_url(self) -> str:
        return "memory://broker"

    def deploy(self, topology: Topology) -> None:
        self.topology = topology
        self._deployed = True
        for component in COMPONENTS:
            self.scale(component, topology.count(component))

    def instances(self, component: str) -> list[Instance]:
        return [Instance(name, component) for name in self._live.get(component, [])]

    def scale(self, component: str, replicas: int) -> None:
        self.calls.append(("scale", component))
        live = self._live.setdefault(component, [])
        while len(live) < replicas:
            live.append(f"{component}-{next(self._serial)}")
        del live[replicas:]  # the newest go first, as a ReplicaSet picks them

    def wait_ready(self, component: str, replicas: int, timeout: float) -> None:
        if len(self._live.get(component, [])) < replicas:
            raise PlatformError(f"{replicas} {component} replica(s) not ready")

    def _replace(self, instance: Instance, call: str) -> None:
        self.calls.append((call, instance.name))
        live = self._live.get(instance.component, [])
        if instance.name not in live:
            raise PlatformError(f"no such instance: {instance.name}")
        live[live.index(instance.name)] = f"{instance.component}-{next(self._serial)}"

    def kill(self, instance: Instance) -> None:
        self._replace(instance, "kill")

    def terminate(self, instance: Instance, grace: float | None = None) -> None:
        self._replace(instance, "terminate")

    def restart_in_place(self, instance: Instance) -> None:
        self.calls.append(("restart_in_place", instance.name))

    def pause(self, instance: Instance) -> None:
        self.calls.append(("pause", instance.name))
        self.paused.add(instance.name)

    def resume(self, instance: Instance) -> None:
        self.calls.append(("resume", instance.name))
        self.paused.discard(instance.name)

    def rolling_restart(self, component: str) -> None:
        for instance in self.instances(component):
            self._replace(instance, "restart")

    def broker_outage(self, seconds: float) -> None:
        self.calls.append(("broker_outage", "broker"))

    def datastore_outage(self, seconds: float) -> None:
        self.calls.append(("datastore_outage", "datastore"))

    def partition(self, instance: Instance) -> None:
        self.calls.append(("partition", instance.name))

    def heal(self, instance: Instance) -> None:
        self.calls.append(("heal", instance.name))

    def skew(self, instance: Instance, seconds: float) -> None:
        self.calls.append(("skew", instance.name))

    def kill_child(self, instance: Instance) -> int:
        self.calls.append(("kill_child", instance.name))
        return 0

    def stop_instances(self) -> None:
        self.calls.append(("stop_instances", ""))

    def teardown(self) -> None:
        self._deployed = False
        for live in self._live.values():
            live.clear()
